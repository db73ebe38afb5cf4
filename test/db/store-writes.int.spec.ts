import { beforeEach, describe, expect, it } from 'vitest';
import { Store } from '../../src/db/store.js';
import { useTestDatabase } from '../support/database.js';
import { bucket, configRecord, counters, DAY, HOUR, insertEndpoint, logLines, stateRecord, T0 } from './records.js';

const testDb = useTestDatabase();
let store: Store;
let endpointId: number;

beforeEach(async () => {
  await testDb.reset();
  store = new Store(testDb.db);
  endpointId = await insertEndpoint(testDb.sql, 'alpha');
});

async function tunnelRow(instanceId: string) {
  const [row] = await testDb.sql`
    SELECT alias, status, deleted, ping, tcprx, traffic_tcprx, resume, meta, config_at, state_at, status_at
    FROM tunnels WHERE endpoint_id = ${endpointId} AND instance_id = ${instanceId}`;
  return row;
}

describe('writeTunnelConfigs', () => {
  it('upserts a batch in one statement, keeping the newest record of a tunnel that appears twice', async () => {
    const result = await store.writeTunnelConfigs([
      configRecord(endpointId, 'aaaa0001', T0, { alias: 'first' }),
      configRecord(endpointId, 'aaaa0002', T0),
      configRecord(endpointId, 'aaaa0001', T0 + 5, { alias: 'second' }),
    ]);
    expect(result).toEqual({ statements: 1, rows: 2 });
    expect(await tunnelRow('aaaa0001')).toMatchObject({ alias: 'second', meta: { tags: { team: 'ops' } } });
  });

  it('ignores a configuration older than the stored one, and a replay of the same one', async () => {
    await store.writeTunnelConfigs([configRecord(endpointId, 'aaaa0001', T0 + 10, { alias: 'new' })]);
    expect((await store.writeTunnelConfigs([configRecord(endpointId, 'aaaa0001', T0, { alias: 'old' })])).rows).toBe(0);
    expect((await tunnelRow('aaaa0001'))?.['alias']).toBe('new');
  });

  it('writes a tombstone', async () => {
    await store.writeTunnelConfigs([configRecord(endpointId, 'aaaa0001', T0)]);
    await store.writeTunnelConfigs([configRecord(endpointId, 'aaaa0001', T0 + 1, { deleted: true, deletedAt: T0 + 1 })]);
    expect(await tunnelRow('aaaa0001')).toMatchObject({ deleted: true });
  });

  it('returns without a statement for an empty batch', async () => {
    expect(await store.writeTunnelConfigs([])).toEqual({ statements: 0, rows: 0 });
  });
});

describe('writeStatusChanges', () => {
  it('inserts each change once, however often it is written', async () => {
    const changes = [
      { endpointId, instanceId: 'aaaa0001', at: T0, status: 'running' as const },
      { endpointId, instanceId: 'aaaa0001', at: T0 + 1000, status: 'error' as const },
    ];
    expect(await store.writeStatusChanges(changes)).toEqual({ statements: 1, rows: 2 });
    expect(await store.writeStatusChanges([...changes, changes[0]!])).toEqual({ statements: 1, rows: 0 });
  });
});

describe('writeOfflineIntervals', () => {
  it('opens an interval, closes it once, and keeps the first close', async () => {
    expect((await store.writeOfflineIntervals([{ endpointId, from: T0, to: null, reason: 'connection reset' }])).rows).toBe(1);
    expect((await store.writeOfflineIntervals([{ endpointId, from: T0, to: T0 + 5000, reason: '' }])).rows).toBe(1);
    expect((await store.writeOfflineIntervals([{ endpointId, from: T0, to: T0 + 9000, reason: 'other' }])).rows).toBe(0);
    const rows = await testDb.sql`SELECT from_at, to_at, reason FROM endpoint_offline`;
    expect(rows.map((r) => [r['from_at'].getTime(), r['to_at'].getTime(), r['reason']])).toEqual([
      [T0, T0 + 5000, 'connection reset'],
    ]);
    expect(await store.loadOpenOfflineIntervals()).toEqual([]);
  });

  it('merges an open and a close of the same interval within one batch', async () => {
    const result = await store.writeOfflineIntervals([
      { endpointId, from: T0, to: null, reason: '401' },
      { endpointId, from: T0, to: T0 + 1, reason: '' },
      { endpointId, from: T0 + 10, to: null, reason: 'eof' },
    ]);
    expect(result).toEqual({ statements: 1, rows: 2 });
    expect(await store.loadOpenOfflineIntervals(endpointId)).toEqual([{ endpointId, from: T0 + 10, to: null, reason: 'eof' }]);
  });
});

describe('flushTunnelStates', () => {
  it('writes states and open buckets in two statements', async () => {
    const result = await store.flushTunnelStates(
      [stateRecord(endpointId, 'aaaa0001', T0 + 1), stateRecord(endpointId, 'aaaa0002', T0 + 1)],
      [bucket(endpointId, 'aaaa0001', T0, counters(100, 200)), bucket(endpointId, 'aaaa0002', T0, counters(5))],
    );
    expect(result).toEqual({ statements: 2, rows: 4, states: 2, buckets: 2 });
    expect(await tunnelRow('aaaa0001')).toMatchObject({
      ping: 12,
      tcprx: 1000,
      traffic_tcprx: 100,
      resume: { lastCounters: { tcprx: 1000 }, resets: 0 },
    });
  });

  it('never lets an older state overwrite a newer one (newer-wins guard)', async () => {
    await store.flushTunnelStates([stateRecord(endpointId, 'aaaa0001', T0 + 20, { ping: 20 })], []);
    const stale = await store.flushTunnelStates([stateRecord(endpointId, 'aaaa0001', T0 + 10, { ping: 10 })], []);
    expect(stale.states).toBe(0);
    expect((await tunnelRow('aaaa0001'))?.['ping']).toBe(20);
    const same = await store.flushTunnelStates([stateRecord(endpointId, 'aaaa0001', T0 + 20, { ping: 21 })], []);
    expect(same.states).toBe(1); // equal time: the later write wins, so a retry of the newest state lands
  });

  it('keeps status and configuration independent: each path guards status by its own time', async () => {
    await store.writeTunnelConfigs([configRecord(endpointId, 'aaaa0001', T0 + 30, { status: 'error', alias: 'a' })]);
    // A state coalesced before the error arrives late: its dynamic values land, its older status does not.
    await store.flushTunnelStates([stateRecord(endpointId, 'aaaa0001', T0 + 20, { status: 'running', ping: 7 })], []);
    expect(await tunnelRow('aaaa0001')).toMatchObject({ status: 'error', ping: 7, alias: 'a' });
    await store.flushTunnelStates([stateRecord(endpointId, 'aaaa0001', T0 + 40, { status: 'running' })], []);
    expect((await tunnelRow('aaaa0001'))?.['status']).toBe('running');
  });

  it('writes buckets as absolute values that only grow: replays and stale values change nothing', async () => {
    const hour = T0;
    await store.flushTunnelStates([], [bucket(endpointId, 'aaaa0001', hour, counters(100, 10))]);
    const replay = await store.flushTunnelStates([], [bucket(endpointId, 'aaaa0001', hour, counters(100, 10))]);
    const stale = await store.flushTunnelStates([], [bucket(endpointId, 'aaaa0001', hour, counters(50, 5))]);
    const grown = await store.flushTunnelStates([], [bucket(endpointId, 'aaaa0001', hour, counters(150, 10, 1))]);
    // Flushes racing with different counters ahead: each counter keeps its largest value.
    const mixed = await store.flushTunnelStates([], [bucket(endpointId, 'aaaa0001', hour, counters(140, 12, 1))]);
    expect([replay.buckets, stale.buckets, grown.buckets, mixed.buckets]).toEqual([0, 0, 1, 1]);
    const [row] = await testDb.sql`SELECT tcprx, tcptx, udprx, udptx FROM traffic_hourly_tunnel`;
    expect(row).toEqual({ tcprx: 150, tcptx: 12, udprx: 1, udptx: 0 });
  });

  it('merges repeats of one bucket within a batch counter by counter', async () => {
    const result = await store.flushTunnelStates([], [
      bucket(endpointId, 'aaaa0001', T0, counters(100, 1)),
      bucket(endpointId, 'aaaa0001', T0, counters(90, 2)),
    ]);
    expect(result.buckets).toBe(1);
    const [row] = await testDb.sql`SELECT tcprx, tcptx FROM traffic_hourly_tunnel`;
    expect(row).toEqual({ tcprx: 100, tcptx: 2 });
  });

  it('rejects a bucket that does not start on the hour before writing anything', async () => {
    await expect(
      store.flushTunnelStates([stateRecord(endpointId, 'aaaa0001', T0)], [bucket(endpointId, 'aaaa0001', T0 + 1, counters(1))]),
    ).rejects.toThrow(/not the start of an hour/);
    expect(await tunnelRow('aaaa0001')).toBeUndefined();
  });
});

describe('insertLogs', () => {
  it('inserts a batch once: replaying it inserts nothing', async () => {
    const batch = logLines(endpointId, 'aaaa0001', T0, 100);
    expect(await store.insertLogs(batch)).toEqual({ statements: 1, rows: 100, inserted: 100, duplicates: 0, cut: 0 });
    expect(await store.insertLogs(batch)).toEqual({ statements: 1, rows: 0, inserted: 0, duplicates: 100, cut: 0 });
    const [counts] = await testDb.sql`SELECT count(*) AS n FROM tunnel_logs`;
    expect(counts?.['n']).toBe(100);
  });

  it('stores a byte-identical second line at the same time under the next ordinal', async () => {
    const [line] = logLines(endpointId, 'aaaa0001', T0, 1);
    const result = await store.insertLogs([line!, { ...line!, ordinal: 2 }, line!]);
    expect(result).toMatchObject({ inserted: 2, duplicates: 1 });
  });

  it('keeps at most the daily cap per instance and day, counting what it cuts', async () => {
    const capped = new Store(testDb.db, { logDailyCap: 5 });
    const first = await capped.insertLogs([
      ...logLines(endpointId, 'aaaa0001', T0, 3),
      ...logLines(endpointId, 'aaaa0002', T0, 2),
    ]);
    expect(first).toMatchObject({ inserted: 5, cut: 0 });
    const second = await capped.insertLogs(logLines(endpointId, 'aaaa0001', T0 + 1000, 4));
    expect(second).toMatchObject({ inserted: 2, cut: 2 });
    // The next UTC day starts a new allowance.
    const nextDay = await capped.insertLogs(logLines(endpointId, 'aaaa0001', T0 + DAY, 1));
    expect(nextDay).toMatchObject({ inserted: 1, cut: 0 });

    const counts = await testDb.sql`
      SELECT instance_id, to_char(day, 'YYYY-MM-DD') AS day, kept, cut FROM log_daily_counts ORDER BY 1, 2`;
    expect(counts.map((r) => ({ ...r }))).toEqual([
      { instance_id: 'aaaa0001', day: '2025-01-15', kept: 5, cut: 2 },
      { instance_id: 'aaaa0001', day: '2025-01-16', kept: 1, cut: 0 },
      { instance_id: 'aaaa0002', day: '2025-01-15', kept: 2, cut: 0 },
    ]);
    // The kept lines are the earliest of the day.
    const [latest] = await testDb.sql`
      SELECT max(at) AS at FROM tunnel_logs WHERE instance_id = 'aaaa0001' AND at < ${new Date(T0 + HOUR)}`;
    expect(latest?.['at'].getTime()).toBe(T0 + 1001);
  });

  it('counts a replayed batch neither as kept nor as cut when its lines were stored', async () => {
    const batch = logLines(endpointId, 'aaaa0001', T0, 10);
    await store.insertLogs(batch);
    await store.insertLogs(batch);
    const [row] = await testDb.sql`SELECT kept, cut FROM log_daily_counts`;
    expect(row).toEqual({ kept: 10, cut: 0 });
  });
});
