/**
 * Log line identity (actors/log-identity.ts): copies on one connection are separate lines, repeats across
 * connections are our own duplicates, memory is bounded by a time window, and the hash is stable.
 */
import { describe, expect, it } from 'vitest';
import { lineHash, newLogDedupe, sightLogLine, type LogDedupe } from '../../actors/log-identity.js';
import { goTime } from '../support/instances.js';

const LINE = '2026-11-26 09:15:35.088  \u001b[33mWARN\u001b[0m  TLS code-0: unencrypted';
const T = Date.parse('2026-11-26T09:15:35.088Z');
const TIME = goTime(T);
const WINDOW = 10 * 60_000;

/** The times of the sightings a dedupe remembers, in `at` order. */
const remembered = (d: LogDedupe): string[] => d.chunks.flatMap((chunk) => chunk.times);
const cellCount = (d: LogDedupe): number => d.chunks.reduce((sum, chunk) => sum + chunk.cells.length, 0);

function sight(d: LogDedupe, connection: number, at = T, time = TIME, line = LINE, windowMs = WINDOW): number {
  return sightLogLine(d, { time, hash: lineHash(line), at, connection }, windowMs);
}

describe('sightLogLine', () => {
  it('counts the same (time, line) twice on one connection as two lines, numbered 1 and 2', () => {
    const d = newLogDedupe();
    expect([sight(d, 1), sight(d, 1)]).toEqual([1, 2]);
  });

  it('takes the same (time, line) on another connection as a duplicate', () => {
    const d = newLogDedupe();
    expect(sight(d, 1)).toBe(1);
    expect(sight(d, 2)).toBe(0);
  });

  it('three copies, then two copies on a later connection: the two are duplicates, a fourth is new', () => {
    const d = newLogDedupe();
    expect([sight(d, 1), sight(d, 1), sight(d, 1)]).toEqual([1, 2, 3]);
    expect([sight(d, 2), sight(d, 2)]).toEqual([0, 0]);
    expect(sight(d, 2)).toBe(0); // the third copy on connection 2 is still covered by connection 1's three
    expect(sight(d, 2)).toBe(4); // a fourth one never was seen anywhere
  });

  it('two copies, then three copies on a later connection: only the third is new', () => {
    const d = newLogDedupe();
    expect([sight(d, 1), sight(d, 1)]).toEqual([1, 2]);
    expect([sight(d, 3), sight(d, 3), sight(d, 3)]).toEqual([0, 0, 3]);
  });

  it('tells apart lines that differ only in time or only in text', () => {
    const d = newLogDedupe();
    expect(sight(d, 1)).toBe(1);
    expect(sight(d, 1, T, goTime(T, '123457'))).toBe(1); // one nanosecond later: another line
    expect(sight(d, 1, T, TIME, LINE + ' ')).toBe(1);
  });

  it('forgets sightings older than the window, so memory stays bounded', () => {
    const d = newLogDedupe();
    for (let i = 0; i < 100; i++) sight(d, 1, T + i, goTime(T + i), `line ${i}`);
    expect(remembered(d)).toHaveLength(100);
    const cellsOf100 = cellCount(d);
    // Much later, on the same connection: the old sightings are pruned, and their room given back.
    const later = T + 2 * WINDOW;
    sight(d, 1, later, goTime(later), 'fresh');
    expect(remembered(d)).toEqual([goTime(later)]);
    expect(cellCount(d) * 100).toBe(cellsOf100);
    expect(d.newestAt).toBe(later);
    // A forgotten line is not recognised any more (this is the price of the window).
    expect(sight(d, 2, T, TIME, 'line 0')).toBe(1);
  });

  it('forgets exactly the sightings the window has passed', () => {
    const d = newLogDedupe();
    for (let i = 0; i < 1000; i++) sight(d, 1, T + i * 500, goTime(T + i * 500), `line ${i}`);
    expect(d.chunks.length).toBeGreaterThan(1);
    // The window passes the first 40 (of the first chunk), then 400 more (whole chunks and a part of one).
    let now = T + WINDOW + 19_750;
    sight(d, 1, now, goTime(now), 'now');
    expect(remembered(d)).toHaveLength(961);
    expect(remembered(d)[0]).toBe(goTime(T + 20_000));
    now += 200_000;
    sight(d, 1, now, goTime(now), 'later');
    expect(remembered(d)).toHaveLength(562);
    expect(remembered(d)[0]).toBe(goTime(T + 220_000));
    expect(sight(d, 2, T + 219_500, goTime(T + 219_500), 'line 439')).toBe(1);
    expect(sight(d, 2, T + 220_000, goTime(T + 220_000), 'line 440')).toBe(0);
  });

  it('keeps thousands of lines in time order when older ones come after newer ones, and finds every one', () => {
    const d = newLogDedupe();
    const lineAt = (i: number) => T + i * 10;
    const odd = Array.from({ length: 1500 }, (_, i) => 2 * i + 1);
    const even = Array.from({ length: 1500 }, (_, i) => 2 * i);
    // The odd ones in order, then the even ones (each older than most already kept) newest first.
    for (const i of [...odd, ...even.reverse()]) {
      expect(sight(d, 1, lineAt(i), goTime(lineAt(i)), `line ${i}`, Infinity)).toBe(1);
    }
    const times = remembered(d);
    expect(times).toEqual(Array.from({ length: 3000 }, (_, i) => goTime(lineAt(i))));
    // Inserting split chunks rather than growing one.
    expect(Math.max(...d.chunks.map((chunk) => chunk.times.length))).toBeLessThanOrEqual(512);
    for (let i = 0; i < 3000; i++) expect(sight(d, 2, lineAt(i), goTime(lineAt(i)), `line ${i}`, Infinity)).toBe(0);
  });

  it('forgets by time also when lines arrive out of time order (a reconnect, a replay)', () => {
    const d = newLogDedupe();
    const at = (offset: number) => T + offset;
    sight(d, 1, at(1000), goTime(at(1000)), 'late');
    sight(d, 1, at(0), goTime(at(0)), 'early'); // older than one already seen
    sight(d, 1, at(2000), goTime(at(2000)), 'latest');
    expect(remembered(d)).toEqual([goTime(at(0)), goTime(at(1000)), goTime(at(2000))]);
    expect(sight(d, 2, at(0), goTime(at(0)), 'early')).toBe(0); // found among the older ones
    // The window passes `early` but not `late`: only `early` is forgotten, although it was seen after `late`.
    const now = at(WINDOW + 500);
    sight(d, 1, now, goTime(now), 'now');
    expect(remembered(d)).toEqual([goTime(at(1000)), goTime(at(2000)), goTime(now)]);
    expect(sight(d, 3, at(1000), goTime(at(1000)), 'late')).toBe(0);
    expect(sight(d, 3, at(0), goTime(at(0)), 'early')).toBe(1);
  });

  it('tells apart two lines at the same time, and a hash that is not lineHash output from one that is', () => {
    const d = newLogDedupe();
    const hash = lineHash(LINE);
    const key = (h: string, connection: number) => ({ time: TIME, hash: h, at: T, connection });
    expect(sightLogLine(d, key(hash, 1), WINDOW)).toBe(1);
    expect(sightLogLine(d, key(lineHash('other'), 1), WINDOW)).toBe(1);
    expect(sightLogLine(d, key(hash.toUpperCase(), 1), WINDOW)).toBe(1);
    expect(sightLogLine(d, key('not hex', 1), WINDOW)).toBe(1);
    expect(sightLogLine(d, key(hash, 2), WINDOW)).toBe(0);
    expect(sightLogLine(d, key(hash.toUpperCase(), 2), WINDOW)).toBe(0);
    expect(sightLogLine(d, key('not hex', 1), WINDOW)).toBe(2);
    expect(remembered(d)).toEqual([TIME, TIME, TIME, TIME]);
  });

  it('keeps sightings inside the window', () => {
    const d = newLogDedupe();
    sight(d, 1);
    const within = T + WINDOW - 1;
    sight(d, 1, within, goTime(within), 'other');
    expect(sight(d, 2)).toBe(0);
  });

  it('never forgets with an infinite window (replay of a capture twice counts nothing twice)', () => {
    const d = newLogDedupe();
    expect(sight(d, 1, T, TIME, LINE, Infinity)).toBe(1);
    const far = T + 1000 * WINDOW;
    sight(d, 1, far, goTime(far), 'x', Infinity);
    expect(sight(d, 2, T, TIME, LINE, Infinity)).toBe(0);
  });
});

describe('lineHash', () => {
  it('is 16 lowercase hex chars, the first 8 being the standard 32-bit FNV-1a', () => {
    // Published FNV-1a 32-bit test vectors.
    expect(lineHash('').slice(0, 8)).toBe('811c9dc5');
    expect(lineHash('a').slice(0, 8)).toBe('e40c292c');
    expect(lineHash('foobar').slice(0, 8)).toBe('bf9cf968');
    for (const s of ['', 'a', LINE, 'ü€😀']) expect(lineHash(s)).toMatch(/^[0-9a-f]{16}$/);
  });

  it('is stable: the same text gives the same hash, pinned so a change of algorithm is noticed', () => {
    expect(lineHash(LINE)).toBe(lineHash(String(LINE)));
    expect(lineHash(LINE)).toMatchInlineSnapshot(`"7236de5272091ef2"`);
  });

  it('differs for lines that differ in one character, including non-ASCII ones', () => {
    const hashes = new Set(['a', 'b', 'ab', 'ba', LINE, LINE.replace('WARN', 'WARM'), 'ü', 'ű', '😀', '😁'].map(lineHash));
    expect(hashes.size).toBe(10);
  });
});
