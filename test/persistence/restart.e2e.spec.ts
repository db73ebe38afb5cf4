/**
 * Restarts lose nothing (issue 3, item 4), with a real `tunnelpulse start` child process watching a simulated
 * NodePass master over real sockets:
 *  - SIGTERM: exits 0 after flushing; every log line it received is in `tunnel_logs`, traffic is exact;
 *  - kill -9 mid-stream, restart (possibly several times): every tunnel's traffic total, in the restored
 *    actors and in the database, equals the simulator's counters — nothing lost, nothing counted twice.
 *
 * The database: a schema of this file's own on TEST_DATABASE_URL, or the embedded database in a temp data
 * folder (read after the process has exited: the folder is locked while it runs).
 * Needs `npm run build` (the child runs dist/).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../src/db/connection.js';
import { startSimulator, type SimulatorHandle } from '../../src/sim/simulator.js';
import { startServiceProcess, type ServiceProcess, type ServiceProcessOptions } from '../support/service-process.js';
import { startTcpProxy } from '../support/tcp-proxy.js';

const SERVER_URL = process.env['TEST_DATABASE_URL'];
const COUNTERS = ['tcprx', 'tcptx', 'udprx', 'udptx'] as const;
type Counters = Record<(typeof COUNTERS)[number], number>;

interface TunnelView {
  instanceId: string;
  traffic: Counters;
  logLines: number;
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});
afterAll(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function waitFor<T>(what: string, probe: () => Promise<T | null | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A simulator whose traffic and logs the test drives (no timers), and a fresh database for the service. */
async function setUp(instances: number) {
  const sim = await startSimulator({ instances, reportIntervalMs: 0, logRate: 0, lifecycleLogs: false, seed: 'restart-spec' });
  cleanups.push(() => sim.close());
  const dataDir = mkdtempSync(join(tmpdir(), 'tp-restart-'));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const schema = SERVER_URL ? `t_${randomBytes(6).toString('hex')}` : undefined;
  if (SERVER_URL && schema) {
    cleanups.push(async () => {
      const admin = await openDatabase({ url: SERVER_URL, max: 1 });
      await admin.sql.unsafe(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await admin.close();
    });
  }
  const options: ServiceProcessOptions = {
    dataDir,
    databaseUrl: SERVER_URL,
    schema,
    endpoints: [{ name: 'sim', url: sim.master.url, apiKey: sim.master.apiKey }],
    // Short flush intervals so a kill lands between flushes as well as mid-flush.
    env: { TUNNELPULSE_STATE_FLUSH_MS: '300', TUNNELPULSE_LOG_FLUSH_MS: '300', TUNNELPULSE_LOG_LEVEL: 'warn' },
  };
  const openResultDb = (): Promise<Database> =>
    SERVER_URL ? openDatabase({ url: SERVER_URL, schema, max: 1 }) : openDatabase({ dataDir: join(dataDir, 'pglite') });
  return { sim, options, openResultDb };
}

async function start(options: ServiceProcessOptions): Promise<ServiceProcess> {
  const svc = await startServiceProcess(options);
  cleanups.push(async () => void (await svc.kill('SIGKILL')));
  return svc;
}

const simCounters = (sim: SimulatorHandle): Map<string, Counters> =>
  new Map(
    sim.master.instanceIds().map((id) => {
      const inst = sim.master.instance(id)!;
      return [id, { tcprx: inst.tcprx, tcptx: inst.tcptx, udprx: inst.udprx, udptx: inst.udptx }];
    }),
  );

/** One round of traffic: every instance moves some bytes, and a checkpoint reports them. */
function trafficRound(sim: SimulatorHandle, round: number): void {
  for (const [i, id] of sim.master.instanceIds().entries()) {
    sim.master.addTraffic(id, { tcprx: 1_000 + round * 7 + i, tcptx: 2_000 + round, udprx: round % 3 === 0 ? 50 : 0, udptx: i });
  }
  sim.master.checkpoint();
}

const tunnelsOf = (svc: ServiceProcess) => svc.getJson<TunnelView[]>('/api/endpoints/1/tunnels');

async function databaseTraffic(db: Database): Promise<Map<string, Counters>> {
  const rows = await db.sql<Array<{ instance_id: string } & Counters>>`
    SELECT instance_id, traffic_tcprx AS tcprx, traffic_tcptx AS tcptx, traffic_udprx AS udprx, traffic_udptx AS udptx FROM tunnels`;
  return new Map(rows.map((r) => [r.instance_id, { tcprx: r.tcprx, tcptx: r.tcptx, udprx: r.udprx, udptx: r.udptx }]));
}

async function hourlyTraffic(db: Database): Promise<Map<string, Counters>> {
  const rows = await db.sql<Array<{ instance_id: string } & Counters>>`
    SELECT instance_id, sum(tcprx)::bigint AS tcprx, sum(tcptx)::bigint AS tcptx, sum(udprx)::bigint AS udprx, sum(udptx)::bigint AS udptx
    FROM traffic_hourly_tunnel GROUP BY instance_id`;
  return new Map(rows.map((r) => [r.instance_id, { tcprx: r.tcprx, tcptx: r.tcptx, udprx: r.udprx, udptx: r.udptx }]));
}

describe.skipIf(!SERVER_URL)('SIGTERM while the database is unreachable', () => {
  it('exits 1 after its flush deadline with the unwritten lines spilled; the next start writes them all, traffic exact', async () => {
    const { sim, options, openResultDb } = await setUp(2);
    const target = new URL(SERVER_URL!);
    const proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    cleanups.push(() => proxy.close());
    const viaProxy: ServiceProcessOptions = {
      ...options,
      databaseUrl: proxy.url(SERVER_URL!),
      env: { ...options.env, TUNNELPULSE_SHUTDOWN_FLUSH_MS: '2000' },
    };
    const svc = await start(viaProxy);
    const ids = sim.master.instanceIds();
    await waitFor('every tunnel in memory', async () => (await tunnelsOf(svc)).length === ids.length);

    trafficRound(sim, 1);
    for (const id of ids) sim.master.emitLogs(id, 30);
    await waitFor('the first lines written', async () => {
      const db = await openResultDb();
      try {
        return (await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM tunnel_logs`)[0]!.n === 30 * ids.length;
      } finally {
        await db.close();
      }
    });

    proxy.cut('refuse');
    trafficRound(sim, 2);
    for (const id of ids) sim.master.emitLogs(id, 45);
    await waitFor('the later lines in memory', async () => (await tunnelsOf(svc)).every((t) => t.logLines === 75));
    const exit = await svc.kill('SIGTERM');
    expect(exit).toEqual({ code: 1, signal: null });
    expect(svc.output().stdout).toMatch(/flush on shutdown failed/);
    expect(existsSync(join(options.dataDir, 'spill', 'logs.spill.jsonl'))).toBe(true);

    // The database is back; the next start reads the spill back first and writes it.
    proxy.restore();
    const again = await start(options);
    trafficRound(sim, 3);
    const expected = simCounters(sim);
    await waitFor('the restored actors equal to the simulator counters', async () =>
      (await tunnelsOf(again)).every((t) => COUNTERS.every((k) => t.traffic[k] === expected.get(t.instanceId)![k])),
    );
    expect(await again.kill('SIGTERM')).toEqual({ code: 0, signal: null });
    expect(existsSync(join(options.dataDir, 'spill', 'logs.spill.jsonl'))).toBe(false);
    const db = await openResultDb();
    try {
      const logs = await db.sql<Array<{ instance_id: string; n: number; distinct_lines: number }>>`
        SELECT instance_id, count(*)::int AS n, count(DISTINCT message)::int AS distinct_lines FROM tunnel_logs GROUP BY instance_id`;
      expect(logs.sort((a, b) => (a.instance_id < b.instance_id ? -1 : 1))).toEqual(
        [...ids].sort().map((id) => ({ instance_id: id, n: 75, distinct_lines: 75 })),
      );
      expect(await databaseTraffic(db)).toEqual(expected);
    } finally {
      await db.close();
    }
  }, 120_000);
});

describe('restarts of a real tunnelpulse process', () => {
  it('SIGTERM exits 0 after writing every received log line and the exact traffic', async () => {
    const { sim, options, openResultDb } = await setUp(3);
    const svc = await start(options);
    const ids = sim.master.instanceIds();
    await waitFor('every tunnel in memory', async () => (await tunnelsOf(svc)).length === ids.length);

    let linesPerInstance = 0;
    for (let round = 1; round <= 5; round++) {
      trafficRound(sim, round);
      // 37 a round: never a whole batch of 100, so the last lines sit in the queue until the timer or the flush.
      for (const id of ids) sim.master.emitLogs(id, 37);
      linesPerInstance += 37;
      await new Promise((r) => setTimeout(r, 120));
    }
    const expected = simCounters(sim);
    // Everything was received once the actors have it in memory; then SIGTERM at once, before any timer.
    await waitFor('every line and byte in memory', async () => {
      const tunnels = await tunnelsOf(svc);
      return tunnels.every((t) => t.logLines === linesPerInstance && COUNTERS.every((k) => t.traffic[k] === expected.get(t.instanceId)![k]));
    });
    const exit = await svc.kill('SIGTERM');
    expect(exit, svc.output().stdout.slice(-2000)).toEqual({ code: 0, signal: null });

    const db = await openResultDb();
    try {
      const logs = await db.sql<Array<{ instance_id: string; n: number; distinct_messages: number }>>`
        SELECT instance_id, count(*)::int AS n, count(DISTINCT message)::int AS distinct_messages FROM tunnel_logs GROUP BY instance_id`;
      expect(new Map(logs.map((r) => [r.instance_id, r.n]))).toEqual(new Map(ids.map((id) => [id, linesPerInstance])));
      // Each line carries its `seq=N`: no duplicates hide behind the count.
      for (const r of logs) expect(r.distinct_messages).toBe(linesPerInstance);
      expect(await databaseTraffic(db)).toEqual(expected);
      expect(await hourlyTraffic(db)).toEqual(expected);
    } finally {
      await db.close();
    }
  }, 120_000);

  it('kill -9 mid-stream, restarted: traffic totals in memory and in the database equal the simulator counters', async () => {
    const kills = Number(process.env['RESTART_SPEC_KILLS'] ?? 2);
    const { sim, options, openResultDb } = await setUp(4);
    let svc = await start(options);
    const ids = sim.master.instanceIds();
    await waitFor('every tunnel in memory', async () => (await tunnelsOf(svc)).length === ids.length);

    // Traffic keeps flowing the whole time, through the kills and the restarts.
    let round = 0;
    let pumping = true;
    const pump = (async () => {
      while (pumping) {
        trafficRound(sim, ++round);
        await new Promise((r) => setTimeout(r, 40));
      }
    })();

    for (let k = 0; k < kills; k++) {
      // Let a few flushes land (and some not), then kill without warning.
      await new Promise((r) => setTimeout(r, 700 + k * 230));
      const exit = await svc.kill('SIGKILL');
      expect(exit.signal).toBe('SIGKILL');
      await new Promise((r) => setTimeout(r, 200)); // rounds while nobody listens: they arrive as one delta
      svc = await start(options);
    }
    await new Promise((r) => setTimeout(r, 500));
    pumping = false;
    await pump;
    trafficRound(sim, ++round);
    const expected = simCounters(sim);
    expect(round).toBeGreaterThan(10);

    // The restored actors count the same totals as the simulator…
    await waitFor('restored actors equal to the simulator counters', async () => {
      const tunnels = await tunnelsOf(svc);
      return tunnels.length === ids.length && tunnels.every((t) => COUNTERS.every((k) => t.traffic[k] === expected.get(t.instanceId)![k]));
    });
    // … and so does the database, after a clean stop.
    const exit = await svc.kill('SIGTERM');
    expect(exit).toEqual({ code: 0, signal: null });
    const db = await openResultDb();
    try {
      expect(await databaseTraffic(db)).toEqual(expected);
      expect(await hourlyTraffic(db)).toEqual(expected);
    } finally {
      await db.close();
    }
  }, 180_000);
});
