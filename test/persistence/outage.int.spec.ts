/**
 * Database outages lose nothing (issue 3, item 3). PostgreSQL is reached through a TCP proxy on loopback
 * that the test cuts (`refuse`: connections reset, new ones refused; `blackhole`: sockets stay open, nothing
 * moves) while a load runs: log lines with unique `seq` numbers and traffic updates of 50 tunnels.
 * During the cut ingestion carries on at its pace, the log queue's memory stays under its cap with the
 * excess in the spill file; after restore every line is in `tunnel_logs` exactly once and every tunnel's
 * traffic (row total and hour buckets) is exact.
 *
 * And the lost COMMIT: a batch whose COMMIT reached the server but whose answer never came back (the
 * connection dropped while the commit ran) is reported by postgres.js as a failure, retried, and lands once.
 *
 * Needs a PostgreSQL server (TEST_DATABASE_URL): the embedded database is a unix socket inside the process.
 * The outage length is OUTAGE_SPEC_MS (default 6000; the issue's 60 s drill: OUTAGE_SPEC_MS=60000).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../src/db/connection.js';
import { migrate } from '../../src/db/migrate.js';
import { startTcpProxy, type CutMode, type TcpProxy } from '../support/tcp-proxy.js';
import { createEndpointRow, FakeTunnel, logLine, startPersistence, storeOf, type PersistenceHarness } from './harness.js';

const SERVER = process.env['TEST_DATABASE_URL'];
const OUTAGE_MS = Number(process.env['OUTAGE_SPEC_MS'] ?? 6_000);
const MEMORY_CAP = 2_000;

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function waitFor(what: string, probe: () => Promise<boolean> | boolean, timeoutMs: number, state?: () => unknown): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${state ? `: ${JSON.stringify(state())}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A schema of the test's own, reached directly (for checks) and through the proxy (for the persister). */
async function setUp(): Promise<{ direct: Database; proxied: Database; proxy: TcpProxy; schema: string; spillDir: string }> {
  const schema = `t_${randomBytes(6).toString('hex')}`;
  const direct = await openDatabase({ url: SERVER!, schema, max: 2 });
  cleanups.push(async () => {
    // A write that was still under way when its test ended can deadlock with the drop: try again.
    for (let attempt = 0; ; attempt++) {
      try {
        await direct.sql.unsafe(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
        break;
      } catch (error) {
        if (attempt >= 4 || (error as { code?: string }).code !== '40P01') throw error;
      }
    }
    await direct.close();
  });
  await migrate(direct.sql);
  const target = new URL(SERVER!);
  const proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
  cleanups.push(() => proxy.close());
  const proxied = await openDatabase({ url: proxy.url(SERVER!), schema, max: 4 });
  cleanups.push(() => proxied.sql.end({ timeout: 0 }));
  const spillDir = mkdtempSync(join(tmpdir(), 'tp-outage-'));
  cleanups.push(() => rmSync(spillDir, { recursive: true, force: true }));
  return { direct, proxied, proxy, schema, spillDir };
}

function start(proxied: Database, spillDir: string): PersistenceHarness {
  const h = startPersistence(storeOf(proxied.sql, 1_000_000), {
    settings: { memoryCapRows: MEMORY_CAP, spillDir, logFlushMs: 200, stateFlushMs: 200 },
    // The production retry machine, with a shorter cap so the test sees the recovery within a few seconds.
    supervisors: {
      configWriter: { name: 'configWriter', batchSize: 1, intervalMs: 0, retryBaseMs: 100, retryCapMs: 1_000 },
      stateFlusher: { name: 'stateFlusher', batchSize: Number.MAX_SAFE_INTEGER, intervalMs: 200, retryBaseMs: 100, retryCapMs: 1_000 },
      logBatcher: { name: 'logBatcher', batchSize: 100, intervalMs: 200, retryBaseMs: 100, retryCapMs: 1_000 },
    },
  });
  cleanups.push(() => h.stop());
  return h;
}

describe.skipIf(!SERVER)('database outage through a cuttable proxy', () => {
  for (const mode of ['refuse', 'blackhole'] as CutMode[]) {
    it(`${mode}: ingestion continues, memory stays under the cap, nothing lost or doubled after restore`, async () => {
      const { direct, proxied, proxy, spillDir } = await setUp();
      const endpointId = await createEndpointRow(direct.sql, 'outage');
      const h = start(proxied, spillDir);
      const tunnels = Array.from({ length: 50 }, (_, i) => new FakeTunnel(endpointId, `t${i}`));

      // The load: every 10 ms, 20 log lines (5 instances) and 10 tunnel checkpoints, in real time.
      let seq = 0;
      let ticks = 0;
      let maxMemoryHeld = 0;
      let maxSpilled = 0;
      let maxSpillBytes = 0;
      const timer = setInterval(() => {
        const now = Date.now();
        for (let k = 0; k < 20; k++) {
          seq++;
          h.persister.tunnelEffects.queueLog(undefined, logLine(endpointId, `i${seq % 5}`, seq, now));
        }
        for (let k = 0; k < 10; k++) {
          const t = tunnels[(ticks * 10 + k) % tunnels.length]!;
          h.persister.tunnelEffects.queueState(undefined, t.update(1_000 + ((ticks + k) % 97), now));
        }
        ticks++;
        maxMemoryHeld = Math.max(maxMemoryHeld, h.persister.logQueue.memoryHeld);
        maxSpilled = Math.max(maxSpilled, h.persister.logQueue.spilledNow);
        const q = h.stats.snapshot().queues['logs'];
        if (q) maxSpillBytes = Math.max(maxSpillBytes, q.spillBytes);
      }, 10);
      cleanups.push(() => clearInterval(timer));

      await new Promise((r) => setTimeout(r, 1_500));
      const linesBeforeCut = seq;
      const errorsBeforeCut = h.stats.snapshot().databaseErrors;
      proxy.cut(mode);
      await new Promise((r) => setTimeout(r, OUTAGE_MS));
      const linesDuringCut = seq - linesBeforeCut;
      const oldestAgeAtRestore = h.stats.snapshot().queues['logs']?.oldestAgeMs ?? 0;
      proxy.restore();
      await new Promise((r) => setTimeout(r, 1_500));
      clearInterval(timer);
      const total = seq;

      // Ingestion kept its pace through the cut (the timer fires ~every 10 ms; allow for a busy shared box).
      expect(linesDuringCut).toBeGreaterThan((OUTAGE_MS / 10) * 20 * 0.3);
      // The excess went to disk; memory (queued + out with a writer) never passed the cap.
      expect(maxSpilled).toBeGreaterThan(0);
      expect(maxSpillBytes).toBeGreaterThan(0);
      expect(maxMemoryHeld).toBeLessThanOrEqual(MEMORY_CAP);
      expect(oldestAgeAtRestore).toBeGreaterThanOrEqual(OUTAGE_MS * 0.8);
      if (mode === 'refuse') expect(h.stats.snapshot().databaseErrors).toBeGreaterThan(errorsBeforeCut);

      // Everything drains after the restore.
      const restoredAt = Date.now();
      await waitFor('the queues to drain', () => h.persister.pendingRows === 0 && !h.persister.busy, 60_000 + OUTAGE_MS, () => ({
        stats: h.stats.snapshot(),
        logBatcher: h.supervisor('logBatcher'),
        stateFlusher: h.supervisor('stateFlusher'),
      }));
      if (process.env['OUTAGE_SPEC_REPORT']) {
        process.stderr.write(`outage ${mode} ${OUTAGE_MS} ms: ${total} lines (${linesDuringCut} during the cut), max spilled ${maxSpilled}, ` +
          `max spill file ${maxSpillBytes} B, max held in memory ${maxMemoryHeld}; drained ${Date.now() - restoredAt} ms after restore\n`);
      }

      const [logs] = await direct.sql<{ n: number; distinct_lines: number; min_seq: number; max_seq: number }[]>`
        SELECT count(*)::int AS n, count(DISTINCT message)::int AS distinct_lines,
               min(substring(message from 'seq=([0-9]+)')::int) AS min_seq, max(substring(message from 'seq=([0-9]+)')::int) AS max_seq
        FROM tunnel_logs`;
      expect(logs).toEqual({ n: total, distinct_lines: total, min_seq: 1, max_seq: total });

      const rows = await direct.sql<{ instance_id: string; tcprx: number; tcptx: number; udprx: number; hourly: number }[]>`
        SELECT t.instance_id, t.traffic_tcprx AS tcprx, t.traffic_tcptx AS tcptx, t.traffic_udprx AS udprx,
               (SELECT sum(h.tcprx)::bigint FROM traffic_hourly_tunnel h WHERE h.endpoint_id = t.endpoint_id AND h.instance_id = t.instance_id) AS hourly
        FROM tunnels t ORDER BY t.instance_id`;
      const expected = tunnels
        .map((t) => ({ instance_id: t.context.instanceId, tcprx: t.context.traffic.tcprx, tcptx: t.context.traffic.tcptx, udprx: t.context.traffic.udprx, hourly: t.context.traffic.tcprx }))
        .sort((a, b) => (a.instance_id < b.instance_id ? -1 : 1));
      expect(rows).toEqual(expected);
      expect(h.persister.logQueue.spillBytes()).toBe(0); // the spill file is gone once read back
    }, 60_000 + OUTAGE_MS * 3);
  }

  it('shutdown while the database is black-holed: close() gives up at its deadline, spills, and the next start writes it all once', async () => {
    const { direct, proxied, proxy, spillDir } = await setUp();
    const endpointId = await createEndpointRow(direct.sql, 'shutdown');
    const h = start(proxied, spillDir);
    for (let seq = 1; seq <= 150; seq++) h.persister.tunnelEffects.queueLog(undefined, logLine(endpointId, 'i1', seq, Date.now()));
    await waitFor('the first batch written', async () => (await direct.sql`SELECT 1 FROM tunnel_logs`).length === 100, 10_000);
    proxy.cut('blackhole');
    // 1,350 more: a batch goes out to the hung connection, the rest waits in the queue.
    for (let seq = 151; seq <= 1_500; seq++) h.persister.tunnelEffects.queueLog(undefined, logLine(endpointId, 'i1', seq, Date.now()));
    await new Promise((r) => setTimeout(r, 400));
    const started = Date.now();
    await expect(h.persister.close(Date.now() + 1_500)).rejects.toThrow(/shutdown deadline/);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(h.persister.logQueue.spilledNow).toBe(1_400); // the hung batch and the queue, nothing left behind
    h.stop();

    // The next process: a new persister on the same spill folder, the database reachable again.
    proxy.restore();
    const direct2 = startPersistence(storeOf(direct.sql, 1_000_000), { settings: { memoryCapRows: MEMORY_CAP, spillDir, logFlushMs: 200 } });
    cleanups.push(() => direct2.stop());
    // Read back at once (the supervisor is woken as it attaches): held in memory or still in the file.
    expect(direct2.persister.logQueue.memoryHeld + direct2.persister.logQueue.spilledNow).toBe(1_400);
    await waitFor('the spilled lines written', () => direct2.persister.pendingRows === 0 && !direct2.persister.busy, 30_000);
    const [after] = await direct.sql<{ n: number; distinct_lines: number }[]>`
      SELECT count(*)::int AS n, count(DISTINCT message)::int AS distinct_lines FROM tunnel_logs`;
    expect(after).toEqual({ n: 1_500, distinct_lines: 1_500 });
  }, 60_000);

  it('a batch whose COMMIT ran but whose answer was lost is retried and lands exactly once', async () => {
    const { direct, proxied, proxy, schema, spillDir } = await setUp();
    const endpointId = await createEndpointRow(direct.sql, 'lost-commit');
    // A deferred constraint trigger runs at COMMIT: it sleeps there once, so the test can cut the connection
    // while the server is committing (the data commits; the client never hears so).
    await direct.sql.unsafe(`
      CREATE TABLE slow_commit (armed boolean NOT NULL);
      INSERT INTO slow_commit VALUES (true);
      CREATE FUNCTION slow_commit_once() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF (SELECT armed FROM slow_commit) THEN
          UPDATE slow_commit SET armed = false;
          PERFORM pg_sleep(1.5);
        END IF;
        RETURN NULL;
      END $$;
      CREATE CONSTRAINT TRIGGER slow_commit_logs AFTER INSERT ON tunnel_logs
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit_once();`);
    const h = start(proxied, spillDir);
    for (let seq = 1; seq <= 250; seq++) h.persister.tunnelEffects.queueLog(undefined, logLine(endpointId, 'i1', seq, Date.now()));

    // The first batch (100 lines) is committing (asleep in the trigger): cut now.
    await waitFor(
      'a commit in progress',
      async () => (await direct.sql`SELECT 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND pid <> pg_backend_pid()`).length > 0,
      10_000,
    );
    proxy.cut('refuse');
    await waitFor('the client to see the failure', () => h.stats.snapshot().databaseErrors > 0, 10_000);
    // The server finished the commit although nobody was listening: the rows are there…
    await waitFor(
      'the orphaned commit to land',
      async () => (await direct.sql`SELECT armed FROM slow_commit`)[0]!['armed'] === false && (await direct.sql`SELECT 1 FROM tunnel_logs LIMIT 1`).length > 0,
      10_000,
    );
    const [committed] = await direct.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM tunnel_logs`;
    expect(committed!.n).toBe(100);
    // … and the persister still holds the batch, since for all it knows it failed.
    // postgres.js rejects the in-flight query with the socket error (observed: `read ECONNRESET`), the batcher counts it.
    expect(String(h.supervisor('logBatcher').context['lastError'])).toMatch(/ECONNRESET|ECONNREFUSED|CONNECTION_CLOSED|CONNECTION_ENDED/);
    // (queued, or out with a retry that is failing against the cut proxy: either way held, not dropped)
    expect(h.persister.logQueue.memoryHeld + h.persister.logQueue.spilledNow).toBe(250);

    proxy.restore();
    await waitFor('the queues to drain', () => h.persister.pendingRows === 0 && !h.persister.busy, 30_000);
    const [after] = await direct.sql<{ n: number; distinct_lines: number }[]>`
      SELECT count(*)::int AS n, count(DISTINCT message)::int AS distinct_lines FROM tunnel_logs`;
    expect(after).toEqual({ n: 250, distinct_lines: 250 });
    const [daily] = await direct.sql<{ kept: number }[]>`SELECT kept FROM log_daily_counts`;
    // The daily count is kept in the same statement, so it did not double either.
    expect(daily?.kept).toBe(250);
    expect(schema).toMatch(/^t_/);
  }, 60_000);
});
