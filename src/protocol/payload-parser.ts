/**
 * The per-stream NodePass payload parser: `parseNodePassPayload`'s results, for a fraction of its cost on the
 * payloads that make up nearly all of a stream.
 *
 * Why: `JSON.parse` of a ~600-byte instance event was a quarter of the ingest thread at 50,000 events/s
 * (docs/performance.md, Session 6), and most of that is decoding the same `url`, `config`, `alias` and `meta`
 * again for every event of a tunnel. A master writes its events in one fixed form (Go's encoder: fields in struct
 * order, no whitespace, PROTOCOL §4–§5.2), so a tunnel's next event can be read by checking, in place, that the
 * wire text around its status (every rarely changing field) is the text of its last fully parsed event, and
 * reading only what moves (time, status, gauges, counters, the log line).
 *
 * The rule that keeps this exact: the fast reading accepts a payload only when the whole text is in that form and
 * every value in it is valid; it then returns what `parseNodePassPayload` returns for the same text (the same
 * values, the unchanged strings and `meta` shared with the previous event). Anything else (a first sighting, a
 * changed string, another key order, whitespace, escapes where they are not expected, a number that is not a plain
 * integer in range, a rejection) goes to `parseNodePassPayload` itself. Proven by
 * test/protocol/payload-parser-equivalence.unit.spec.ts.
 */
import type { Instance, InstanceStatus, ParsedEvent } from '../../actors/model.js';
import { parseGoTime, parseNodePassPayload } from './events.js';

/**
 * What is kept of a tunnel's last event in the canonical form: the wire text around its status, which holds every
 * rarely changing field, and those fields' values as the full parser decoded them from exactly that text. The id
 * is the one first parsed: every event of the tunnel hands on this one string (a property key V8 has seen).
 */
interface KnownTunnel extends Pick<Instance, 'id' | 'alias' | 'type' | 'url' | 'config' | 'restart' | 'meta'> {
  /** From the id's closing quote to the status value: `","alias":…,"type":…,"status":"`. */
  beforeStatus: string;
  /** From the status value's closing quote through the mode's key: `,"url":…,"meta":{…}},"mode":`. */
  afterStatus: string;
  /** Read or kept since the last sweep: an entry that was not is released by the next one. */
  used: boolean;
}

export interface PayloadParserOptions {
  /** A bound on remembered tunnels; past it the memory starts over (a cost in speed only). Default 200,000. */
  maxKnown?: number;
  /**
   * A tunnel whose events stop (stopped, deleted unseen, gone with a reconnect elsewhere) is released after between
   * one and two of these, ms. Default 60 s: twelve checkpoint intervals (PROTOCOL §5.5).
   */
  releaseUnusedAfterMs?: number;
  now?: () => number;
}

type InstanceEventType = 'initial' | 'create' | 'update' | 'delete' | 'log';

/** The envelope's start up to the time's first character, by the event type's first letter after `{"type":"`. */
const ENVELOPE_STARTS: Partial<Record<string, { type: InstanceEventType; start: string }>> = {};
for (const type of ['initial', 'create', 'update', 'delete', 'log'] as const) {
  ENVELOPE_STARTS[type[0]!] = { type, start: `{"type":"${type}","time":"` };
}
const TYPE_AT = '{"type":"'.length;
const STATUSES: Partial<Record<string, InstanceStatus>> = { r: 'running', s: 'stopped', e: 'error' };

const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;
/** Ids longer than the schema's bound go to the full parser (which rejects them). */
const MAX_ID_LENGTH = 64;
export const DEFAULT_MAX_KNOWN = 200_000;
export const DEFAULT_RELEASE_UNUSED_AFTER_MS = 60_000;
/** Reads between two looks at the clock (a sweep is due at most once per `releaseUnusedAfterMs`). */
const READS_PER_CLOCK_CHECK = 1024;

const QUOTE = 34;
const BACKSLASH = 92;

/** The integer read by `integerField` (a module slot rather than an object per number). */
let integerValue = 0;

export class NodePassPayloadParser {
  private readonly known = new Map<string, KnownTunnel>();
  /** Payloads read the fast way, and those handed to the full parser: a measure of how well this works. */
  fastReads = 0;
  fullReads = 0;
  /** Entries released by sweeps because their tunnel sent nothing for a while. */
  released = 0;
  private readonly maxKnown: number;
  private readonly releaseUnusedAfterMs: number;
  private readonly now: () => number;
  private lastSweepAt: number;
  private readsSinceClockCheck = 0;

  constructor(options: PayloadParserOptions = {}) {
    this.maxKnown = options.maxKnown ?? DEFAULT_MAX_KNOWN;
    this.releaseUnusedAfterMs = options.releaseUnusedAfterMs ?? DEFAULT_RELEASE_UNUSED_AFTER_MS;
    this.now = options.now ?? Date.now;
    this.lastSweepAt = this.now();
  }

  /** Exactly `parseNodePassPayload(data, eventName)`. */
  parse(data: string, eventName = 'instance'): ParsedEvent {
    if (++this.readsSinceClockCheck >= READS_PER_CLOCK_CHECK) this.sweepIfDue();
    if (eventName === 'instance') {
      const fast = this.readKnown(data);
      if (fast !== undefined) {
        this.fastReads += 1;
        if (fast.kind === 'instance' && fast.event.type === 'delete') this.known.delete(fast.event.instance.id);
        return fast;
      }
    }
    this.fullReads += 1;
    const parsed = parseNodePassPayload(data, eventName);
    if (parsed.kind === 'instance') this.remember(data, parsed.event.type, parsed.event.instance);
    return parsed;
  }

  /** How many tunnels the parser holds strings for. */
  get knownCount(): number {
    return this.known.size;
  }

  /**
   * Releases the entries nothing used since the previous sweep, if one is due. Checked every few reads, so a stream
   * that has gone quiet keeps its entries until it reads again (or closes, and the parser goes with it).
   */
  sweepIfDue(): void {
    this.readsSinceClockCheck = 0;
    const now = this.now();
    if (now - this.lastSweepAt < this.releaseUnusedAfterMs) return;
    this.lastSweepAt = now;
    for (const [id, known] of this.known) {
      if (known.used) known.used = false;
      else {
        this.known.delete(id);
        this.released += 1;
      }
    }
  }

  /**
   * After a full read: keeps the tunnel's wire text around its status, if the payload is in the canonical form.
   * Not for a snapshot's `initial` event: a tunnel that sends nothing after it (stopped, or waiting for its peer:
   * no checkpoints, PROTOCOL §5.5) would hold ~0.7 KB for nothing; one that streams is kept at its next event (a
   * running instance checkpoints every 5 s), whose full read is the only price.
   */
  private remember(data: string, type: InstanceEventType, instance: Instance): void {
    const found = type === 'delete' || type === 'initial' ? undefined : locateStatus(data, instance);
    if (found === undefined) {
      this.known.delete(instance.id);
      return;
    }
    if (this.known.size >= this.maxKnown && !this.known.has(instance.id)) this.known.clear();
    this.known.set(instance.id, {
      id: instance.id,
      // Copies, so the tunnel's entry does not keep the whole payload alive (a slice may share its parent's text).
      beforeStatus: ownCopy(data.slice(found.idEnd, found.statusStart)),
      afterStatus: ownCopy(data.slice(found.statusEnd, found.modeStart)),
      alias: instance.alias,
      type: instance.type,
      url: instance.url,
      config: instance.config,
      restart: instance.restart,
      meta: instance.meta,
      used: true,
    });
  }

  /**
   * The event for a payload in the canonical form whose tunnel is known and whose text around the status is
   * unchanged; undefined for anything else. Equal wire text decodes to equal values, so the known values are the
   * values of this text. Each step answers the position after what it read, or -1.
   */
  private readKnown(data: string): ParsedEvent | undefined {
    const envelope = envelopeOf(data);
    if (envelope === undefined) return undefined;
    let p = envelope.start.length;
    const timeEnd = plainStringEnd(data, p);
    if (timeEnd === -1) return undefined;
    // Decoded into a string of its own, as JSON.parse does: a slice would keep the whole payload alive for as long
    // as the time is kept (a log line's identity keeps it for its dedupe window).
    const time = decodeString(data, p - 1, timeEnd);
    if (time === undefined) return undefined;
    const at = parseGoTime(time);
    if (!Number.isFinite(at)) return undefined;
    p = literal(data, timeEnd, '","instance":{"id":"');
    if (p === -1) return undefined;
    const idEnd = plainStringEnd(data, p);
    if (idEnd === -1 || idEnd === p || idEnd - p > MAX_ID_LENGTH) return undefined;
    // Only instance events are remembered, never the API-key record (`********`): its id is never found here.
    const known = this.known.get(data.slice(p, idEnd));
    if (known === undefined) return undefined;

    p = literal(data, idEnd, known.beforeStatus);
    if (p === -1) return undefined;
    const status = STATUSES[data[p] ?? ''];
    if (status === undefined || !textAt(data, p, status) || data.charCodeAt(p + status.length) !== QUOTE) return undefined;
    p = literal(data, p + status.length + 1, known.afterStatus);

    p = integerField(data, p, '', INT32_MIN, INT32_MAX);
    const mode = integerValue;
    p = integerField(data, p, ',"ping":', INT32_MIN, INT32_MAX);
    const ping = integerValue;
    p = integerField(data, p, ',"pool":', INT32_MIN, INT32_MAX);
    const pool = integerValue;
    p = integerField(data, p, ',"tcps":', INT32_MIN, INT32_MAX);
    const tcps = integerValue;
    p = integerField(data, p, ',"udps":', INT32_MIN, INT32_MAX);
    const udps = integerValue;
    p = integerField(data, p, ',"tcprx":', 0, Number.MAX_SAFE_INTEGER);
    const tcprx = integerValue;
    p = integerField(data, p, ',"tcptx":', 0, Number.MAX_SAFE_INTEGER);
    const tcptx = integerValue;
    p = integerField(data, p, ',"udprx":', 0, Number.MAX_SAFE_INTEGER);
    const udprx = integerValue;
    p = integerField(data, p, ',"udptx":', 0, Number.MAX_SAFE_INTEGER);
    const udptx = integerValue;

    p = literal(data, p, '},"logs":"');
    if (p === -1) return undefined;
    let logs = '';
    if (data.charCodeAt(p) !== QUOTE) {
      const logsEnd = stringEnd(data, p);
      if (logsEnd === -1) return undefined;
      const decoded = decodeString(data, p - 1, logsEnd);
      if (decoded === undefined) return undefined;
      logs = decoded;
      p = logsEnd;
    }
    if (p + 2 !== data.length || data.charCodeAt(p + 1) !== 125 /* } */) return undefined;

    const instance: Instance = {
      id: known.id,
      alias: known.alias,
      type: known.type,
      status,
      url: known.url,
      config: known.config,
      restart: known.restart,
      meta: known.meta,
      mode,
      ping,
      pool,
      tcps,
      udps,
      tcprx,
      tcptx,
      udprx,
      udptx,
    };
    known.used = true;
    return { kind: 'instance', event: { type: envelope.type, at, time, instance, logs } };
  }
}

/**
 * Where a fully parsed payload's status and mode are, if the payload is in the canonical form up to the mode:
 * the envelope's keys in order, then the instance's keys in struct order, no whitespace, each string decoding to
 * the instance's own value, and a `meta` whose own shape is that form (only such a meta may be shared later).
 */
function locateStatus(
  data: string,
  instance: Instance,
): { idEnd: number; statusStart: number; statusEnd: number; modeStart: number } | undefined {
  const meta = instance.meta;
  if (!hasExactKeys(meta, 'peer', 'tags') || !hasExactKeys(meta.peer, 'sid', 'type', 'alias')) return undefined;
  const envelope = envelopeOf(data);
  if (envelope === undefined) return undefined;
  let p = plainStringEnd(data, envelope.start.length);
  p = literal(data, p, '","instance":{"id":');
  p = matchString(data, p, instance.id);
  if (p === -1) return undefined;
  const idEnd = p - 1;
  p = stringField(data, p, ',"alias":', instance.alias);
  p = stringField(data, p, ',"type":', instance.type);
  p = literal(data, p, ',"status":"');
  if (p === -1) return undefined;
  const statusStart = p;
  p = literal(data, p, `${instance.status}"`);
  if (p === -1) return undefined;
  const statusEnd = p;
  p = stringField(data, p, ',"url":', instance.url);
  p = stringField(data, p, ',"config":', instance.config);
  p = literal(data, p, `,"restart":${instance.restart}`);
  const peer = meta.peer;
  p = stringField(data, p, ',"meta":{"peer":{"sid":', peer.sid);
  p = stringField(data, p, ',"type":', peer.type);
  p = stringField(data, p, ',"alias":', peer.alias);
  p = tagsField(data, p, meta.tags);
  p = literal(data, p, '},"mode":');
  return p === -1 ? undefined : { idEnd, statusStart, statusEnd, modeStart: p };
}

/** The instance event's envelope `data` starts with (`{"type":"<type>","time":"`), or undefined. */
function envelopeOf(data: string): { type: InstanceEventType; start: string } | undefined {
  const envelope = ENVELOPE_STARTS[data[TYPE_AT] ?? ''];
  return envelope !== undefined && textAt(data, 0, envelope.start) ? envelope : undefined;
}

/** A flat copy of `text` that shares nothing with the string it was sliced from (exact, lone surrogates too). */
function ownCopy(text: string): string {
  return JSON.parse(JSON.stringify(text)) as string;
}

/**
 * Whether `text` is in `data` at `p`. Compared as a slice: V8 compares equal-length strings as memory, an order
 * of magnitude faster here than `startsWith` with a position, which walks character by character.
 */
function textAt(data: string, p: number, text: string): boolean {
  return data.slice(p, p + text.length) === text;
}

/**
 * `textAt` for the short keys between the numbers, unit by unit: a slice that short (under 13 characters) is a
 * copy, and nine of them per event were ~180 bytes of garbage.
 */
function keyAt(data: string, p: number, key: string): boolean {
  for (let i = 0; i < key.length; i++) if (data.charCodeAt(p + i) !== key.charCodeAt(i)) return false;
  return true;
}

/** `text` at `p` (p = -1 passes through): the position after it, or -1. */
function literal(data: string, p: number, text: string): number {
  return p !== -1 && textAt(data, p, text) ? p + text.length : -1;
}

/** `key` at `p`, then a JSON string literal that decodes to exactly `value`: the position after it, or -1. */
function stringField(data: string, p: number, key: string, value: string): number {
  p = literal(data, p, key);
  return p === -1 ? -1 : matchString(data, p, value);
}

/**
 * A JSON string literal at `p` (its opening quote) that decodes to exactly `value`: the position after its closing
 * quote, or -1. Every escape and every character decodes to one UTF-16 unit, so comparing unit by unit is exact;
 * any valid spelling is accepted (Go writes `&` as `\u0026`), and anything invalid in JSON fails.
 */
function matchString(data: string, p: number, value: string): number {
  if (p === -1 || data.charCodeAt(p) !== QUOTE) return -1;
  p += 1;
  for (let i = 0; i < value.length; i++) {
    const c = data.charCodeAt(p);
    if (c === BACKSLASH) {
      const unit = escapedUnit(data, p);
      if (unit !== value.charCodeAt(i)) return -1;
      p += data.charCodeAt(p + 1) === 117 /* u */ ? 6 : 2;
    } else {
      // A raw control character or quote is not valid inside a JSON string; NaN (past the end) fails too.
      if (c !== value.charCodeAt(i) || c < 0x20 || c === QUOTE) return -1;
      p += 1;
    }
  }
  return data.charCodeAt(p) === QUOTE ? p + 1 : -1;
}

/** The UTF-16 unit of the escape at `p` (at its backslash), or -1 for an invalid one. */
function escapedUnit(data: string, p: number): number {
  switch (data.charCodeAt(p + 1)) {
    case QUOTE:
      return QUOTE;
    case BACKSLASH:
      return BACKSLASH;
    case 47: // /
      return 47;
    case 98: // b
      return 8;
    case 102: // f
      return 12;
    case 110: // n
      return 10;
    case 114: // r
      return 13;
    case 116: // t
      return 9;
    case 117: {
      // u: exactly four hex digits, either case
      let unit = 0;
      for (let k = p + 2; k < p + 6; k++) {
        const h = hexValue(data.charCodeAt(k));
        if (h === -1) return -1;
        unit = unit * 16 + h;
      }
      return unit;
    }
    default:
      return -1;
  }
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** From `p` inside a string: the position of its closing quote if it has no escape and no control character, or -1. */
function plainStringEnd(data: string, p: number): number {
  for (let c = data.charCodeAt(p); c === c; c = data.charCodeAt(++p)) {
    if (c === QUOTE) return p;
    if (c === BACKSLASH || c < 0x20) return -1;
  }
  return -1; // NaN: past the end
}

/** From `p` inside a string: the position of its closing quote, stepping over escapes; -1 at a control character or the end. */
function stringEnd(data: string, p: number): number {
  for (let c = data.charCodeAt(p); c === c; c = data.charCodeAt(++p)) {
    if (c === QUOTE) return p;
    if (c === BACKSLASH) p += 1;
    else if (c < 0x20) return -1;
  }
  return -1;
}

/**
 * The string literal from `open` (its opening quote) to `close` (its closing quote), decoded into a string of its
 * own (not a slice sharing the payload's memory); undefined if invalid.
 */
function decodeString(data: string, open: number, close: number): string | undefined {
  try {
    return JSON.parse(data.slice(open, close + 1)) as string;
  } catch {
    return undefined;
  }
}

/**
 * `,"tags":` and a JSON object with exactly the keys and values of `tags` in their order, then `}` closing the
 * meta; the position after it, or -1. (Keys JSON.parse would put in another order simply never match.)
 */
function tagsField(data: string, p: number, tags: Record<string, string>): number {
  p = literal(data, p, '},"tags":{');
  let first = true;
  for (const key in tags) {
    if (!first) p = literal(data, p, ',');
    first = false;
    p = matchString(data, p, key);
    p = literal(data, p, ':');
    p = matchString(data, p, tags[key]!);
  }
  return literal(data, p, '}');
}

/**
 * `key` at `p`, then a JSON integer (`-?(0|[1-9][0-9]*)`, no fraction or exponent) within [min, max]: the
 * position after it, the value in `integerValue`; or -1. At most 16 digits: any value of more is out of range.
 */
function integerField(data: string, p: number, key: string, min: number, max: number): number {
  if (p === -1 || !keyAt(data, p, key)) return -1;
  p += key.length;
  const negative = data.charCodeAt(p) === 45; // -
  if (negative) p += 1;
  const start = p;
  let c = data.charCodeAt(p);
  let value = 0;
  if (c === 48) {
    c = data.charCodeAt(++p);
  } else {
    if (!(c >= 49 && c <= 57)) return -1;
    while (c >= 48 && c <= 57) {
      // Exact below 2^53; a longer value rounds to at least 2^53, which every range here excludes.
      value = value * 10 + (c - 48);
      c = data.charCodeAt(++p);
    }
    if (p - start > 16) return -1;
  }
  // A digit after a leading 0, a fraction or an exponent: not this form.
  if ((c >= 48 && c <= 57) || c === 46 || c === 101 || c === 69) return -1;
  // `-0` is -0, as JSON.parse reads it.
  value = negative ? -value : value;
  if (value < min || value > max) return -1;
  integerValue = value;
  return p;
}

function hasExactKeys(value: unknown, ...keys: string[]): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const own = Object.keys(value);
  if (own.length !== keys.length) return false;
  for (let i = 0; i < keys.length; i++) if (own[i] !== keys[i]) return false;
  return true;
}
