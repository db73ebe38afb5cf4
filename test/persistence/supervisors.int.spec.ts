/**
 * The persistence supervisors against the real store (PostgreSQL with TEST_DATABASE_URL, embedded PGlite
 * otherwise), their timers on a stepped clock:
 *  - the log batcher writes at 100 rows at once, or after 2 s for fewer, one statement per batch;
 *  - the state flusher coalesces: 10,000 updates of 10 tunnels are a handful of statements; 10,000 tunnels
 *    reporting every 5 s cost at most 2 statements per 1,000 update events; the database holds the latest;
 *  - the hourly rollup runs after each hour (on the clock), and running it again changes nothing.
 * Statements are counted by the runtime's Stats (what `/api/stats` reports), not by the test.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HOUR_MS } from '../../actors/traffic.js';
import { SteppedClock } from '../../src/runtime/stepped-clock.js';
import { useTestDatabase } from '../support/database.js';
import { createEndpointRow, FakeTunnel, logLine, startPersistence, storeOf, type PersistenceHarness } from './harness.js';

const testDb = useTestDatabase();
// 10:00:00 UTC on some day, so hour boundaries are easy to reason about.
const T0 = Date.UTC(2026, 0, 15, 10, 0, 0);
let harness: PersistenceHarness | null = null;
let endpointId = 0;

beforeEach(async () => {
  await testDb.reset();
  endpointId = await createEndpointRow(testDb.sql, 'e1');
});
afterEach(() => {
  harness?.stop();
  harness = null;
});

const countLogs = async () => (await testDb.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM tunnel_logs`)[0]!.n;
const statements = (h: PersistenceHarness) => h.stats.snapshot().databaseWrites.statements;

describe('log batcher', () => {
  it('writes a full batch of 100 at once, in one statement, without waiting for the timer', async () => {
    const clock = new SteppedClock(T0);
    const h = (harness = startPersistence(storeOf(testDb.sql), { clock }));
    await h.settle();
    for (let seq = 1; seq <= 99; seq++) h.persister.tunnelEffects.queueLog(undefined, logLine(endpointId, 'i1', seq, clock.now()));
    await h.settle();
    expect(await countLogs()).toBe(0);
    expect(h.supervisor('logBatcher').value).toBe('waiting');

    h.persister.tunnelEffects.queueLog(undefined, logLine(endpointId, 'i1', 100, clock.now()));
    await h.settle();
    expect(await countLogs()).toBe(100);
    expect(statements(h)).toBe(1);
    expect(clock.now()).toBe(T0); // no time passed: the size, not the timer, triggered it
    expect(h.supervisor('logBatcher').value).toBe('idle');
  });

  it('writes fewer than 100 after 2 s on the clock, not before', async () => {
    const clock = new SteppedClock(T0);
    const h = (harness = startPersistence(storeOf(testDb.sql), { clock }));
    await h.settle();
    for (let seq = 1; seq <= 37; seq++) h.persister.tunnelEffects.queueLog(undefined, logLine(endpointId, 'i1', seq, clock.now()));
    await h.advance(1_900);
    expect(await countLogs()).toBe(0);
    expect(h.stats.snapshot().queues['logs']?.depth).toBe(37);
    await h.advance(100);
    expect(await countLogs()).toBe(37);
    expect(statements(h)).toBe(1);
    expect(h.stats.snapshot().queues['logs']).toMatchObject({ depth: 0, oldestAgeMs: 0 });
  });

  it('a backlog of 2,500 lines drains in batches of up to 1,000 rows, one statement each', async () => {
    const clock = new SteppedClock(T0);
    const h = (harness = startPersistence(storeOf(testDb.sql), { clock }));
    await h.settle();
    // Pushed without a settle in between: the first full batch is written while the rest queue up behind it.
    for (let seq = 1; seq <= 2_500; seq++) h.persister.tunnelEffects.queueLog(undefined, logLine(endpointId, `i${seq % 7}`, seq, clock.now()));
    await h.advance(2_000);
    expect(await countLogs()).toBe(2_500);
    // 100 (the first full batch), then 1,000 + 1,000 + 400 as the backlog drains.
    expect(statements(h)).toBeLessThanOrEqual(5);
    expect(h.stats.snapshot().databaseWrites.rows).toBe(2_500);
  });
});

describe('state flusher', () => {
  it('10,000 state updates of 10 tunnels are a handful of statements, and the database holds the latest', async () => {
    const clock = new SteppedClock(T0);
    const h = (harness = startPersistence(storeOf(testDb.sql), { clock }));
    await h.settle();
    const tunnels = Array.from({ length: 10 }, (_, i) => new FakeTunnel(endpointId, `t${i}`));
    // 1,000 updates per tunnel over 10 s of clock time (one every 10 ms per tunnel).
    for (let n = 0; n < 1_000; n++) {
      for (const t of tunnels) h.persister.tunnelEffects.queueState(undefined, t.update(100 + n, clock.now()));
      clock.advanceTo(clock.now() + 10);
      if (h.persister.busy) await h.settle();
    }
    await h.advance(2_000);
    const used = statements(h);
    if (process.env['SUPERVISOR_SPEC_REPORT']) process.stderr.write(`coalescing: 10,000 updates of 10 tunnels → ${used} statements\n`);
    // A flush every 2 s over ~12 s, two statements each (states + hour buckets, in one transaction).
    expect(used).toBeGreaterThan(0);
    expect(used).toBeLessThanOrEqual(14);
    const rows = await testDb.sql<{ instance_id: string; traffic_tcprx: number; tcprx: number }[]>`
      SELECT instance_id, traffic_tcprx, tcprx FROM tunnels ORDER BY instance_id`;
    const expectedTraffic = Array.from({ length: 1_000 }, (_, n) => 100 + n).reduce((a, b) => a + b, 0);
    expect(rows).toEqual(tunnels.map((t) => ({ instance_id: t.context.instanceId, traffic_tcprx: expectedTraffic, tcprx: expectedTraffic })));
    const [bucket] = await testDb.sql<{ n: number; total: number }[]>`SELECT count(*)::int AS n, sum(tcprx)::bigint AS total FROM traffic_hourly_tunnel`;
    expect(bucket).toEqual({ n: 10, total: 10 * expectedTraffic });
  });

  it('10,000 tunnels reporting every 5 s: at most 2 statements per 1,000 update events', async () => {
    const TUNNELS = 10_000;
    const ROUNDS = Number(process.env['COALESCE_SPEC_ROUNDS'] ?? 4); // 4 × 5 s = 20 s of clock time, 40,000 events
    const clock = new SteppedClock(T0);
    const h = (harness = startPersistence(storeOf(testDb.sql), { clock }));
    await h.settle();
    const tunnels = Array.from({ length: TUNNELS }, (_, i) => new FakeTunnel(endpointId, `t${i}`));
    let events = 0;
    // Each tunnel reports at its own offset within the 5 s period (0.5 ms apart), as a master's timers would.
    for (let round = 0; round < ROUNDS; round++) {
      for (const [i, t] of tunnels.entries()) {
        clock.advanceTo(T0 + round * 5_000 + i / 2);
        h.persister.tunnelEffects.queueState(undefined, t.update(1_000 + (i % 13), clock.now()));
        events++;
        if (h.persister.busy) await h.settle();
      }
    }
    await h.advance(2_100);
    const used = statements(h);
    if (process.env['SUPERVISOR_SPEC_REPORT']) {
      process.stderr.write(`10,000 tunnels every 5 s: ${events} update events → ${used} statements (${((used / events) * 1_000).toFixed(2)} per 1,000)\n`);
    }
    expect(events).toBe(TUNNELS * ROUNDS);
    expect(used / (events / 1_000)).toBeLessThanOrEqual(2);
    const [sums] = await testDb.sql<{ n: number; total: number }[]>`SELECT count(*)::int AS n, sum(traffic_tcprx)::bigint AS total FROM tunnels`;
    const perRound = tunnels.reduce((a, _, i) => a + 1_000 + (i % 13), 0);
    expect(sums).toEqual({ n: TUNNELS, total: ROUNDS * perRound });
  }, 180_000);
});

describe('hourly rollup', () => {
  it('runs after the hour on the clock, and running it again changes nothing', async () => {
    const clock = new SteppedClock(T0 + 59 * 60_000); // 10:59
    const h = (harness = startPersistence(storeOf(testDb.sql), { clock }));
    await h.settle();
    const a = new FakeTunnel(endpointId, 'a');
    const b = new FakeTunnel(endpointId, 'b');
    h.persister.tunnelEffects.queueState(undefined, a.update(1_000, clock.now()));
    h.persister.tunnelEffects.queueState(undefined, b.update(500, clock.now()));
    await h.advance(30_000, 1_000); // 10:59:30: flushed, the hour still open
    expect((await testDb.sql`SELECT * FROM traffic_hourly_endpoint`).length).toBe(0);

    // 11:01:00 + a little: the rollup (period 1 h, offset 60 s) has run once.
    await h.advance(2 * 60_000, 1_000);
    expect(h.supervisor('hourlyRollup').context['runs']).toBe(1);
    const closed = await testDb.sql<{ closed: boolean }[]>`SELECT closed FROM traffic_hourly_tunnel`;
    expect(closed.map((r) => r.closed)).toEqual([true, true]);
    const totals = await testDb.sql`SELECT endpoint_id, hour, tcprx, tcptx, udprx, udptx FROM traffic_hourly_endpoint`;
    expect(totals).toEqual([{ endpoint_id: endpointId, hour: new Date(T0), tcprx: 1_500, tcptx: 3_000, udprx: 2, udptx: 0 }]);
    const global = await testDb.sql`SELECT hour, tcprx FROM traffic_hourly_global`;
    expect(global).toEqual([{ hour: new Date(T0), tcprx: 1_500 }]);

    // The next run (an hour later) and a direct second run touch nothing.
    const rowsBefore = h.stats.snapshot().databaseWrites.rows;
    await h.advance(HOUR_MS, 60_000);
    expect(h.supervisor('hourlyRollup').context['runs']).toBe(2);
    expect(h.supervisor('hourlyRollup').context['lastResult']).toBe(0);
    expect((await h.persister.rollup()).rows).toBe(0);
    expect(h.stats.snapshot().databaseWrites.rows).toBe(rowsBefore);
    expect(await testDb.sql`SELECT endpoint_id, hour, tcprx, tcptx, udprx, udptx FROM traffic_hourly_endpoint`).toEqual(totals);
  });
});
