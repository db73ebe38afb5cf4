import { beforeEach, describe, expect, it } from 'vitest';
import { Store } from '../../src/db/store.js';
import { useTestDatabase } from '../support/database.js';
import { bucket, configRecord, counters, DAY, HOUR, insertEndpoint, logLines, T0 } from './records.js';

const testDb = useTestDatabase();
let store: Store;
let alpha: number;
let beta: number;

beforeEach(async () => {
  await testDb.reset();
  store = new Store(testDb.db);
  alpha = await insertEndpoint(testDb.sql, 'alpha');
  beta = await insertEndpoint(testDb.sql, 'beta');
});

async function totals() {
  const endpoint = await testDb.sql`
    SELECT endpoint_id, hour, tcprx, tcptx, udprx, udptx FROM traffic_hourly_endpoint ORDER BY 1, 2`;
  const global = await testDb.sql`SELECT hour, tcprx, tcptx, udprx, udptx FROM traffic_hourly_global ORDER BY 1`;
  return { endpoint: endpoint.map((r) => ({ ...r })), global: global.map((r) => ({ ...r })) };
}

/** Three tunnels over two endpoints, two finished hours and the current one. */
async function givenTraffic() {
  await store.flushTunnelStates([], [
    bucket(alpha, 'a1', T0, counters(100, 10)),
    bucket(alpha, 'a2', T0, counters(50, 5, 1)),
    bucket(beta, 'b1', T0, counters(7)),
    bucket(alpha, 'a1', T0 + HOUR, counters(30)),
    bucket(alpha, 'a1', T0 + 2 * HOUR, counters(1)), // the current hour
  ]);
}
const now = T0 + 2 * HOUR + 60_000;

describe('rollupHours', () => {
  it('closes finished hours and computes per-endpoint and global totals', async () => {
    await givenTraffic();
    const result = await store.rollupHours('all-closed', now);
    expect(result).toMatchObject({ hours: [T0, T0 + HOUR], closedBuckets: 4, endpointRows: 3, globalRows: 2 });

    const { endpoint, global } = await totals();
    expect(endpoint.map((r) => [r['endpoint_id'], r['hour'].getTime(), r['tcprx'], r['tcptx'], r['udprx']])).toEqual([
      [alpha, T0, 150, 15, 1],
      [alpha, T0 + HOUR, 30, 0, 0],
      [beta, T0, 7, 0, 0],
    ]);
    expect(global.map((r) => [r['hour'].getTime(), r['tcprx']])).toEqual([
      [T0, 157],
      [T0 + HOUR, 30],
    ]);
    const [open] = await testDb.sql`SELECT count(*) AS n FROM traffic_hourly_tunnel WHERE NOT closed`;
    expect(open?.['n']).toBe(1); // the current hour stays open
  });

  it('is idempotent: a second run, automatic or for explicit hours, changes nothing', async () => {
    await givenTraffic();
    await store.rollupHours('all-closed', now);
    const before = await totals();
    expect(await store.rollupHours('all-closed', now)).toMatchObject({ rows: 0, hours: [] });
    expect(await store.rollupHours([T0, T0 + HOUR], now)).toMatchObject({ rows: 0, hours: [T0, T0 + HOUR] });
    expect(await totals()).toEqual(before);
  });

  it('recomputes an hour whose bucket grew after it was closed', async () => {
    await givenTraffic();
    await store.rollupHours('all-closed', now);
    await store.flushTunnelStates([], [bucket(alpha, 'a1', T0, counters(120, 10))]); // a late flush
    expect(await store.rollupHours('all-closed', now)).toMatchObject({ hours: [T0], closedBuckets: 1, endpointRows: 1, globalRows: 1 });
    const { global } = await totals();
    expect(global.find((r) => r['hour'].getTime() === T0)?.['tcprx']).toBe(177);
  });
});

describe('trafficSeries', () => {
  it('serves tunnel, endpoint and global series, including the open current hour', async () => {
    await givenTraffic();
    await store.rollupHours('all-closed', now);
    await store.flushTunnelStates([], [bucket(beta, 'b1', T0 + 2 * HOUR, counters(4))]);
    const range = { fromHour: T0, toHour: T0 + 3 * HOUR };

    const tunnel = await store.trafficSeries({ ...range, endpointId: alpha, instanceId: 'a1' });
    expect(tunnel.map((p) => [p.hour, p.traffic.tcprx])).toEqual([[T0, 100], [T0 + HOUR, 30], [T0 + 2 * HOUR, 1]]);

    const endpoint = await store.trafficSeries({ ...range, endpointId: alpha });
    expect(endpoint.map((p) => [p.hour, p.traffic.tcprx])).toEqual([[T0, 150], [T0 + HOUR, 30], [T0 + 2 * HOUR, 1]]);

    const global = await store.trafficSeries(range);
    expect(global.map((p) => [p.hour, p.traffic.tcprx])).toEqual([[T0, 157], [T0 + HOUR, 30], [T0 + 2 * HOUR, 5]]);

    const halfOpen = await store.trafficSeries({ fromHour: T0 + HOUR, toHour: T0 + 2 * HOUR });
    expect(halfOpen.map((p) => p.hour)).toEqual([T0 + HOUR]);
  });

  it('reads an hour whose bucket was reopened from the live buckets, not the stale total', async () => {
    await givenTraffic();
    await store.rollupHours('all-closed', now);
    await store.flushTunnelStates([], [bucket(alpha, 'a2', T0, counters(80, 5, 1))]);
    const [first] = await store.trafficSeries({ fromHour: T0, toHour: T0 + HOUR });
    expect(first?.traffic.tcprx).toBe(187);
  });
});

describe('applyRetention', () => {
  it('deletes logs after 7 days and traffic history after 30, keeping what is younger', async () => {
    const today = T0 + 40 * DAY;
    await store.insertLogs([
      ...logLines(alpha, 'a1', today - 8 * DAY, 3), // expired
      ...logLines(alpha, 'a1', today - 6 * DAY, 2),
    ]);
    await store.flushTunnelStates([], [
      bucket(alpha, 'a1', today - 31 * DAY - (today % HOUR), counters(1)), // expired
      bucket(alpha, 'a1', T0 + 20 * DAY, counters(2)),
    ]);
    await store.rollupHours('all-closed', today);
    await store.writeStatusChanges([
      { endpointId: alpha, instanceId: 'a1', at: today - 31 * DAY, status: 'error' }, // expired
      { endpointId: alpha, instanceId: 'a1', at: today - DAY, status: 'running' },
    ]);
    await store.writeOfflineIntervals([
      { endpointId: alpha, from: today - 32 * DAY, to: today - 31 * DAY, reason: 'old' }, // expired
      { endpointId: alpha, from: today - 35 * DAY, to: null, reason: 'still open' }, // open: kept
    ]);
    await store.writeTunnelConfigs([
      configRecord(alpha, 'gone0001', today - 31 * DAY, { deleted: true, deletedAt: today - 31 * DAY }), // expired
      configRecord(alpha, 'gone0002', today - 2 * DAY, { deleted: true, deletedAt: today - 2 * DAY }),
    ]);

    const result = await store.applyRetention(today, { logsDays: 7, trafficDays: 30 });
    expect(result.deleted).toEqual({
      logs: 3,
      logDailyCounts: 1,
      trafficTunnel: 1,
      trafficEndpoint: 1,
      trafficGlobal: 1,
      statusChanges: 1,
      offline: 1,
      tombstones: 1,
    });
    expect(result.rows).toBe(10);
    expect((await store.applyRetention(today)).rows).toBe(0);
    expect(await store.countLogs({ endpointId: alpha })).toBe(2);
    expect((await store.loadTunnels(alpha)).map((t) => t.instanceId)).toEqual(['gone0002']);
  });
});
