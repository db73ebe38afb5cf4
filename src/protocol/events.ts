/**
 * Validation of NodePass SSE payloads into typed events (PROTOCOL §5.2, §4).
 * Every payload either becomes a `ParsedEvent` or a rejection with a reason a human can act on;
 * nothing here throws, so one bad frame never stops a stream.
 */
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import {
  NODEPASS_EVENT_TYPES,
  type Instance,
  type NodePassEventType,
  type ParsedEvent,
} from '../../actors/model.js';

/** The id of the API-key record (PROTOCOL §2). Its `url` is the API key and must never be kept. */
export const API_KEY_RECORD_ID = '********';

const Counter = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
const Int32 = Type.Integer({ minimum: -2147483648, maximum: 2147483647 });

const InstanceSchema = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 64 }),
  alias: Type.String(),
  type: Type.String(),
  status: Type.Union([Type.Literal('running'), Type.Literal('stopped'), Type.Literal('error')]),
  url: Type.String(),
  config: Type.String(),
  restart: Type.Boolean(),
  meta: Type.Object({
    peer: Type.Object({ sid: Type.String(), type: Type.String(), alias: Type.String() }),
    tags: Type.Record(Type.String(), Type.String()),
  }),
  mode: Int32,
  ping: Int32,
  pool: Int32,
  tcps: Int32,
  udps: Int32,
  tcprx: Counter,
  tcptx: Counter,
  udprx: Counter,
  udptx: Counter,
});
const instanceCheck = TypeCompiler.Compile(InstanceSchema);

// Compile-time proof that the schema and the domain type agree.
type SchemaInstance = Static<typeof InstanceSchema>;
const _schemaMatchesModel: (i: SchemaInstance) => Instance = (i) => i;
void _schemaMatchesModel;

const EVENT_TYPES = new Set<string>(NODEPASS_EVENT_TYPES);

/**
 * Parses Go's RFC 3339 nano time (`2026-11-26T09:15:34.054947825Z`, or with an offset) to epoch ms: exactly
 * `Date.parse` (which keeps the first three fraction digits) of the strings of this shape, NaN for any other.
 * Runs for every event, and a master's events share their second with thousands of neighbours: the second (and
 * offset) is parsed by `Date.parse` once, kept, and the milliseconds added from the fraction's digits.
 */
export function parseGoTime(value: string): number {
  if (value.length < 20) return NaN;
  const cache = goSecondCache;
  // The kept second passed the shape check (and is not 24:00:00): a value that starts with it needs only its
  // fraction and zone checked.
  const sameSecond = cache.second !== '' && value.startsWith(cache.second);
  if (!sameSecond && !hasGoSecondShape(value)) return NaN;
  const suffixStart = goZoneStart(value);
  if (suffixStart === -1) return NaN;
  if (!sameSecond || value.length - suffixStart !== cache.suffix.length || !value.endsWith(cache.suffix)) {
    // 24:00:00 is valid only without a fraction, which the sum below would not know: left to Date.parse.
    if (value.charCodeAt(11) === 50 && value.charCodeAt(12) === 52) return Date.parse(value);
    cache.second = value.slice(0, 19);
    cache.suffix = value.slice(suffixStart);
    cache.ms = Date.parse(cache.second + cache.suffix);
  }
  let ms = 0;
  if (suffixStart > 19) {
    // `.d`, `.dd`, `.ddd…`: the first three digits are the milliseconds, the rest is dropped (as Date.parse does).
    ms = (value.charCodeAt(20) - 48) * 100;
    if (suffixStart > 21) ms += (value.charCodeAt(21) - 48) * 10;
    if (suffixStart > 22) ms += value.charCodeAt(22) - 48;
  }
  return cache.ms + ms;
}

/** The last second seen by `parseGoTime`: its first 19 characters, its zone suffix, and its epoch ms. */
const goSecondCache = { second: '', suffix: '', ms: NaN };

/*
 * `hasGoSecondShape` and `goZoneStart` together are a hand-written match of
 * `^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$` (the regular expression ran for every event).
 */

/** `dddd-dd-ddTdd:dd:dd` in the first 19 characters. */
function hasGoSecondShape(value: string): boolean {
  return (
    digits(value, 0, 4) && value.charCodeAt(4) === 45 && digits(value, 5, 7) && value.charCodeAt(7) === 45 &&
    digits(value, 8, 10) && value.charCodeAt(10) === 84 && digits(value, 11, 13) && value.charCodeAt(13) === 58 &&
    digits(value, 14, 16) && value.charCodeAt(16) === 58 && digits(value, 17, 19)
  );
}

/** After the second: an optional fraction of 1–9 digits, then `Z` or `±hh:mm` ending the string; where the zone starts, or -1. */
function goZoneStart(value: string): number {
  const length = value.length;
  let i = 19;
  if (value.charCodeAt(i) === 46) {
    i += 1;
    const fractionStart = i;
    while (i < length && i - fractionStart < 10 && isDigit(value.charCodeAt(i))) i++;
    const fractionDigits = i - fractionStart;
    if (fractionDigits < 1 || fractionDigits > 9) return -1;
  }
  const zone = value.charCodeAt(i);
  if (zone === 90) return i === length - 1 ? i : -1; // Z
  if (zone !== 43 && zone !== 45) return -1; // + or -
  if (i !== length - 6) return -1;
  return digits(value, i + 1, i + 3) && value.charCodeAt(i + 3) === 58 && digits(value, i + 4, i + 6) ? i : -1;
}

const isDigit = (code: number): boolean => code >= 48 && code <= 57;

function digits(value: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (!isDigit(value.charCodeAt(i))) return false;
  return true;
}

function describeFirstError(value: unknown): string {
  const first = instanceCheck.Errors(value).First();
  if (!first) return 'invalid instance';
  const got = first.value === undefined ? 'missing' : JSON.stringify(first.value);
  return `instance${first.path.replaceAll('/', '.')}: ${first.message} (got ${got && got.length > 40 ? got.slice(0, 40) + '…' : got})`;
}

/**
 * Turns one SSE `data` payload into an event. `eventName` is the SSE `event:` field; NodePass always
 * sends `instance`.
 */
export function parseNodePassPayload(data: string, eventName = 'instance'): ParsedEvent {
  if (eventName !== 'instance') return { kind: 'rejected', reason: `unexpected SSE event name "${eventName.slice(0, 40)}"` };
  let raw: unknown;
  try {
    raw = JSON.parse(data);
  } catch {
    return { kind: 'rejected', reason: `not JSON (${data.length} bytes)` };
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return { kind: 'rejected', reason: 'payload is not a JSON object' };
  }
  const env = raw as Record<string, unknown>;
  const type = env['type'];
  if (typeof type !== 'string') return { kind: 'rejected', reason: 'missing "type"' };
  if (!EVENT_TYPES.has(type)) return { kind: 'rejected', reason: `unknown event type "${type.slice(0, 40)}"` };
  const time = env['time'];
  if (typeof time !== 'string') return { kind: 'rejected', reason: 'missing "time"' };
  const at = parseGoTime(time);
  if (!Number.isFinite(at)) return { kind: 'rejected', reason: `bad "time" ${JSON.stringify(time.slice(0, 40))}` };
  const logs = env['logs'] ?? '';
  if (typeof logs !== 'string') return { kind: 'rejected', reason: '"logs" is not a string' };

  if (type === 'shutdown') return { kind: 'shutdown', at, time };

  const inst = env['instance'];
  if (typeof inst !== 'object' || inst === null) return { kind: 'rejected', reason: `${type} event without an instance` };
  const id = (inst as Record<string, unknown>)['id'];
  if (id === API_KEY_RECORD_ID) {
    // Keep the master id (config) and the master alias; the key in `url` is deliberately not read.
    const rec = inst as Record<string, unknown>;
    const config = rec['config'];
    const alias = rec['alias'];
    return {
      kind: 'master',
      type: type as NodePassEventType,
      at,
      masterId: typeof config === 'string' ? config : '',
      alias: typeof alias === 'string' ? alias : '',
    };
  }
  if (!instanceCheck.Check(inst)) return { kind: 'rejected', reason: describeFirstError(inst) };
  return {
    kind: 'instance',
    event: { type: type as Exclude<NodePassEventType, 'shutdown'>, at, time, instance: inst, logs },
  };
}
