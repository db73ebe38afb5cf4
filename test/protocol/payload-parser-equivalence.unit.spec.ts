/**
 * `NodePassPayloadParser` (src/protocol/payload-parser.ts) returns exactly what `parseNodePassPayload` returns, for
 * every payload, in every sequence: the real captures, seeded streams in the master's own form with changing
 * strings and values, and those streams mutated (other spellings, key orders, whitespace, numbers that are not
 * plain integers, values out of range, broken text). Each comparison is strict (`-0` ≠ `0`, key sets exact), and
 * each suite also checks that the fast reading actually ran, so the proof is not vacuous.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import type { NodePassEventType, ParsedEvent } from '../../actors/model.js';
import { parseNodePassPayload } from '../../src/protocol/events.js';
import { DEFAULT_MAX_KNOWN, NodePassPayloadParser } from '../../src/protocol/payload-parser.js';
import { encodeEnvelope, encodeInstance, type WireInstance } from '../../src/sim/go-wire.js';
import { captureDataLines } from '../support/captures.js';
import { instance } from '../support/instances.js';
import { mulberry32 } from '../support/prng.js';

const CAPTURES = [
  'nodepass-s1-main-debug.sse',
  'nodepass-s2-info-level.sse',
  'nodepass-s3-report-interval-1s.sse',
  'nodepass-s1-second-subscriber.sse',
  'nodepass-s1-after-key-rotation.sse',
  'nodepass-s1-after-master-restart.sse',
];

/** Parses `data` both ways and fails on the first difference; answers the parser's result. */
function same(parser: NodePassPayloadParser, data: string, eventName?: string): ParsedEvent {
  const expected = parseNodePassPayload(data, eventName);
  const actual = parser.parse(data, eventName);
  if (!isDeepStrictEqual(actual, expected)) expect({ data, actual }).toStrictEqual({ data, actual: expected });
  return actual;
}

function isDeepStrictEqual(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b) || Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  for (let i = 0; i < ka.length; i++) {
    // Key order too: the fast reading builds its objects in the wire's order, as JSON.parse does.
    if (ka[i] !== kb[i]) return false;
    if (!isDeepStrictEqual((a as Record<string, unknown>)[ka[i]!], (b as Record<string, unknown>)[kb[i]!])) return false;
  }
  return true;
}

describe('the captures', () => {
  it('every payload of every capture, in order, parses exactly as parseNodePassPayload', () => {
    for (const name of CAPTURES) {
      const parser = new NodePassPayloadParser();
      const lines = captureDataLines(name);
      for (const data of lines) same(parser, data);
      expect(parser.fastReads + parser.fullReads).toBe(lines.length);
    }
    // s1: 628 payloads, of which the first sighting of each of its two tunnels, the master record, the shutdown
    // and the delete's successor need the full parser; the rest are read in place.
    const s1 = new NodePassPayloadParser();
    for (const data of captureDataLines(CAPTURES[0]!)) s1.parse(data);
    expect(s1.fastReads).toBeGreaterThan(600);
  });
});

// --- seeded streams in the master's form ---------------------------------------------------------------------

const ODD_STRINGS = [
  '',
  'np-server',
  'a&b<c>d',
  'quote " and backslash \\',
  'tab\tnewline\ncr\r',
  'bell \u0007 esc \u001b del \u007f',
  'ünïcödé 中文 😀',
  'line sep \u2028 para sep \u2029',
  'server://127.0.0.1:19100/127.0.0.1:19200?log=debug&max=16&mode=1',
  'client://host:1/t:2?log=info&min=64&rate=0&read=0s&slot=65536',
  '/slash/',
];
const STATUSES = ['running', 'stopped', 'error'];
const TYPES: NodePassEventType[] = ['initial', 'create', 'update', 'update', 'update', 'update', 'log', 'delete'];

function pick<T>(rnd: () => number, items: readonly T[]): T {
  return items[Math.floor(rnd() * items.length)]!;
}

function randomInt(rnd: () => number): number {
  const r = rnd();
  if (r < 0.1) return 0;
  if (r < 0.15) return Number.MAX_SAFE_INTEGER - Math.floor(rnd() * 3);
  if (r < 0.2) return 2147483647;
  if (r < 0.25) return -2147483648;
  return Math.floor(rnd() * 10 ** Math.floor(rnd() * 13));
}

function newTunnel(rnd: () => number, index: number): WireInstance {
  const tags: Record<string, string> = {};
  if (rnd() < 0.3) tags['env'] = pick(rnd, ODD_STRINGS);
  if (rnd() < 0.2) tags['zone'] = 'eu';
  if (rnd() < 0.1) tags['7'] = 'a number-like key';
  // The capture-shaped instance, its strings and meta drawn from the odd ones; counters and gauges from zero.
  return instance({
    id: `t${index.toString(16).padStart(7, '0')}`,
    alias: pick(rnd, ODD_STRINGS),
    type: rnd() < 0.5 ? 'server' : 'client',
    url: pick(rnd, ODD_STRINGS),
    config: pick(rnd, ODD_STRINGS),
    restart: rnd() < 0.5,
    meta: { peer: { sid: rnd() < 0.8 ? '' : pick(rnd, ODD_STRINGS), type: '', alias: rnd() < 0.9 ? '' : 'peer' }, tags },
    pool: 0,
  });
}

/** One event of a tunnel: mostly moving values, sometimes a changed string, as a master writes it. */
function nextEvent(rnd: () => number, t: WireInstance, clock: { ms: number }): string {
  const r = rnd();
  if (r < 0.03) t.alias = pick(rnd, ODD_STRINGS);
  else if (r < 0.05) t.url = pick(rnd, ODD_STRINGS);
  else if (r < 0.07) t.config = pick(rnd, ODD_STRINGS);
  else if (r < 0.08) t.meta = { ...t.meta, peer: { ...t.meta.peer, sid: pick(rnd, ODD_STRINGS) } };
  else if (r < 0.09) t.meta = { ...t.meta, tags: rnd() < 0.5 ? {} : { k: pick(rnd, ODD_STRINGS) } };
  if (rnd() < 0.1) t.status = pick(rnd, STATUSES);
  if (rnd() < 0.1) t.restart = !t.restart;
  for (const key of ['mode', 'ping', 'pool', 'tcps', 'udps'] as const) if (rnd() < 0.3) t[key] = Math.floor(rnd() * 1000) - (rnd() < 0.05 ? 500 : 0);
  for (const key of ['tcprx', 'tcptx', 'udprx', 'udptx'] as const) if (rnd() < 0.6) t[key] = randomInt(rnd);
  clock.ms += Math.floor(rnd() * 1500);
  const type = pick(rnd, TYPES);
  const logs = type === 'log' ? pick(rnd, ['', 'plain line', '\u001b[34mDEBUG\u001b[0m  x', 'tab\there', 'quote " \\ end', '😀 & <']) : '';
  return encodeEnvelope(type, goTime(clock.ms, rnd), encodeInstance(t), logs);
}

function goTime(ms: number, rnd: () => number): string {
  const iso = new Date(ms).toISOString(); // 2026-11-26T09:15:34.054Z
  const digits = Math.floor(rnd() * 10); // 0..9 fraction digits, as Go trims trailing zeros
  const fraction = `${iso.slice(20, 23)}${String(Math.floor(rnd() * 1e6)).padStart(6, '0')}`.slice(0, digits);
  return `${iso.slice(0, 19)}${digits > 0 ? `.${fraction}` : ''}Z`;
}

/** Ways a payload can differ from the master's form, each applied to a real payload of the stream. */
const MUTATIONS: Array<(data: string, rnd: () => number) => string> = [
  // Whitespace between tokens, or after the end.
  (d, rnd) => insertAt(d, pick(rnd, indexesOf(d, ',:')) + 1, ' '),
  (d) => `${d} `,
  (d) => `${d}\n`,
  // Other key orders and extra or missing keys (through JSON.parse, so the values stay the same).
  (d) => reorder(d, (o) => ({ time: o['time'], type: o['type'], instance: o['instance'], logs: o['logs'] })),
  (d) => reorder(d, (o) => ({ ...o, extra: 1 })),
  (d) => reorder(d, (o) => ({ type: o['type'], time: o['time'], instance: o['instance'] })),
  (d) => reorder(d, (o) => ({ ...o, logs: null })),
  (d) => reorder(d, (o) => ({ ...o, instance: { ...(o['instance'] as object), extra: 'x' } })),
  (d) => reorder(d, (o) => ({ ...o, instance: { ...(o['instance'] as object), meta: { tags: {}, peer: { sid: '', type: '', alias: '' } } } })),
  (d) => reorder(d, (o) => ({ ...o, instance: { ...(o['instance'] as object), meta: { peer: { sid: '', type: '', alias: '', x: '' }, tags: {} } } })),
  (d) => reorder(d, (o) => ({ ...o, instance: { ...(o['instance'] as object), meta: { peer: { sid: '', type: '', alias: '' }, tags: { a: 1 } } } })),
  // Other spellings of the same strings.
  (d) => d.replace(/"alias":"n/, '"alias":"\\u006e').replace(/\\u0026/, '\\u0026'.toUpperCase()),
  (d) => d.replace('//', '\\/\\/'),
  (d) => d.replace(/\\u0026/g, '&'),
  (d) => d.replace('"id":"t', '"id":"\\u0074'),
  (d) => d.replace('"time":"2', '"time":"\\u0032'),
  // Invalid text inside strings.
  (d) => d.replace(/\\u0026/, '\\u00G6'),
  (d) => d.replace(/\\u0026/, '\\x'),
  (d) => d.replace(/"url":"s/, '"url":"\u0001'),
  (d) => d.replace(/"logs":"/, '"logs":"\\q'),
  (d) => d.replace(/"logs":"/, '"logs":"\t'),
  (d) => d.replace(/"logs":"/, '"logs":"\\ud800'),
  // Numbers that are not plain integers, or out of range.
  (d) => d.replace(/"tcprx":(\d+)/, '"tcprx":$1.0'),
  (d) => d.replace(/"tcprx":(\d+)/, '"tcprx":$1e0'),
  (d) => d.replace(/"tcprx":(\d+)/, '"tcprx":$1E+1'),
  (d) => d.replace(/"tcprx":(\d+)/, '"tcprx":0$1'),
  (d) => d.replace(/"tcprx":(\d+)/, '"tcprx":-0'),
  (d) => d.replace(/"tcprx":(\d+)/, '"tcprx":-$1'),
  (d) => d.replace(/"tcprx":(\d+)/, '"tcprx":9007199254740992'),
  (d) => d.replace(/"tcprx":(\d+)/, '"tcprx":9007199254740993'),
  (d) => d.replace(/"tcprx":(\d+)/, '"tcprx":99999999999999999999'),
  (d) => d.replace(/"tcprx":(\d+)/, '"tcprx":00'),
  (d) => d.replace(/"ping":(-?\d+)/, '"ping":-0'),
  (d) => d.replace(/"ping":(-?\d+)/, '"ping":2147483648'),
  (d) => d.replace(/"ping":(-?\d+)/, '"ping":-2147483649'),
  (d) => d.replace(/"ping":(-?\d+)/, '"ping":-'),
  (d) => d.replace(/"ping":(-?\d+)/, '"ping":"1"'),
  (d) => d.replace(/"restart":(true|false)/, '"restart":1'),
  (d) => d.replace(/"status":"[a-z]+"/, '"status":"paused"'),
  (d) => d.replace(/"status":"[a-z]+"/, '"status":"Running"'),
  // Other event types and broken envelopes.
  (d) => d.replace(/"type":"[a-z]+"/, '"type":"shutdown"'),
  (d) => d.replace(/"type":"[a-z]+"/, '"type":"restart"'),
  (d) => d.replace(/"type":"[a-z]+"/, '"type":"u"'),
  (d) => d.replace(/"time":"[^"]+"/, '"time":"yesterday"'),
  (d) => d.replace(/"id":"[^"]+"/, '"id":"********"'),
  (d) => d.replace(/"id":"[^"]+"/, '"id":""'),
  (d) => d.replace(/"id":"[^"]+"/, `"id":"${'x'.repeat(65)}"`),
  (d, rnd) => d.slice(0, Math.floor(rnd() * d.length)),
  (d) => d.slice(0, -1),
  (d) => `${d.slice(0, -1)},}`,
  (d, rnd) => {
    // One character replaced anywhere.
    const at = Math.floor(rnd() * d.length);
    return d.slice(0, at) + pick(rnd, ['"', '\\', ',', '}', '0', 'x', ' ', '\u0000', 'é']) + d.slice(at + 1);
  },
];

function insertAt(d: string, at: number, text: string): string {
  return d.slice(0, at) + text + d.slice(at);
}
function indexesOf(d: string, chars: string): number[] {
  const found: number[] = [];
  for (let i = 0; i < d.length; i++) if (chars.includes(d[i]!)) found.push(i);
  return found;
}
function reorder(d: string, f: (o: Record<string, unknown>) => Record<string, unknown>): string {
  return JSON.stringify(f(JSON.parse(d) as Record<string, unknown>));
}

describe('seeded streams', () => {
  it('a master-form stream with changing strings and values parses exactly as parseNodePassPayload (3,000 streams)', () => {
    let fast = 0;
    let full = 0;
    for (let seed = 1; seed <= 3000; seed++) {
      const rnd = mulberry32(seed);
      const parser = new NodePassPayloadParser();
      const tunnels = Array.from({ length: 1 + Math.floor(rnd() * 4) }, (_, i) => newTunnel(rnd, i));
      const clock = { ms: Date.parse('2026-11-26T09:00:00Z') + Math.floor(rnd() * 1e9) };
      for (let n = 0; n < 40; n++) same(parser, nextEvent(rnd, pick(rnd, tunnels), clock));
      fast += parser.fastReads;
      full += parser.fullReads;
    }
    // Most events are read in place; the rest in full: first sightings, changed strings (9 %), the event after a
    // delete (1 in 8 here, far more than a real stream), tunnels with a number-like tag key (JSON.parse reorders).
    expect(fast).toBeGreaterThan(full);
  });

  it('mutated payloads, between valid ones of the same tunnels, parse exactly as parseNodePassPayload (every mutation, 200 seeds)', () => {
    let fast = 0;
    let rejected = 0;
    for (let seed = 1; seed <= 200; seed++) {
      const rnd = mulberry32(10_000 + seed);
      const parser = new NodePassPayloadParser();
      const tunnels = Array.from({ length: 2 }, (_, i) => newTunnel(rnd, i));
      const clock = { ms: Date.parse('2026-11-26T09:00:00Z') };
      for (const mutate of MUTATIONS) {
        const tunnel = pick(rnd, tunnels);
        same(parser, nextEvent(rnd, tunnel, clock)); // known, so the mutated one meets the fast reading
        const mutated = mutate(nextEvent(rnd, tunnel, clock), rnd);
        const before = parser.fastReads;
        if (same(parser, mutated).kind === 'rejected') rejected += 1;
        fast += parser.fastReads - before;
      }
    }
    // Some mutations are valid JSON the fast reading still accepts (e.g. another escape of `&`); most are not.
    expect(fast).toBeGreaterThan(0);
    expect(rejected).toBeGreaterThan(200 * 20);
  });

  it('an SSE event name other than `instance` goes to the full parser and is rejected the same way', () => {
    const parser = new NodePassPayloadParser();
    const rnd = mulberry32(7);
    const t = newTunnel(rnd, 0);
    const clock = { ms: Date.parse('2026-11-26T09:00:00Z') };
    same(parser, nextEvent(rnd, t, clock));
    expect(same(parser, nextEvent(rnd, t, clock), 'message').kind).toBe('rejected');
  });
});

describe('what it keeps', () => {
  const update = (t: WireInstance, second: number): string =>
    encodeEnvelope('update', `2026-11-26T09:00:${String(second).padStart(2, '0')}.5Z`, encodeInstance(t));

  it("shares the previous event's unchanged strings and meta, and reads the changed ones anew", () => {
    const parser = new NodePassPayloadParser();
    const t = newTunnel(mulberry32(1), 0);
    t.url = 'server://a:1/b:2?log=debug&max=16';
    const first = parser.parse(update(t, 1));
    t.tcprx = 42;
    const second = parser.parse(update(t, 2));
    t.url = 'server://a:1/b:2?log=info';
    const third = parser.parse(update(t, 3));
    if (first.kind !== 'instance' || second.kind !== 'instance' || third.kind !== 'instance') throw new Error('not instance events');
    expect(parser.fastReads).toBe(1);
    expect(second.event.instance.tcprx).toBe(42);
    expect(second.event.instance.meta).toBe(first.event.instance.meta);
    expect(second.event.instance.url).toBe(first.event.instance.url);
    expect(third.event.instance.url).toBe('server://a:1/b:2?log=info');
    expect(parser.fullReads).toBe(2);
  });

  it("keeps no payload alive through the strings it hands out (a log line's time is kept for minutes)", () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const parser = new NodePassPayloadParser();
    const t = newTunnel(mulberry32(3), 0);
    t.url = `server://a:1/b:2?pad=${'x'.repeat(50_000)}`;
    const logEvent = (i: number): string =>
      encodeEnvelope('log', `2026-11-26T09:00:00.${String(i).padStart(9, '0')}Z`, encodeInstance(t), `plain line ${i} of the log`);
    parser.parse(logEvent(0));
    gc();
    const before = process.memoryUsage().heapUsed;
    const kept: string[] = [];
    for (let i = 1; i <= 2_000; i++) {
      const parsed = parser.parse(logEvent(i));
      if (parsed.kind !== 'instance') throw new Error('not an instance event');
      kept.push(parsed.event.time, parsed.event.logs, parsed.event.instance.id);
    }
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    expect(parser.fastReads).toBe(2_000);
    // 2,000 payloads of 50 KB: 100 MB if a kept string shared its payload; a few hundred KB when they are their own.
    expect(grown).toBeLessThan(10_000_000);
    expect(kept).toHaveLength(6_000);
  });

  it("keeps nothing for a snapshot's initial event, only once the tunnel streams", () => {
    const parser = new NodePassPayloadParser();
    const t = newTunnel(mulberry32(4), 0);
    parser.parse(encodeEnvelope('initial', '2026-11-26T09:00:00Z', encodeInstance(t)));
    expect(parser.knownCount).toBe(0);
    parser.parse(update(t, 5));
    expect(parser.knownCount).toBe(1);
    parser.parse(update(t, 10));
    expect(parser.fastReads).toBe(1);
    expect(parser.fullReads).toBe(2);
  });

  it('releases a tunnel that stopped sending, after one to two release periods, and keeps one that streams', () => {
    let clock = 0;
    const parser = new NodePassPayloadParser({ releaseUnusedAfterMs: 60_000, now: () => clock });
    const [streaming, stopping] = [newTunnel(mulberry32(5), 0), newTunnel(mulberry32(6), 1)];
    for (const t of [streaming, stopping]) parser.parse(update(t, 1));
    expect(parser.knownCount).toBe(2);
    // Every 10 s the streaming tunnel checkpoints; the other one has gone silent.
    for (let s = 10; s <= 130; s += 10) {
      clock = s * 1000;
      parser.parse(update(streaming, s % 60));
      parser.sweepIfDue();
    }
    expect(parser.knownCount).toBe(1);
    expect(parser.released).toBe(1);
    // The streaming one is still read in place; the released one is parsed in full once more, then kept again.
    const fastBefore = parser.fastReads;
    parser.parse(update(streaming, 59));
    expect(parser.fastReads).toBe(fastBefore + 1);
    parser.parse(update(stopping, 59));
    expect(parser.fastReads).toBe(fastBefore + 1);
    expect(parser.knownCount).toBe(2);
  });

  it('forgets a deleted tunnel, and starts over past its bound', () => {
    const parser = new NodePassPayloadParser({ maxKnown: 3 });
    const rnd = mulberry32(2);
    const tunnels = Array.from({ length: 4 }, (_, i) => newTunnel(rnd, i));
    for (const t of tunnels.slice(0, 3)) parser.parse(update(t, 1));
    expect(parser.knownCount).toBe(3);
    parser.parse(encodeEnvelope('delete', '2026-11-26T09:00:02Z', encodeInstance(tunnels[0]!)));
    expect(parser.knownCount).toBe(2);
    parser.parse(update(tunnels[3]!, 3));
    expect(parser.knownCount).toBe(3);
    parser.parse(update(tunnels[0]!, 4)); // a fourth: the memory starts over with it
    expect(parser.knownCount).toBe(1);
    expect(DEFAULT_MAX_KNOWN).toBeGreaterThanOrEqual(100_000);
  });
});
