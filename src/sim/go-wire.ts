/**
 * Byte-exact NodePass wire encoding (PROTOCOL §4, §5): Go `encoding/json` strings, Go RFC 3339 nano times,
 * the Instance object in the master's field order, the event envelope and the SSE frame.
 * Serialisation is done by hand, not with JSON.stringify on objects, because Go writes struct fields in
 * declaration order and map keys sorted as strings; JS objects would reorder integer-like tag keys.
 */
import type { Counters, InstanceMeta, NodePassEventType } from '../../actors/model.js';

/** The instance as the master puts it on the wire; `status`/`type` are `""` for the API-key record. */
export interface WireInstance extends Counters {
  id: string;
  alias: string;
  type: string;
  status: string;
  url: string;
  config: string;
  restart: boolean;
  meta: InstanceMeta;
  mode: number;
  ping: number;
  pool: number;
  tcps: number;
  udps: number;
}

const GO_HTML_ESCAPES: Record<string, string> = {
  '&': '\\u0026',
  '<': '\\u003c',
  '>': '\\u003e',
  '\u2028': '\\u2028',
  '\u2029': '\\u2029',
};

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** A JSON string literal as Go's encoding/json writes it (HTML-safe escapes, invalid UTF-16 → U+FFFD). */
export function goJsonString(value: string): string {
  return JSON.stringify(value.replace(LONE_SURROGATE, '\uFFFD')).replace(/[&<>\u2028\u2029]/g, (ch) => GO_HTML_ESCAPES[ch]!);
}

/** A `map[string]string` as Go writes it: keys sorted bytewise. */
function goStringMap(map: Record<string, string>): string {
  const keys = Object.keys(map).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${keys.map((k) => `${goJsonString(k)}:${goJsonString(map[k]!)}`).join(',')}}`;
}

/** The Instance struct in field order (PROTOCOL §4; same order as every capture). */
export function encodeInstance(i: WireInstance): string {
  const p = i.meta.peer;
  return (
    `{"id":${goJsonString(i.id)},"alias":${goJsonString(i.alias)},"type":${goJsonString(i.type)},` +
    `"status":${goJsonString(i.status)},"url":${goJsonString(i.url)},"config":${goJsonString(i.config)},` +
    `"restart":${i.restart},"meta":{"peer":{"sid":${goJsonString(p.sid)},"type":${goJsonString(p.type)},` +
    `"alias":${goJsonString(p.alias)}},"tags":${goStringMap(i.meta.tags)}},` +
    `"mode":${i.mode},"ping":${i.ping},"pool":${i.pool},"tcps":${i.tcps},"udps":${i.udps},` +
    `"tcprx":${i.tcprx},"tcptx":${i.tcptx},"udprx":${i.udprx},"udptx":${i.udptx}}`
  );
}

/** The `InstanceEvent` envelope, keys `type,time,instance,logs` (PROTOCOL §5.2). `instanceJson` null → `null`. */
export function encodeEnvelope(type: NodePassEventType, time: string, instanceJson: string | null, logs = ''): string {
  return `{"type":${goJsonString(type)},"time":${goJsonString(time)},"instance":${instanceJson ?? 'null'},"logs":${goJsonString(logs)}}`;
}

/** The only thing ever written before the first event of a stream. */
export const SSE_PREAMBLE = 'retry: 3000\n\n';

/** One SSE frame; NodePass's event name is always `instance`. */
export function sseFrame(data: string): string {
  return `event: instance\ndata: ${data}\n\n`;
}

const pad = (n: number, width = 2): string => String(n).padStart(width, '0');

/**
 * Go's `time.RFC3339Nano` in UTC: `2026-11-26T09:15:34.054947825Z`, trailing fraction zeros trimmed
 * (and the dot too when the fraction is zero).
 */
export function formatGoTime(epochMs: number, subMillisecondNanos = 0): string {
  const d = new Date(Math.floor(epochMs));
  const nanos = d.getUTCMilliseconds() * 1_000_000 + subMillisecondNanos;
  const fraction = nanos === 0 ? '' : `.${pad(nanos, 9).replace(/0+$/, '')}`;
  return (
    `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}` +
    `T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}${fraction}Z`
  );
}

/**
 * Event times with synthetic nanoseconds. The clock gives milliseconds; the sub-millisecond digits are derived
 * from a counter, so they are deterministic, and the stamps are strictly increasing, hence unique per stamper
 * (consumers use `time` as part of a log line's identity, so two lines must never share one). A clock that
 * stands still or steps back is followed from the last stamp instead.
 */
export class GoTimeStamper {
  private lastMs = Number.NEGATIVE_INFINITY;
  private lastSub = 0;
  private count = 0;

  constructor(private readonly now: () => number) {}

  stamp(): string {
    this.count++;
    let ms = Math.max(Math.floor(this.now()), this.lastMs);
    let sub: number;
    if (ms === this.lastMs) {
      // A step of 1..997 ns looks like real jitter between events written in the same millisecond.
      sub = this.lastSub + 1 + ((this.count * 7919) % 997);
      if (sub > 999_999) {
        ms += 1;
        sub = 0;
      }
    } else {
      sub = (this.count * 482_711 + 104_729) % 1_000_000;
    }
    this.lastMs = ms;
    this.lastSub = sub;
    return formatGoTime(ms, sub);
  }
}
