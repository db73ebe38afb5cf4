/**
 * `parseGoTime` (src/protocol/events.ts) parses a second once and adds the fraction's milliseconds by hand; it must
 * give exactly what its former definition gave — a regular expression for the shape, then `Date.parse` — for every
 * string, valid or not, in any order (the kept second must never leak into another string's value).
 */
import { describe, expect, it } from 'vitest';
import { parseGoTime } from '../../src/protocol/events.js';
import { captureDataLines } from '../support/captures.js';
import { intBetween, mulberry32 } from '../support/prng.js';

/** The former definition, the oracle. */
function formerParseGoTime(value: string): number {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/.test(value)) return NaN;
  return Date.parse(value);
}

const pad = (n: number, width: number): string => String(n).padStart(width, '0');

describe('parseGoTime', () => {
  // First in this file, so that it is the module's first call: nothing is kept yet, and nothing may be skipped.
  it('rejects a malformed second as the very first value it parses', () => {
    expect(parseGoTime('2026-11-26 09:15:34.1Z')).toBeNaN(); // Date.parse would take it (a space for the T)
    expect(parseGoTime('2026-11-26T09:15:34.1Z')).toBe(formerParseGoTime('2026-11-26T09:15:34.1Z'));
  });

  it('equals the former regex + Date.parse on 300,000 seeded strings: near-valid fields, every fraction length, zones, mutations', () => {
    const random = mulberry32(20261126);
    const int = (min: number, max: number): number => intBetween(random, min, max);
    const pick = <T>(items: readonly T[]): T => items[int(0, items.length - 1)]!;
    let valid = 0;
    let checked = 0;
    const differences: string[] = [];
    const check = (value: string): void => {
      checked += 1;
      const expected = formerParseGoTime(value);
      if (Number.isFinite(expected)) valid += 1;
      if (!Object.is(parseGoTime(value), expected)) differences.push(value);
    };
    for (let i = 0; i < 150_000; i++) {
      // Mostly plausible, sometimes out of range (month 13, day 35, 25:61:61 …), which Date.parse decides.
      const second =
        `${pad(random() < 0.9 ? int(1969, 2100) : int(0, 9999), 4)}-${pad(random() < 0.9 ? int(1, 12) : int(0, 19), 2)}` +
        `-${pad(random() < 0.9 ? int(1, 28) : int(0, 39), 2)}T${pad(random() < 0.8 ? int(0, 23) : int(0, 29), 2)}` +
        `:${pad(random() < 0.9 ? int(0, 59) : int(0, 69), 2)}:${pad(random() < 0.9 ? int(0, 59) : int(0, 69), 2)}`;
      const zone =
        random() < 0.6 ? 'Z' : `${pick(['+', '-'])}${pad(random() < 0.9 ? int(0, 14) : int(0, 99), 2)}:${pad(random() < 0.9 ? pick([0, 30, 45]) : int(0, 99), 2)}`;
      const fraction = (digits: number): string => (digits === 0 ? '' : '.' + Array.from({ length: digits }, () => int(0, 9)).join(''));
      let value = second + (random() < 0.05 ? '.' : fraction(int(0, 11))) + zone;
      if (random() < 0.05) {
        const at = int(0, value.length - 1);
        value = value.slice(0, at) + pick(['', 'x', '0', ' ', '\n', 'z', '\u0661', 'T', '.', ':', '+']) + value.slice(at + 1);
      }
      if (random() < 0.01) value += pick(['\n', ' ', 'Z', '0']);
      check(value);
      // Neighbours in the same second, as a master sends them: the kept second is reused.
      if (random() < 0.3) for (let j = 0; j < 4; j++) check(second + fraction(int(1, 9)) + zone);
    }
    expect(differences).toEqual([]);
    expect(checked).toBeGreaterThan(300_000);
    expect(valid).toBeGreaterThan(checked / 2); // the comparison is mostly about values, not NaN against NaN
  });

  it('equals the former definition on the edges: 24:00, leap seconds, leap days, the zone limits, bad shapes', () => {
    const edges = [
      '', 'Z', '2026-11-26T24:00:00Z', '2026-11-26T24:00:00.000Z', '2026-11-26T24:00:00.5Z', '2026-11-26T24:00:00.000000000Z',
      '2026-11-26T23:59:60Z', '2026-11-26T23:59:60.5Z', '2026-02-29T00:00:00.1Z', '2024-02-29T00:00:00.1Z', '2026-02-31T12:00:00.999Z',
      '2026-11-26T09:15:34.054947825Z', '2026-11-26T09:15:34.054947825+24:00', '2026-11-26T09:15:34.054947825-23:59',
      '2026-11-26T09:15:34Z\n', '2026-11-26T09:15:34.Z', '2026-11-26T09:15:34.0549478251Z', '+002026-11-26T09:15:34Z',
      '9999-12-31T23:59:59.999+00:00', '9999-12-31T23:59:59.999-23:59', '0000-01-01T00:00:00.001+23:59', '0000-01-01T00:00:00Z',
      '2026-11-26T09:15:34.054947825z', '2026-11-26t09:15:34Z', '2026-11-26 09:15:34Z', '2026-11-26T09:15:34+0800', '2026-11-26T09:15:34.5',
    ];
    // Each twice, and after a neighbour of the same second with another zone or fraction.
    for (const value of [...edges, ...edges.reverse()]) {
      expect(parseGoTime(value), value).toBe(formerParseGoTime(value));
      expect(parseGoTime(value.replace('Z', '+00:00')), value).toBe(formerParseGoTime(value.replace('Z', '+00:00')));
    }
  });

  it('equals the former definition on every time of the s1 capture', () => {
    const times = captureDataLines('nodepass-s1-main-debug.sse').map((data) => (JSON.parse(data) as { time: string }).time);
    expect(times.length).toBeGreaterThan(600);
    for (const time of times) expect(parseGoTime(time)).toBe(formerParseGoTime(time));
  });
});
