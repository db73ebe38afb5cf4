/**
 * The hot writes send their columns as array literals built by the store (`numberArray`, `textArray`, a JSON array
 * for `resume`) instead of postgres.js' serialisation, and a state flush is cut into statements of at most
 * `FLUSH_CHUNK_ROWS` rows: awkward values survive the round trip exactly, and a large flush writes every row.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { FLUSH_CHUNK_ROWS, Store, arrayLiteralsInTurns, numberArray, textArray } from '../../src/db/store.js';
import { useTestDatabase } from '../support/database.js';
import { bucket, counters, insertEndpoint, logLines, stateRecord, T0 } from '../db/records.js';

const testDb = useTestDatabase();
let store: Store;
let endpointId: number;

beforeEach(async () => {
  await testDb.reset();
  store = new Store(testDb.db);
  endpointId = await insertEndpoint(testDb.sql, 'alpha');
});

const AWKWARD = ['', 'NULL', 'null', 'a"b', 'back\\slash', '{braces},comma', ' lead and trail ', 'ünïcødé ✓', 'line\nbreak', '\\"both\\"'];

describe('array literals', () => {
  it('format numbers and nulls, quote and escape text only where needed', () => {
    expect(numberArray([1, null, 2.5, -3, undefined], (v) => v)).toBe('{1,NULL,2.5,-3,NULL}');
    expect(() => numberArray([Number.NaN], (v) => v)).toThrow(/finite/);
    expect(textArray(['a', null, 'x"y', 'p\\q'], (v) => v)).toBe('{"a",NULL,"x\\"y","p\\\\q"}');
    expect(numberArray([], (v: number) => v)).toBe('{}');
  });

  it('round-trip awkward text through PostgreSQL unchanged', async () => {
    const literal = textArray([...AWKWARD, null], (v) => v);
    // Elements one by one (postgres.js reads an unquoted NULL in a returned array as the string "NULL").
    const elements = await testDb.sql<{ value: string | null }[]>`
      SELECT value FROM unnest(${literal}::text[]) WITH ORDINALITY AS e(value, n) ORDER BY n`;
    expect(elements.map((e) => e.value)).toEqual([...AWKWARD, null]);
    const [row] = await testDb.sql<{ numbers: number[] }[]>`
      SELECT ${numberArray([0, 1.25, 9_007_199_254_740_991], (v) => v)}::float8[] AS numbers`;
    expect(row!.numbers).toEqual([0, 1.25, 9_007_199_254_740_991]);
  });

  it('store log messages and a resume holding quotes, backslashes and unicode exactly', async () => {
    const lines = logLines(endpointId, 'aaaa0001', T0, AWKWARD.length).map((line, i) => ({ ...line, message: AWKWARD[i]! }));
    expect(await store.insertLogs(lines)).toMatchObject({ statements: 1, inserted: AWKWARD.length });
    const stored = await testDb.sql<{ message: string }[]>`SELECT message FROM tunnel_logs ORDER BY at`;
    expect(stored.map((r) => r.message)).toEqual(AWKWARD);

    const resume = { note: 'a"b\\c ✓', nested: { list: [1, null, 'x'] }, empty: '' };
    await store.flushTunnelStates([stateRecord(endpointId, 'quote"d\\id', T0, { resume })], []);
    const [tunnel] = await testDb.sql<{ instance_id: string; resume: unknown }[]>`SELECT instance_id, resume FROM tunnels`;
    expect(tunnel).toEqual({ instance_id: 'quote"d\\id', resume });
  });
});

describe('the literals of a batch built in turns', () => {
  const rows = Array.from({ length: 500 }, (_, i) => ({ n: i % 7 === 0 ? null : i * 1.5, t: AWKWARD[i % AWKWARD.length]!, j: { i, s: AWKWARD[i % 3] } }));

  it('equal the one-column literals, column by column', async () => {
    const [numbers, texts, json] = await arrayLiteralsInTurns(rows, [
      { kind: 'number', pick: (r) => r.n },
      { kind: 'text', pick: (r) => r.t },
      { kind: 'json', pick: (r) => r.j },
    ] as const);
    expect(numbers).toBe(numberArray(rows, (r) => r.n));
    expect(texts).toBe(textArray(rows, (r) => r.t));
    expect(JSON.parse(json)).toEqual(rows.map((r) => r.j));
    expect(await arrayLiteralsInTurns([], [{ kind: 'number', pick: (r: { n: number }) => r.n }] as const)).toEqual(['{}']);
  });

  it('yield to the event loop when the work outlasts a turn', async () => {
    // Each pick spins ~0.1 ms: 500 rows are ~50 ms of work, which must not run as one task.
    let immediates = 0;
    let pending = true;
    const count = (): void => {
      immediates++;
      if (pending) setImmediate(count);
    };
    setImmediate(count);
    const spin = (r: { n: number | null }): number | null => {
      const until = performance.now() + 0.1;
      while (performance.now() < until);
      return r.n;
    };
    await arrayLiteralsInTurns(rows, [{ kind: 'number', pick: spin }] as const);
    pending = false;
    expect(immediates).toBeGreaterThan(10);
  });
});

describe('a state flush larger than one chunk', () => {
  it(`writes every state and bucket, in statements of at most ${FLUSH_CHUNK_ROWS} rows`, async () => {
    const n = FLUSH_CHUNK_ROWS * 2 + 7;
    const ids = Array.from({ length: n }, (_, i) => `t${String(i).padStart(6, '0')}`);
    const states = ids.map((id, i) => stateRecord(endpointId, id, T0 + i, { counters: counters(i), resume: { i } }));
    const buckets = ids.map((id, i) => bucket(endpointId, id, T0, counters(i + 1)));
    const result = await store.flushTunnelStates(states, buckets);
    expect(result).toEqual({ statements: 6, rows: 2 * n, states: n, buckets: n });
    const [count] = await testDb.sql<{ tunnels: number; buckets: number; sum: number; last: unknown }[]>`
      SELECT (SELECT count(*)::int FROM tunnels) AS tunnels,
             (SELECT count(*)::int FROM traffic_hourly_tunnel) AS buckets,
             (SELECT sum(tcprx)::float8 FROM traffic_hourly_tunnel) AS sum,
             (SELECT resume FROM tunnels WHERE instance_id = ${ids.at(-1)!}) AS last`;
    expect(count).toEqual({ tunnels: n, buckets: n, sum: (n * (n + 1)) / 2, last: { i: n - 1 } });
  });
});
