/**
 * The log insert's daily cap against a model of its documented rules, on seeded random batches that mix new lines,
 * replays of stored lines and of cut lines, several instances and two UTC days, with instances far from the cap
 * (where the statement skips its duplicate probe) and at it (where it probes).
 */
import { beforeEach, describe, expect, it } from 'vitest';
import type { LogRecord } from '../../actors/records.js';
import { Store } from '../../src/db/store.js';
import { useTestDatabase } from '../support/database.js';
import { intBetween, mulberry32 } from '../support/prng.js';
import { DAY, insertEndpoint, T0 } from './records.js';

const testDb = useTestDatabase();
let endpointId: number;

beforeEach(async () => {
  await testDb.reset();
  endpointId = await insertEndpoint(testDb.sql, 'alpha');
});

const identity = (r: LogRecord): string => `${r.endpointId}/${r.instanceId}|${r.time}|${r.lineHash}|${r.ordinal}`;
const dayOf = (r: LogRecord): string => `${r.endpointId}/${r.instanceId}@${Math.floor(r.at / DAY)}`;

/** The rules of `Store.insertLogs` (docs/database.md): stored lines skipped, the rest ranked by time after `kept`. */
class CapModel {
  readonly stored = new Set<string>();
  readonly kept = new Map<string, number>();
  readonly cut = new Map<string, number>();
  /** Replayed stored lines met where the day stayed within the cap with the batch (no probe), and where it did not. */
  replaysWithinCap = 0;
  replaysAtCap = 0;
  constructor(private readonly cap: number) {}

  insert(records: readonly LogRecord[]): { inserted: number; cut: number; duplicates: number } {
    const unique = new Map<string, LogRecord>();
    for (const r of records) if (!unique.has(identity(r))) unique.set(identity(r), r);
    const linesPerDay = new Map<string, number>();
    for (const r of unique.values()) linesPerDay.set(dayOf(r), (linesPerDay.get(dayOf(r)) ?? 0) + 1);
    for (const r of unique.values()) {
      if (!this.stored.has(identity(r))) continue;
      if ((this.kept.get(dayOf(r)) ?? 0) + linesPerDay.get(dayOf(r))! <= this.cap) this.replaysWithinCap += 1;
      else this.replaysAtCap += 1;
    }
    const fresh = [...unique.values()].filter((r) => !this.stored.has(identity(r))).sort((a, b) => a.at - b.at);
    let inserted = 0;
    let cut = 0;
    for (const r of fresh) {
      const day = dayOf(r);
      if ((this.kept.get(day) ?? 0) < this.cap) {
        this.kept.set(day, (this.kept.get(day) ?? 0) + 1);
        this.stored.add(identity(r));
        inserted += 1;
      } else {
        this.cut.set(day, (this.cut.get(day) ?? 0) + 1);
        cut += 1;
      }
    }
    return { inserted, cut, duplicates: records.length - inserted - cut };
  }
}

describe('insertLogs daily cap', () => {
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    it(`matches the model on random batches with replays (seed ${seed})`, async () => {
      const random = mulberry32(seed);
      const cap = 12;
      const store = new Store(testDb.db, { logDailyCap: cap });
      const model = new CapModel(cap);
      const instances = ['a1', 'b2', 'c3', 'd4', 'e5'];
      const sent: LogRecord[] = [];
      let clock = T0 + DAY - 20 * 60_000; // batches cross midnight UTC: two days per instance
      for (let round = 0; round < 30; round++) {
        const batch: LogRecord[] = [];
        const fresh = intBetween(random, 0, 8);
        for (let i = 0; i < fresh; i++) {
          clock += intBetween(random, 1, 90_000);
          // Some instances log a lot (they reach the cap), others little (they stay far from it).
          const instanceId = instances[Math.min(Math.floor(-Math.log2(1 - random())), instances.length - 1)]!; // a1 ½, b2 ¼, …
          const line = `line ${sent.length} of ${instanceId}`;
          batch.push({
            endpointId,
            instanceId,
            at: clock,
            time: new Date(clock).toISOString().replace('Z', '123456Z'),
            lineHash: `h${sent.length}`,
            ordinal: 1,
            level: 'info',
            message: line,
          });
          sent.push(batch[batch.length - 1]!);
        }
        // Replays of earlier lines (stored ones, and ones the cap cut) and repeats within the batch.
        const replays = intBetween(random, 0, 6);
        for (let i = 0; i < replays && sent.length > 0; i++) batch.push(sent[intBetween(random, 0, sent.length - 1)]!);
        if (batch.length > 0 && random() < 0.3) batch.push(batch[0]!);
        const shuffled = batch.map((r) => ({ r, k: random() })).sort((a, b) => a.k - b.k).map((x) => x.r);

        const expected = model.insert(shuffled);
        const result = await store.insertLogs(shuffled);
        expect({ round, ...result }).toEqual({
          round,
          statements: shuffled.length === 0 ? 0 : 1,
          rows: expected.inserted,
          ...expected,
        });
      }

      const rows = await testDb.sql<{ instance_id: string; event_time: string; line_hash: string; ordinal: number }[]>`
        SELECT instance_id, event_time, line_hash, ordinal FROM tunnel_logs`;
      expect(new Set(rows.map((r) => `${endpointId}/${r.instance_id}|${r.event_time}|${r.line_hash}|${r.ordinal}`))).toEqual(
        model.stored,
      );
      const counts = await testDb.sql<{ instance_id: string; day: number; kept: number; cut: number }[]>`
        SELECT instance_id, (extract(epoch FROM day) / 86400)::int AS day, kept, cut FROM log_daily_counts`;
      const keys = new Set([...model.kept.keys(), ...model.cut.keys()]);
      expect(counts).toHaveLength(keys.size);
      for (const row of counts) {
        const key = `${endpointId}/${row.instance_id}@${row.day}`;
        expect({ key, kept: row.kept, cut: row.cut }).toEqual({ key, kept: model.kept.get(key) ?? 0, cut: model.cut.get(key) ?? 0 });
      }
      // The random walk must have exercised both paths with replays: within the cap (no probe) and at it.
      expect([...model.cut.values()].some((n) => n > 0)).toBe(true);
      expect(model.replaysWithinCap).toBeGreaterThan(0);
      expect(model.replaysAtCap).toBeGreaterThan(0);
    });
  }

  it('does not let stored lines take places under the cap when a replayed batch reaches it', async () => {
    const store = new Store(testDb.db, { logDailyCap: 5 });
    const line = (i: number): LogRecord => ({
      endpointId,
      instanceId: 'a1',
      at: T0 + i,
      time: `t${String(i).padStart(3, '0')}`,
      lineHash: `h${i}`,
      ordinal: 1,
      level: 'info',
      message: `m${i}`,
    });
    expect(await store.insertLogs([line(1), line(2), line(3)])).toMatchObject({ inserted: 3, cut: 0 });
    // kept 3 + 5 lines in the batch passes the cap of 5: the three stored ones are duplicates, not ranked, so
    // lines 4 and 5 are kept and only line 6 is cut (without the probe 4, 5 and 6 would all rank over the cap).
    expect(await store.insertLogs([line(1), line(2), line(3), line(4), line(5), line(6)])).toEqual({
      statements: 1,
      rows: 2,
      inserted: 2,
      cut: 1,
      duplicates: 3,
    });
    // Far from the cap the probe is skipped: stored lines are left to ON CONFLICT, with the same counts.
    const roomy = new Store(testDb.db, { logDailyCap: 100 });
    expect(await roomy.insertLogs([line(1), line(7), line(2)])).toEqual({ statements: 1, rows: 1, inserted: 1, cut: 0, duplicates: 2 });
    const [row] = await testDb.sql`SELECT kept, cut FROM log_daily_counts`;
    expect(row).toEqual({ kept: 6, cut: 1 });
  });
});
