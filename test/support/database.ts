/**
 * A database for one vitest file, real either way:
 *  - TEST_DATABASE_URL set: a fresh schema `t_<random>` on that PostgreSQL server, migrated, dropped afterwards;
 *  - otherwise: an embedded in-memory PGlite (in its worker, over the socket, as in production), migrated.
 * Each file gets its own schema or database, so files run in parallel without seeing each other's rows.
 *
 *   const testDb = useTestDatabase();
 *   beforeEach(() => testDb.reset());
 *   it('…', async () => { await testDb.sql`…`; });
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll } from 'vitest';
import { openDatabase, type Database, type Sql } from '../../src/db/connection.js';
import { migrate } from '../../src/db/migrate.js';

export interface TestDatabase {
  readonly db: Database;
  readonly sql: Sql;
  /** Empties every table (ids restart at 1); the schema and its migrations stay. */
  reset(): Promise<void>;
}

export interface TestDatabaseOptions {
  /** Apply the migrations in beforeAll (default true). Migration tests turn it off to run them themselves. */
  migrate?: boolean;
}

export function useTestDatabase(options: TestDatabaseOptions = {}): TestDatabase {
  let db: Database | undefined;
  let schema: string | undefined;

  beforeAll(async () => {
    const url = process.env['TEST_DATABASE_URL'];
    if (url) {
      schema = `t_${randomBytes(6).toString('hex')}`;
      db = await openDatabase({ url, schema, max: 4 });
    } else {
      db = await openDatabase({ inMemory: true });
    }
    if (options.migrate !== false) await migrate(db.sql);
  });

  afterAll(async () => {
    if (!db) return;
    try {
      if (schema) await db.sql.unsafe(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    } finally {
      await db.close();
    }
  });

  const opened = (): Database => {
    if (!db) throw new Error('useTestDatabase: the database opens in beforeAll; use it inside tests and hooks');
    return db;
  };

  return {
    get db() {
      return opened();
    },
    get sql() {
      return opened().sql;
    },
    async reset() {
      const { sql } = opened();
      const tables = await sql<{ name: string }[]>`
        SELECT tablename AS name FROM pg_tables
        WHERE schemaname = current_schema() AND tablename <> 'schema_migrations'`;
      if (tables.length === 0) return;
      await sql.unsafe(`TRUNCATE ${tables.map((t) => `"${t.name}"`).join(', ')} RESTART IDENTITY CASCADE`);
    },
  };
}
