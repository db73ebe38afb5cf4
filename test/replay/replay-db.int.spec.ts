/**
 * `replay --db` over every capture in fixtures/captures, into the real database (PostgreSQL with
 * TEST_DATABASE_URL, the embedded PGlite otherwise):
 *  - the report equals the in-memory replay's report;
 *  - per tunnel, the sum of its hourly traffic rows and its `tunnels` traffic equal the report's `traffic`,
 *    and its log rows equal `logLines` (none cut by the daily cap);
 *  - per endpoint and hour, and per hour globally, the rolled-up totals equal the sum of the tunnel rows;
 *  - replaying the same input into the same database again changes no row.
 */
import { randomBytes } from 'node:crypto';
import { beforeEach, describe, expect, it } from 'vitest';
import { SecretBox } from '../../src/db/secret-box.js';
import type { Sql } from '../../src/db/connection.js';
import { replayFiles } from '../../src/replay/replay.js';
import { replayFilesIntoDatabase } from '../../src/replay/replay-db.js';
import type { ReplayReport } from '../../src/replay/report.js';
import { useTestDatabase } from '../support/database.js';
import { capturePath } from '../support/replay-dsl.js';

const testDb = useTestDatabase();
beforeEach(() => testDb.reset());
const secrets = new SecretBox(randomBytes(32));

/** Every replayable capture on its own, plus the s1 files as consecutive connections of one endpoint. */
const CASES: Array<{ name: string; files: string[]; endpoint?: string }> = [
  'nodepass-s1-main-debug.sse',
  'nodepass-s1-main-debug.timestamped.txt',
  'nodepass-s1-after-key-rotation.sse',
  'nodepass-s1-after-master-restart.sse',
  'nodepass-s1-second-subscriber.sse',
  'nodepass-s2-info-level.sse',
  'nodepass-s2-info-level.timestamped.txt',
  'nodepass-s3-report-interval-1s.sse',
].map((f) => ({ name: f, files: [capturePath(f)] }));
CASES.push({
  name: 's1 main + after key rotation + after master restart, as one endpoint',
  files: ['nodepass-s1-main-debug.sse', 'nodepass-s1-after-key-rotation.sse', 'nodepass-s1-after-master-restart.sse'].map(capturePath),
  endpoint: 's1',
});
CASES.push({
  name: 's1 and s2 and s3 together (three endpoints)',
  files: ['nodepass-s1-main-debug.sse', 'nodepass-s2-info-level.sse', 'nodepass-s3-report-interval-1s.sse'].map(capturePath),
});

const COUNTERS = ['tcprx', 'tcptx', 'udprx', 'udptx'] as const;
type Totals = Record<(typeof COUNTERS)[number], number>;
const ZERO: Totals = { tcprx: 0, tcptx: 0, udprx: 0, udptx: 0 };
const pick = (t: Totals): Totals => ({ tcprx: t.tcprx, tcptx: t.tcptx, udprx: t.udprx, udptx: t.udptx });

/** Every row of every table, in a fixed order (ids included: a second replay must not even consume one). */
async function dump(sql: Sql): Promise<Record<string, unknown[]>> {
  const tables = await sql<{ name: string }[]>`
    SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema() AND tablename <> 'schema_migrations' ORDER BY tablename`;
  const out: Record<string, unknown[]> = {};
  for (const { name } of tables) out[name] = await sql.unsafe(`SELECT * FROM "${name}" ORDER BY 1, 2, 3`);
  return out;
}

async function checkDatabaseAgrees(sql: Sql, report: ReplayReport, endpointIds: number[]): Promise<number> {
  let tunnelsChecked = 0;
  for (const [i, ep] of report.endpoints.entries()) {
    const endpointId = endpointIds[i]!;
    const hourly = await sql<Array<{ instance_id: string } & Totals>>`
      SELECT instance_id, sum(tcprx)::bigint AS tcprx, sum(tcptx)::bigint AS tcptx, sum(udprx)::bigint AS udprx, sum(udptx)::bigint AS udptx
      FROM traffic_hourly_tunnel WHERE endpoint_id = ${endpointId} GROUP BY instance_id`;
    const stored = await sql<Array<{ instance_id: string } & Totals>>`
      SELECT instance_id, traffic_tcprx AS tcprx, traffic_tcptx AS tcptx, traffic_udprx AS udprx, traffic_udptx AS udptx
      FROM tunnels WHERE endpoint_id = ${endpointId}`;
    const logs = await sql<Array<{ instance_id: string; n: number }>>`
      SELECT instance_id, count(*)::int AS n FROM tunnel_logs WHERE endpoint_id = ${endpointId} GROUP BY instance_id`;
    const hourlyBy = new Map(hourly.map((r) => [r.instance_id, pick(r)]));
    const storedBy = new Map(stored.map((r) => [r.instance_id, pick(r)]));
    const logsBy = new Map(logs.map((r) => [r.instance_id, r.n]));
    for (const t of ep.tunnels) {
      expect(hourlyBy.get(t.instanceId) ?? ZERO, `${ep.name}/${t.instanceId} hourly traffic`).toEqual(t.traffic);
      expect(storedBy.get(t.instanceId), `${ep.name}/${t.instanceId} tunnels.traffic`).toEqual(t.traffic);
      expect(logsBy.get(t.instanceId) ?? 0, `${ep.name}/${t.instanceId} log rows`).toBe(t.logLines);
      tunnelsChecked++;
    }
    // No row for a tunnel the report does not know.
    expect([...storedBy.keys()].sort()).toEqual(ep.tunnels.map((t) => t.instanceId).sort());
  }

  // Rollups: endpoint and global totals are exactly the sums of the tunnel rows, hour by hour.
  const endpointMismatch = await sql`
    WITH sums AS (
      SELECT endpoint_id, hour, sum(tcprx)::bigint AS tcprx, sum(tcptx)::bigint AS tcptx, sum(udprx)::bigint AS udprx, sum(udptx)::bigint AS udptx
      FROM traffic_hourly_tunnel GROUP BY endpoint_id, hour)
    SELECT * FROM sums s FULL JOIN traffic_hourly_endpoint e USING (endpoint_id, hour)
    WHERE (s.tcprx, s.tcptx, s.udprx, s.udptx) IS DISTINCT FROM (e.tcprx, e.tcptx, e.udprx, e.udptx)`;
  expect(endpointMismatch).toEqual([]);
  const globalMismatch = await sql`
    WITH sums AS (
      SELECT hour, sum(tcprx)::bigint AS tcprx, sum(tcptx)::bigint AS tcptx, sum(udprx)::bigint AS udprx, sum(udptx)::bigint AS udptx
      FROM traffic_hourly_tunnel GROUP BY hour)
    SELECT * FROM sums s FULL JOIN traffic_hourly_global g USING (hour)
    WHERE (s.tcprx, s.tcptx, s.udprx, s.udptx) IS DISTINCT FROM (g.tcprx, g.tcptx, g.udprx, g.udptx)`;
  expect(globalMismatch).toEqual([]);
  return tunnelsChecked;
}

describe('replay --db: the database agrees with the report', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      const inMemory = replayFiles(c.files, { endpoint: c.endpoint });
      const first = await replayFilesIntoDatabase(c.files, { endpoint: c.endpoint, db: testDb.db, secrets, skipMigrate: true });
      expect(first.report).toEqual(inMemory);
      expect(first.stats.databaseErrors).toBe(0);
      expect(first.stats.logRowsCut).toBe(0);
      expect(first.stats.databaseWrites.statements).toBeGreaterThan(0);

      const tunnels = await checkDatabaseAgrees(testDb.sql, first.report, first.endpointIds);
      expect(tunnels).toBe(inMemory.endpoints.reduce((n, e) => n + e.tunnels.length, 0));
      // Something was really written for a capture with traffic or logs.
      const logLines = inMemory.endpoints.flatMap((e) => e.tunnels).reduce((n, t) => n + t.logLines, 0);
      const [{ n } = { n: 0 }] = await testDb.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM tunnel_logs`;
      expect(n).toBe(logLines);

      const before = await dump(testDb.sql);
      const second = await replayFilesIntoDatabase(c.files, { endpoint: c.endpoint, db: testDb.db, secrets, skipMigrate: true });
      expect(second.report).toEqual(inMemory);
      expect(second.endpointIds).toEqual(first.endpointIds);
      expect(await dump(testDb.sql)).toEqual(before);
    }, 120_000);
  }
});
