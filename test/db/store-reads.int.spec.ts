import { beforeAll, describe, expect, it } from 'vitest';
import { InvalidCursorError } from '../../src/db/errors.js';
import { Store, type StoredLog } from '../../src/db/store.js';
import { useTestDatabase } from '../support/database.js';
import { bucket, configRecord, counters, HOUR, insertEndpoint, logLines, stateRecord, T0 } from './records.js';

const testDb = useTestDatabase();
let store: Store;
let alpha: number;
let beta: number;

beforeAll(async () => {
  store = new Store(testDb.db);
  alpha = await insertEndpoint(testDb.sql, 'alpha');
  beta = await insertEndpoint(testDb.sql, 'beta');
  // 250 info lines and 50 error lines for a1, 20 lines for a2, 5 for beta's b1; several share a millisecond so
  // the (at, id) keyset is what keeps paging exact.
  const sameMillisecond = logLines(alpha, 'a1', T0 + 500, 30).map((line) => ({ ...line, at: T0 + 500 }));
  await store.insertLogs([
    ...logLines(alpha, 'a1', T0, 220),
    ...sameMillisecond,
    ...logLines(alpha, 'a1', T0 + 10_000, 50, 'error'),
    ...logLines(alpha, 'a2', T0, 20),
    ...logLines(beta, 'b1', T0, 5),
  ]);
});

async function allPages(query: Parameters<Store['logsPage']>[0]): Promise<{ pages: number; items: StoredLog[] }> {
  const items: StoredLog[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const page = await store.logsPage({ ...query, cursor });
    items.push(...page.items);
    cursor = page.nextCursor;
    pages += 1;
  } while (cursor && pages < 100);
  return { pages, items };
}

describe('logsPage', () => {
  it('walks every line of an instance exactly once, newest first', async () => {
    const { pages, items } = await allPages({ endpointId: alpha, instanceId: 'a1', limit: 40 });
    expect(items).toHaveLength(300);
    expect(pages).toBe(8);
    expect(new Set(items.map((item) => item.id)).size).toBe(300);
    const order = items.map((item) => [item.at, item.id] as const);
    const sorted = [...order].sort((x, y) => y[0] - x[0] || y[1] - x[1]);
    expect(order).toEqual(sorted);
    expect(items[0]).toMatchObject({ endpointId: alpha, instanceId: 'a1', level: 'error', at: T0 + 10_049 });
  });

  it('is not disturbed by lines that arrive between pages', async () => {
    const first = await store.logsPage({ endpointId: alpha, instanceId: 'a2', limit: 15 });
    await store.insertLogs(logLines(alpha, 'a2', T0 + 60_000, 3)); // newer than everything: ahead of the cursor
    const second = await store.logsPage({ endpointId: alpha, instanceId: 'a2', limit: 15, cursor: first.nextCursor });
    expect(second.items).toHaveLength(5);
    expect(second.nextCursor).toBeNull();
  });

  it('filters by level, time range and endpoint', async () => {
    const errors = await allPages({ endpointId: alpha, level: 'error', limit: 1000 });
    expect(errors.items).toHaveLength(50);
    expect(errors.items.every((item) => item.level === 'error')).toBe(true);

    const range = await store.logsPage({ endpointId: alpha, instanceId: 'a1', since: T0 + 100, until: T0 + 200, limit: 1000 });
    expect(range.items.map((item) => item.at)).toEqual(Array.from({ length: 100 }, (_, i) => T0 + 199 - i));

    expect((await allPages({ endpointId: beta })).items).toHaveLength(5);
  });

  it('rejects a cursor it did not issue', async () => {
    await expect(store.logsPage({ endpointId: alpha, cursor: 'bm90LWEtY3Vyc29y' })).rejects.toBeInstanceOf(InvalidCursorError);
  });
});

describe('countLogs', () => {
  it('counts with the same filters as paging', async () => {
    expect(await store.countLogs({ endpointId: alpha, instanceId: 'a1' })).toBe(300);
    expect(await store.countLogs({ endpointId: alpha, level: ['error', 'warn'] })).toBe(50);
    expect(await store.countLogs({ endpointId: alpha, instanceId: 'a1', since: T0 + 500, until: T0 + 501 })).toBe(30);
  });
});

describe('loadTunnels and sumTunnelTraffic', () => {
  it('returns what a tunnel actor needs to resume: configuration, state and open buckets', async () => {
    const config = configRecord(alpha, 'r1', T0 + 5, { alias: 'web', status: 'running' });
    const state = stateRecord(alpha, 'r1', T0 + 9, { traffic: counters(40, 4), counters: counters(400, 40) });
    await store.writeTunnelConfigs([config]);
    await store.flushTunnelStates([state], [
      bucket(alpha, 'r1', T0, counters(30, 3)),
      bucket(alpha, 'r1', T0 + HOUR, counters(10, 1)),
    ]);
    await store.rollupHours([T0], T0 + HOUR + 1); // closes the first hour only
    await store.flushTunnelStates([stateRecord(alpha, 'r2', T0)], []); // state before any configuration
    await store.insertLogs(logLines(alpha, 'r1', T0, 7)); // lines stored after the last state flush

    const [r1, r2] = await store.loadTunnels(alpha).then((all) => all.filter((t) => t.instanceId.startsWith('r')));
    expect(r1).toEqual({
      endpointId: alpha,
      instanceId: 'r1',
      config,
      state,
      openBuckets: [bucket(alpha, 'r1', T0 + HOUR, counters(10, 1))],
      storedLogLines: 7,
    });
    expect(r2).toMatchObject({ instanceId: 'r2', config: null, state: { at: T0 }, storedLogLines: 0 });

    expect(await store.sumTunnelTraffic({ endpointId: alpha, instanceId: 'r1' })).toEqual(counters(40, 4));
    expect(await store.sumTunnelTraffic({ endpointId: alpha })).toEqual(counters(140, 204));
    expect(await store.sumTunnelTraffic({ endpointId: beta })).toEqual(counters(0));
  });
});
