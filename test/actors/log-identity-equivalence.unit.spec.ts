/**
 * The log de-duplication keeps its sightings in `at` order, in chunks of flat arrays (actors/log-identity.ts). These
 * tests prove that it numbers every line exactly as the representation it replaced (one object keyed by
 * `${time}|${hash}`, pruned by `Date.parse` of each key, kept verbatim in legacy-log-identity.ts): call by call, on
 * seeded sequences with frequent repeats, connections switching back and forth, `at` going backwards, windows small
 * enough to prune often and an infinite one, long sequences spanning many chunks, and on the real captures' log
 * events. The sequences keep to the one premise of the new representation, `at` = `Date.parse(time)`, which the
 * parser guarantees (asserted on the captures).
 */
import { describe, expect, it } from 'vitest';
import { lineHash, newLogDedupe, sightLogLine } from '../../actors/log-identity.js';
import type { InstanceEvent } from '../../actors/model.js';
import { parseNodePassPayload } from '../../src/protocol/events.js';
import { captureDataLines } from '../support/captures.js';
import { goTime, T0 } from '../support/instances.js';
import { intBetween, mulberry32 } from '../support/prng.js';
import * as legacy from './legacy-log-identity.js';

interface Sighting {
  time: string;
  hash: string;
  at: number;
  connection: number;
}

/** Both implementations side by side on one tunnel; every call must return the same ordinal. */
function sideBySide(windowMs: number) {
  const current = newLogDedupe();
  const reference = legacy.newLogDedupe();
  const ordinals: number[] = [];
  return {
    ordinals,
    sight(key: Sighting, step: string) {
      const expected = legacy.sightLogLine(reference, { ...key }, windowMs);
      const actual = sightLogLine(current, { ...key }, windowMs);
      if (actual !== expected) expect.fail(`${step}: ordinal ${actual}, legacy ${expected} for ${JSON.stringify(key)}`);
      ordinals.push(actual);
    },
    remembered: () => Object.keys(reference.seen).length,
    current,
  };
}

const HASHES = [...['a', 'b', 'c', 'd'].map((line) => lineHash(`line ${line}`))];
// Hashes that are not 16 lowercase hex digits never come from `lineHash`, but any string must stay exact; the
// upper-case one is another string than its lower-case twin, so another line.
const ODD_HASHES = ['', 'odd', HASHES[0]!.toUpperCase(), `${HASHES[1]!.slice(0, 15)}g`];
const NANOS = ['123456', '123457', '900000'];
const WINDOWS = [1, 10, 25, 60, 200, Infinity];

/** A random sequence of sightings over a small alphabet: `at` on a 5 ms grid, mostly forward, sometimes back. */
function randomSequence(seed: number): { windowMs: number; keys: Sighting[] } {
  const random = mulberry32(seed);
  const windowMs = WINDOWS[seed % WINDOWS.length]!;
  const keys: Sighting[] = [];
  let at = T0;
  let connection = 1;
  const length = intBetween(random, 1, 300);
  for (let i = 0; i < length; i++) {
    const r = random();
    if (r < 0.08) at -= intBetween(random, 1, 20) * 5; // a replay or a reconnect
    else if (r < 0.6) at += intBetween(random, 1, 3) * 5;
    if (random() < 0.15) connection = intBetween(random, 1, 4); // back and forth between connections
    const alphabet = random() < 0.03 ? ODD_HASHES : HASHES;
    const hash = alphabet[intBetween(random, 0, alphabet.length - 1)]!;
    if (random() < 0.01) {
      // Not Go times: `Date.parse` reads none of the first (NaN: never pruned by either), the year 2000 in the other.
      const time = ['not a time', 'not a time 0'][intBetween(random, 0, 1)]!;
      keys.push({ time, hash, at: Date.parse(time), connection });
      continue;
    }
    // Times seen before are picked again often: repeats of a (time, line) on one connection and across them.
    const lineAt = random() < 0.3 ? at - intBetween(random, 0, 4) * 5 : at;
    keys.push({ time: goTime(lineAt, NANOS[intBetween(random, 0, NANOS.length - 1)]!), hash, at: lineAt, connection });
  }
  return { windowMs, keys };
}

describe('sightLogLine against the legacy representation', () => {
  it('numbers every line of 3,000 seeded sequences exactly as before', () => {
    let calls = 0;
    let duplicates = 0;
    let repeatsOnOneConnection = 0;
    let forgotten = 0;
    for (let seed = 1; seed <= 3000; seed++) {
      const { windowMs, keys } = randomSequence(seed);
      const both = sideBySide(windowMs);
      keys.forEach((key, i) => {
        const before = both.remembered();
        both.sight(key, `seed ${seed}, call ${i}`);
        if (both.remembered() < before) forgotten++;
      });
      calls += keys.length;
      duplicates += both.ordinals.filter((o) => o === 0).length;
      repeatsOnOneConnection += both.ordinals.filter((o) => o > 1).length;
    }
    // The sequences exercise what they are meant to: duplicates, copies on one connection, pruning.
    expect(calls).toBeGreaterThan(300_000);
    expect(duplicates).toBeGreaterThan(calls / 40);
    expect(repeatsOnOneConnection).toBeGreaterThan(calls / 50);
    expect(forgotten).toBeGreaterThan(10_000);
  });

  it('numbers every line of long seeded sequences exactly as before (thousands of sightings, many at one ms)', () => {
    // Enough sightings for several chunks, runs of one `at` longer than a chunk, older lines inserted among them.
    const nanos = Array.from({ length: 400 }, (_, i) => String(i).padStart(6, '0'));
    let calls = 0;
    let duplicates = 0;
    let mostChunks = 0;
    let oneAtAcrossChunks = 0;
    for (let seed = 1; seed <= 24; seed++) {
      const random = mulberry32(1_000_000 + seed);
      const windowMs = [5, 40, Infinity][seed % 3]!;
      const both = sideBySide(windowMs);
      let at = T0;
      let connection = 1;
      for (let i = 0; i < 6000; i++) {
        const r = random();
        if (r < 0.002) at -= intBetween(random, 1, 30);
        else if (r < 0.01) at += 1;
        if (random() < 0.005) connection = intBetween(random, 1, 3);
        const lineAt = random() < 0.2 ? at - intBetween(random, 0, 3) : at;
        const time = goTime(lineAt, nanos[intBetween(random, 0, nanos.length - 1)]!);
        const hash = HASHES[intBetween(random, 0, 1)]!;
        both.sight({ time, hash, at: lineAt, connection }, `long seed ${seed}, call ${i}`);
        const chunks = both.current.chunks;
        mostChunks = Math.max(mostChunks, chunks.length);
        // Six numbers per sighting, `at` first: a chunk that begins with the `at` its predecessor ends with.
        if (chunks.some((chunk, c) => c > 0 && chunk.cells[0] === chunks[c - 1]!.cells.at(-6))) oneAtAcrossChunks++;
      }
      calls += both.ordinals.length;
      duplicates += both.ordinals.filter((o) => o === 0).length;
    }
    expect(calls).toBe(24 * 6000);
    expect(duplicates).toBeGreaterThan(calls / 40);
    expect(mostChunks).toBeGreaterThan(10);
    expect(oneAtAcrossChunks).toBeGreaterThan(1000);
  });

  it('numbers the captures’ log lines exactly as before, replayed twice over, per instance', () => {
    const captures = ['nodepass-s1-main-debug.sse', 'nodepass-s2-info-level.sse', 'nodepass-s3-report-interval-1s.sse'];
    const events: InstanceEvent[] = [];
    for (const name of captures) {
      for (const data of captureDataLines(name)) {
        const parsed = parseNodePassPayload(data);
        if (parsed.kind === 'instance' && parsed.event.type === 'log') events.push(parsed.event);
      }
    }
    expect(events.length).toBeGreaterThanOrEqual(597);
    // The premise the pruning rests on: the parser's `at` is `Date.parse` of the `time` it comes with.
    for (const event of events) expect(event.at).toBe(Date.parse(event.time));

    for (const windowMs of [1_000, 10 * 60_000, Infinity]) {
      const tunnels = new Map<string, ReturnType<typeof sideBySide>>();
      const tunnel = (id: string) => tunnels.get(id) ?? tunnels.set(id, sideBySide(windowMs)).get(id)!;
      // The captures as recorded (connection 1), then all of them again as a second connection would bring them,
      // then once more on the first connection.
      for (const [pass, connection] of [1, 2, 1].entries()) {
        events.forEach((event, i) => {
          const hash = lineHash(event.logs);
          tunnel(event.instance.id).sight(
            { time: event.time, hash, at: event.at, connection },
            `window ${windowMs}, pass ${pass}, event ${i}`,
          );
        });
      }
      const ordinals = [...tunnels.values()].flatMap((t) => t.ordinals);
      expect(ordinals.filter((o) => o > 0).length).toBeGreaterThanOrEqual(events.length);
      if (windowMs === Infinity) expect(ordinals.filter((o) => o > 0).length).toBe(ordinals.length / 3);
    }
  });
});
