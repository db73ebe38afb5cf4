import { describe, expect, it } from 'vitest';
import { loadMigrations, migrate } from '../../src/db/migrate.js';
import { useTestDatabase } from '../support/database.js';

const testDb = useTestDatabase({ migrate: false });

const EXPECTED_TABLES = [
  'endpoint_offline',
  'endpoints',
  'lease_owners',
  'log_daily_counts',
  'schema_migrations',
  'traffic_hourly_endpoint',
  'traffic_hourly_global',
  'traffic_hourly_tunnel',
  'tunnel_logs',
  'tunnel_status_changes',
  'tunnels',
];

/** A migration after the last real one, for the concurrency and checksum checks. */
const PROBE_VERSION = loadMigrations().length + 1;
const PROBE_LABEL = `${String(PROBE_VERSION).padStart(3, '0')}_probe`;

describe('migrate', () => {
  it('creates every table in the connection schema, and a second run applies nothing', async () => {
    const first = await migrate(testDb.sql);
    expect(first.applied).toEqual(loadMigrations().map((m) => `${String(m.version).padStart(3, '0')}_${m.name}`));
    expect(first.version).toBe(loadMigrations().length);

    const tables = await testDb.sql<{ name: string }[]>`
      SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1`;
    expect(tables.map((t) => t.name)).toEqual(EXPECTED_TABLES);

    const second = await migrate(testDb.sql);
    expect(second).toEqual({ applied: [], unknownVersions: [], version: first.version });
    const [row] = await testDb.sql<{ count: number }[]>`SELECT count(*) AS count FROM schema_migrations`;
    expect(row?.count).toBe(loadMigrations().length);
  });

  it('applies each migration once when several runs start at the same time', async () => {
    const extra = [
      ...loadMigrations(),
      { version: PROBE_VERSION, name: 'probe', sql: 'CREATE TABLE migration_probe (id int)', checksum: 'probe-v1' },
    ];
    const reports = await Promise.all([migrate(testDb.sql, extra), migrate(testDb.sql, extra), migrate(testDb.sql, extra)]);
    expect(reports.flatMap((r) => r.applied)).toEqual([PROBE_LABEL]);
  });

  it('refuses a migration edited after the database applied it', async () => {
    const edited = [
      ...loadMigrations(),
      { version: PROBE_VERSION, name: 'probe', sql: 'CREATE TABLE migration_probe (id bigint)', checksum: 'probe-v2' },
    ];
    await expect(migrate(testDb.sql, edited)).rejects.toThrow(new RegExp(`${PROBE_LABEL} was changed`));
  });

  it('reports versions it does not know instead of failing', async () => {
    const report = await migrate(testDb.sql);
    expect(report.unknownVersions).toEqual([PROBE_VERSION]);
  });
});
