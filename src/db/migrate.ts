/**
 * Versioned schema migrations: `migrations/NNN_name.sql`, applied in order at start-up and by `tunnelpulse migrate`.
 *
 * - Each migration runs in its own transaction together with its row in `schema_migrations`: it applies fully or
 *   not at all.
 * - Several processes may start at once against one database: every transaction first takes a transaction-scoped
 *   advisory lock, then re-checks what is applied, so each migration runs exactly once. The lock key includes the
 *   current schema, so test files migrating their own schemas in parallel do not wait on each other.
 * - Migrations use unqualified names; the connection's search_path decides the schema.
 * - A migration's checksum is recorded; editing one that a database already applied is refused, because that
 *   database would silently differ from a fresh one.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Sql, TransactionSql } from './connection.js';

export interface Migration {
  version: number;
  name: string;
  sql: string;
  checksum: string;
}

export interface MigrationReport {
  /** Migrations applied by this run, as `NNN_name`. */
  applied: string[];
  /** Versions the database reports that this code does not know (a newer release migrated it). */
  unknownVersions: number[];
  /** The schema version after the run. */
  version: number;
}

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));
const MIGRATION_FILE = /^(\d{3})_([a-z0-9_]+)\.sql$/;

export function loadMigrations(dir: string = MIGRATIONS_DIR): Migration[] {
  const migrations = readdirSync(dir)
    .map((file) => ({ file, match: MIGRATION_FILE.exec(file) }))
    .filter((entry): entry is { file: string; match: RegExpExecArray } => entry.match !== null)
    .map(({ file, match }) => {
      const sql = readFileSync(`${dir}/${file}`, 'utf8');
      return {
        version: Number(match[1]),
        name: match[2]!,
        sql,
        checksum: createHash('sha256').update(sql).digest('hex'),
      };
    })
    .sort((a, b) => a.version - b.version);
  migrations.forEach((migration, index) => {
    if (migration.version !== index + 1) {
      throw new Error(`migrations must be numbered 001, 002, … without gaps; found ${label(migration)} at position ${index + 1}`);
    }
  });
  return migrations;
}

export async function migrate(sql: Sql, migrations: Migration[] = loadMigrations()): Promise<MigrationReport> {
  const applied: string[] = [];
  const recorded = await sql.begin(async (tx) => {
    await lockMigrations(tx);
    await tx`
      CREATE TABLE IF NOT EXISTS schema_migrations (
        version    integer PRIMARY KEY,
        name       text NOT NULL,
        checksum   text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`;
    return tx<{ version: number; checksum: string }[]>`SELECT version, checksum FROM schema_migrations`;
  });
  const recordedChecksums = new Map(recorded.map((row) => [row.version, row.checksum]));

  for (const migration of migrations) {
    const checksum = recordedChecksums.get(migration.version);
    if (checksum !== undefined) {
      assertUnchanged(migration, checksum);
      continue;
    }
    const ran = await sql.begin(async (tx) => {
      await lockMigrations(tx);
      // Another process may have applied it while we waited for the lock.
      const [row] = await tx<{ checksum: string }[]>`
        SELECT checksum FROM schema_migrations WHERE version = ${migration.version}`;
      if (row) {
        assertUnchanged(migration, row.checksum);
        return false;
      }
      await tx.unsafe(migration.sql);
      await tx`
        INSERT INTO schema_migrations (version, name, checksum)
        VALUES (${migration.version}, ${migration.name}, ${migration.checksum})`;
      return true;
    });
    if (ran) applied.push(label(migration));
  }

  const known = new Set(migrations.map((migration) => migration.version));
  const unknownVersions = [...recordedChecksums.keys()].filter((version) => !known.has(version)).sort((a, b) => a - b);
  const [current] = await sql<{ version: number }[]>`
    SELECT coalesce(max(version), 0)::int AS version FROM schema_migrations`;
  return { applied, unknownVersions, version: current?.version ?? 0 };
}

async function lockMigrations(tx: TransactionSql): Promise<void> {
  // hashtext gives an int4 key; the schema in it keeps parallel schemas (test files) independent.
  await tx`SELECT pg_advisory_xact_lock(hashtext('tunnelpulse.migrate:' || coalesce(current_schema(), '')))`;
}

function assertUnchanged(migration: Migration, recordedChecksum: string): void {
  if (recordedChecksum !== migration.checksum) {
    throw new Error(
      `migration ${label(migration)} was changed after this database applied it; ` +
        'add a new migration instead of editing an applied one',
    );
  }
}

function label(migration: Migration): string {
  return `${String(migration.version).padStart(3, '0')}_${migration.name}`;
}
