/**
 * The domain vocabulary shared by every machine: what a NodePass instance looks like once validated,
 * the four traffic counters, and the events that the protocol layer hands to the actors.
 * Plain JSON only (numbers, strings, arrays, records; times as epoch milliseconds) so that context
 * serialises unchanged into HTTP responses, persisted snapshots and replay reports.
 */

export const COUNTER_KEYS = ['tcprx', 'tcptx', 'udprx', 'udptx'] as const;
export type CounterKey = (typeof COUNTER_KEYS)[number];
export type Counters = Record<CounterKey, number>;

export const ZERO_COUNTERS: Readonly<Counters> = Object.freeze({ tcprx: 0, tcptx: 0, udprx: 0, udptx: 0 });

export type InstanceStatus = 'running' | 'stopped' | 'error';
export const INSTANCE_STATUSES: readonly InstanceStatus[] = ['running', 'stopped', 'error'];

export interface InstanceMeta {
  peer: { sid: string; type: string; alias: string };
  tags: Record<string, string>;
}

/** A validated NodePass instance object (PROTOCOL §4), minus the API-key record which never gets this far. */
export interface Instance extends Counters {
  id: string;
  alias: string;
  type: string;
  status: InstanceStatus;
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

/** The static configuration part of an instance (what is written through at once), plus its status. */
export function staticFieldsOf(inst: Instance): Pick<Instance, 'alias' | 'type' | 'url' | 'config' | 'restart' | 'meta' | 'status'> {
  return { alias: inst.alias, type: inst.type, url: inst.url, config: inst.config, restart: inst.restart, meta: inst.meta, status: inst.status };
}

export type NodePassEventType = 'initial' | 'create' | 'update' | 'delete' | 'shutdown' | 'log';
export const NODEPASS_EVENT_TYPES: readonly NodePassEventType[] = [
  'initial',
  'create',
  'update',
  'delete',
  'shutdown',
  'log',
];

/** One validated NodePass event for a real instance (everything but `shutdown`). */
export interface InstanceEvent {
  type: Exclude<NodePassEventType, 'shutdown'>;
  /** Event creation time, epoch ms (what the clock and staleness use). */
  at: number;
  /** The event's `time` exactly as sent (nanosecond precision), part of a log line's identity. */
  time: string;
  instance: Instance;
  /** The raw log line for `log` events, `""` otherwise. */
  logs: string;
}

/** What the protocol layer makes of one SSE `data` payload. */
export type ParsedEvent =
  | { kind: 'instance'; event: InstanceEvent }
  | { kind: 'shutdown'; at: number; time: string }
  /** The API-key record `********`: only the master id (its `config`) and alias are kept; the key is dropped. */
  | { kind: 'master'; type: NodePassEventType; at: number; masterId: string; alias: string }
  | { kind: 'rejected'; reason: string };

/** Master facts from `GET /info` (PROTOCOL §3.6) or from the API-key record. */
export interface MasterInfo {
  masterId: string;
  alias: string;
  version: string;
  os: string;
  arch: string;
  name: string;
  uptime: number;
  system: Record<string, number | string>;
}

/** Actor ids are `kind:id`, built here and nowhere else. */
export const actorId = {
  fleet: () => 'fleet',
  endpoint: (endpointId: number) => `endpoint:${endpointId}`,
  // Joined rather than a template: V8 keeps a template result of this length as a tree of concatenations (two
  // string objects per tunnel, for the actor's life); `join` builds one flat string.
  tunnel: (endpointId: number, instanceId: string) => ['tunnel:', endpointId, '/', instanceId].join(''),
};

/** Epoch ms → ISO 8601, the one place that formats times for reports and responses. */
export const iso = (ms: number): string => new Date(ms).toISOString();
