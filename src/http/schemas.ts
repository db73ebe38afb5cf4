/**
 * TypeBox schemas of the HTTP API: params, queries, bodies and responses. Fastify validates requests with them,
 * serialises responses with them (fast-json-stringify: only declared fields go out, which is also a guard against
 * leaking anything a view did not mean to send), and @fastify/swagger publishes them at `/docs`.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';

const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);
const IsoTime = Type.String({ description: 'ISO 8601 time' });

export const ErrorResponse = Type.Object(
  {
    error: Type.Object({
      code: Type.String({ description: 'NOT_FOUND | BAD_REQUEST | UNAUTHORIZED | CONFLICT | RATE_LIMITED | UNAVAILABLE | INTERNAL' }),
      message: Type.String(),
    }),
  },
  { title: 'Error' },
);

export const Counters = Type.Object({ tcprx: Type.Number(), tcptx: Type.Number(), udprx: Type.Number(), udptx: Type.Number() });

// ---- params and queries ------------------------------------------------------------------------------------

export const EndpointParams = Type.Object({ id: Type.Integer({ minimum: 1, description: 'TunnelPulse endpoint id' }) });
export type EndpointParams = Static<typeof EndpointParams>;

export const TunnelParams = Type.Object({
  id: Type.Integer({ minimum: 1 }),
  instanceId: Type.String({ minLength: 1, maxLength: 256, description: 'NodePass instance id' }),
});
export type TunnelParams = Static<typeof TunnelParams>;

export const MAX_TRAFFIC_HOURS = 24 * 31;
export const TrafficQuery = Type.Object({
  hours: Type.Integer({ minimum: 1, maximum: MAX_TRAFFIC_HOURS, default: 24, description: 'hours back, the open hour included' }),
});
export type TrafficQuery = Static<typeof TrafficQuery>;

export const LogsQuery = Type.Object({
  since: Type.Optional(Type.String({ description: 'inclusive; ISO 8601 or epoch ms' })),
  until: Type.Optional(Type.String({ description: 'exclusive; ISO 8601 or epoch ms' })),
  level: Type.Optional(Type.String({ description: 'one level or a comma-separated list (info,warn,error,debug…)' })),
  limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
  cursor: Type.Optional(Type.String({ maxLength: 512, description: 'nextCursor of the previous page' })),
});
export type LogsQuery = Static<typeof LogsQuery>;

export const EventsQuery = Type.Object({
  endpoint: Type.Optional(Type.String({ description: 'endpoint ids, comma-separated' })),
  tunnel: Type.Optional(Type.String({ description: 'instance ids or <endpointId>/<instanceId>, comma-separated' })),
  kind: Type.Optional(Type.String({ description: 'kinds (tunnel.status) or families (tunnel), comma-separated' })),
});
export type EventsQuery = Static<typeof EventsQuery>;

export const RecentEventsQuery = Type.Object({
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000, default: 100, description: 'at most this many, newest first' })),
});
export const RecentEventsResponse = Type.Object({
  capacity: Type.Integer({ description: 'events the ring keeps for this endpoint (TUNNELPULSE_EVENT_RING)' }),
  total: Type.Integer({ description: 'events recorded since the endpoint was added (older ones have left the ring)' }),
  items: Type.Array(
    Type.Object({
      receivedAt: IsoTime,
      kind: Type.Union([Type.Literal('instance'), Type.Literal('master'), Type.Literal('shutdown'), Type.Literal('rejected')]),
      type: Type.String({ description: 'NodePass event type, or the rejection reason' }),
      instanceId: Nullable(Type.String()),
      status: Nullable(Type.String()),
      at: Nullable(IsoTime),
    }),
  ),
});
export const ActorParams = Type.Object({ actorId: Type.String({ minLength: 1, maxLength: 600, description: 'URL-encoded actor id' }) });
export type ActorParams = Static<typeof ActorParams>;

// ---- bodies ------------------------------------------------------------------------------------------------

export const CreateEndpointBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100 }),
    url: Type.String({ minLength: 1, maxLength: 2048, description: 'master URL; normalised to <scheme>://host:port<prefix>/v1' }),
    apiKey: Type.String({ minLength: 1, maxLength: 512, description: 'stored encrypted; never returned' }),
    insecureTls: Type.Optional(Type.Boolean()),
    enabled: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type CreateEndpointBody = Static<typeof CreateEndpointBody>;

export const UpdateEndpointBody = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    url: Type.Optional(Type.String({ minLength: 1, maxLength: 2048 })),
    apiKey: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
    insecureTls: Type.Optional(Type.Boolean()),
    enabled: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type UpdateEndpointBody = Static<typeof UpdateEndpointBody>;

// ---- views -------------------------------------------------------------------------------------------------

export const MasterInfoView = Type.Object({
  masterId: Type.String(),
  alias: Type.String(),
  version: Type.String(),
  os: Type.String(),
  arch: Type.String(),
  name: Type.String(),
  uptime: Type.Number(),
  system: Type.Record(Type.String(), Type.Union([Type.Number(), Type.String()])),
});

export const EndpointView = Type.Object({
  id: Type.Integer(),
  name: Type.String(),
  url: Type.String({ description: 'the master API base (no key, no credentials)' }),
  enabled: Type.Boolean(),
  insecureTls: Type.Boolean(),
  createdAt: Nullable(IsoTime),
  updatedAt: Nullable(IsoTime),
  state: Type.Unknown({ description: 'the endpoint actor state value (XState)' }),
  stateName: Type.String({ description: 'dotted state: enabled.online.live.streaming, enabled.backoff, disabled…' }),
  connected: Type.Boolean(),
  since: Nullable(IsoTime),
  master: Type.Object({ id: Type.String(), alias: Type.String(), info: Nullable(MasterInfoView) }),
  connections: Type.Integer(),
  reconnects: Type.Integer(),
  lastError: Nullable(Type.String()),
  tunnels: Type.Object({
    total: Type.Integer(),
    running: Type.Integer(),
    stopped: Type.Integer(),
    error: Type.Integer(),
    deleted: Type.Integer(),
    pending: Type.Integer({ description: 'known but not observed yet' }),
  }),
  traffic: Counters,
  rates: Counters,
  events: Type.Object({
    total: Type.Integer(),
    byType: Type.Record(Type.String(), Type.Integer()),
    rejected: Type.Integer(),
    rejectedReasons: Type.Record(Type.String(), Type.Integer()),
  }),
  offline: Type.Array(Type.Object({ from: IsoTime, to: Nullable(IsoTime), reason: Type.String() })),
  disconnectedSince: Nullable(IsoTime),
  lag: Type.Object({
    lastEventAt: Nullable(IsoTime),
    sinceLastEventMs: Nullable(Type.Number({ description: 'now − last event received' })),
    eventDelayMs: Nullable(Type.Number({ description: 'receipt time − event time of the latest applied tunnel event' })),
  }),
  liveness: Type.Object(
    {
      probes: Type.Integer({ description: 'probes of a quiet stream (GET /info + GET /instances)' }),
      probeFailures: Type.Integer(),
      probeMismatches: Type.Integer({ description: 'probes whose listing showed changes the silent stream had not carried' }),
      halfOpenReplaced: Type.Integer({ description: 'streams replaced as half-open' }),
      reconciliations: Type.Integer({ description: 'periodic GET /instances reconciliations' }),
      reconcileFailures: Type.Integer(),
      corrected: Type.Integer({ description: 'tunnels corrected from a listing (events lost upstream)' }),
      tombstoned: Type.Integer({ description: 'tunnels deleted because the master no longer listed them' }),
      infoFailures: Type.Integer(),
      lastProbeAt: Nullable(IsoTime),
      lastReconcileAt: Nullable(IsoTime),
    },
    { description: 'liveness and reconciliation counters (docs/actors.md)' },
  ),
});
export type EndpointView = Static<typeof EndpointView>;

export const TunnelView = Type.Object({
  endpointId: Type.Integer(),
  instanceId: Type.String(),
  alias: Type.String(),
  type: Type.String(),
  url: Type.String(),
  meta: Type.Object({
    peer: Type.Object({ sid: Type.String(), type: Type.String(), alias: Type.String() }),
    tags: Type.Record(Type.String(), Type.String()),
  }),
  status: Nullable(Type.String()),
  deleted: Type.Boolean(),
  counters: Counters,
  traffic: Counters,
  logLines: Type.Integer(),
  statusChanges: Type.Array(Type.Object({ at: IsoTime, status: Type.String() })),
  mode: Type.Number(),
  ping: Type.Number(),
  pool: Type.Number(),
  tcps: Type.Number(),
  udps: Type.Number(),
  rates: Counters,
  updatedAt: Nullable(IsoTime),
});
export type TunnelView = Static<typeof TunnelView>;

export const TrafficResponse = Type.Object({
  hours: Type.Integer(),
  points: Type.Array(
    Type.Object({
      hour: IsoTime,
      tcprx: Type.Number(),
      tcptx: Type.Number(),
      udprx: Type.Number(),
      udptx: Type.Number(),
      open: Type.Boolean({ description: 'the current hour, from memory' }),
    }),
  ),
});
export type TrafficResponse = Static<typeof TrafficResponse>;

export const LogsResponse = Type.Object({
  items: Type.Array(Type.Object({ time: IsoTime, level: Type.String(), message: Type.String() })),
  nextCursor: Nullable(Type.String()),
});

export const EndpointLogsResponse = Type.Object({
  items: Type.Array(Type.Object({ instanceId: Type.String(), time: IsoTime, level: Type.String(), message: Type.String() })),
  nextCursor: Nullable(Type.String()),
});

const TopTunnel = Type.Object({
  endpointId: Type.Integer(),
  instanceId: Type.String(),
  alias: Type.String(),
  status: Nullable(Type.String()),
  bytesPerSecond: Type.Number(),
  trafficBytes: Type.Number(),
});

export const DashboardResponse = Type.Object({
  generatedAt: IsoTime,
  endpoints: Type.Object({ total: Type.Integer(), connected: Type.Integer(), byState: Type.Record(Type.String(), Type.Integer()) }),
  tunnels: Type.Object({ total: Type.Integer(), byStatus: Type.Record(Type.String(), Type.Integer()) }),
  traffic: Type.Object({ today: Counters, last24h: Counters, rates: Counters }),
  topTunnels: Type.Object({ byRate: Type.Array(TopTunnel), byTraffic: Type.Array(TopTunnel) }),
});

const QueueView = Type.Object({ depth: Type.Number(), oldestAgeMs: Type.Number(), spilledRows: Type.Number(), spillBytes: Type.Number() });

export const StatsResponse = Type.Object(
  {
    processedEvents: Type.Number(),
    memoryHits: Type.Number(),
    memoryErrors: Type.Number(),
    rejectedEvents: Type.Number(),
    databaseWrites: Type.Object({
      statements: Type.Number(),
      rows: Type.Number(),
      /** The same, by writer (config writer, state flusher, log batcher, rollup, retention, fallback). */
      byWriter: Type.Record(Type.String(), Type.Object({ statements: Type.Number(), rows: Type.Number() })),
    }),
    databaseErrors: Type.Number(),
    fallbacks: Type.Number(),
    hitRate: Type.Number(),
    errorRate: Type.Number(),
    averageProcessingUs: Type.Number(),
    p99ProcessingUs: Type.Number(),
    queues: Type.Record(Type.String(), QueueView),
    endpoints: Type.Integer(),
    tunnels: Type.Integer(),
    liveFeed: Type.Object({
      subscribers: Type.Integer(),
      published: Type.Number(),
      delivered: Type.Number(),
      slowClientsCut: Type.Number(),
      pendingTunnelStates: Type.Integer(),
    }),
    uptimeSeconds: Type.Number(),
  },
  { additionalProperties: true },
);

const IngestView = Type.Object(
  {
    backlogBytes: Type.Number({ description: 'SSE input received and not yet processed, bytes (all connections)' }),
    backlogChunks: Type.Number(),
    backlogConnections: Type.Number(),
    oldestAgeMs: Type.Number(),
    maxBacklogBytes: Type.Number(),
    inlineChunks: Type.Number({ description: 'chunks processed at once because the backlog was over its bound' }),
    inlineBytes: Type.Number(),
    slices: Type.Number(),
    longestSliceMs: Type.Number(),
    discardedBytes: Type.Number({ description: 'input still queued when its stream ended on a callback error' }),
  },
  { additionalProperties: true },
);

export const QueuesResponse = Type.Object({
  queues: Type.Record(Type.String(), QueueView),
  pendingRows: Type.Number({ description: 'rows queued in memory and on disk, all queues' }),
  spilledRows: Type.Number(),
  spillBytes: Type.Number(),
  oldestAgeMs: Type.Number(),
  ingest: Type.Union([IngestView, Type.Null()], { description: 'the ingest backlog (src/runtime/ingest-scheduler.ts); null when input is processed as it arrives' }),
});

export const PerformanceResponse = Type.Object(
  {
    processedEvents: Type.Number(),
    eventsPerSecond: Type.Number({ description: 'since the previous call of this route (or since start)' }),
    hitRate: Type.Number({ description: 'events answered by the memory path / events processed' }),
    errorRate: Type.Number({ description: '(memory errors + database errors) / events processed' }),
    averageProcessingUs: Type.Number(),
    p99ProcessingUs: Type.Number(),
    lastProcessedAt: Nullable(IsoTime),
  },
  { additionalProperties: true },
);

export const ActorSummary = Type.Object({
  id: Type.String(),
  kind: Type.Union([Type.Literal('fleet'), Type.Literal('endpoint'), Type.Literal('tunnel'), Type.Literal('supervisor')]),
  parent: Nullable(Type.String()),
  value: Type.Unknown(),
  status: Type.String({ description: 'active | done | error | stopped' }),
});
export const ActorsResponse = Type.Object({ actors: Type.Array(ActorSummary) });
export const ActorDetail = Type.Object({
  id: Type.String(),
  kind: ActorSummary.properties.kind,
  parent: Nullable(Type.String()),
  value: Type.Unknown(),
  status: Type.String(),
  context: Type.Unknown(),
});

export const HealthResponse = Type.Object({ status: Type.Literal('ok'), uptimeSeconds: Type.Number() });
export const ReadyResponse = Type.Object({
  status: Type.Union([Type.Literal('ready'), Type.Literal('not-ready')]),
  checks: Type.Object({ database: Type.Boolean(), actorsRestored: Type.Boolean() }),
});

export const errorResponses = {
  400: ErrorResponse,
  401: ErrorResponse,
  404: ErrorResponse,
  500: ErrorResponse,
};
