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

/** Parses Go's RFC 3339 nano time (`2026-11-26T09:15:34.054947825Z`, or with an offset) to epoch ms. */
export function parseGoTime(value: string): number {
  // Date.parse handles up to 9 fraction digits on V8 but keeps only ms; guard the shape first.
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/.test(value)) return NaN;
  return Date.parse(value);
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
