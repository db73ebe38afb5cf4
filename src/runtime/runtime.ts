/**
 * The runtime: builds the actor system (fleet → endpoints → tunnels, plus the persistence supervisors) and
 * supplies every effect the machines declare — the SSE connection, the liveness probe, the database
 * writers — with `.provide()`. It is the one place where machines meet I/O; the HTTP API reads from it.
 */
import { createActor, fromCallback, fromPromise, type Actor, type AnyActorRef } from 'xstate';
import {
  endpointMachine,
  routeBatchInPlace,
  stopTunnels,
  type EndpointContext,
  type EndpointEvent,
  type EndpointInput,
  type ProbeInput,
  type ProbeResult,
  type StreamCloseKind,
} from '../../actors/endpoint.machine.js';
import { fleetMachine, type SupervisorInputs } from '../../actors/fleet.machine.js';
import { batcherMachine } from '../../actors/supervisors/batcher.machine.js';
import { scheduledJobMachine } from '../../actors/supervisors/scheduled-job.machine.js';
import {
  tunnelMachine,
  type ConfigChangeParams,
  type LogLineParams,
  type MemoryFailureParams,
  type StateChangeParams,
  type StatusChangeParams,
  type TunnelContext,
} from '../../actors/tunnel.machine.js';
import type { MasterInfo, ParsedEvent } from '../../actors/model.js';
import { HOUR_MS } from '../../actors/traffic.js';
import { openEventStream, type StreamCloseResult } from '../ingest/event-stream.js';
import { EventDelivery } from './delivery.js';
import { IngestScheduler, type IngestSchedulerOptions, type IngestStats } from './ingest-scheduler.js';
import { RecentEvents, type RecentEvent } from './recent-events.js';
import type { JournalWriter } from '../ingest/journal.js';
import { MasterAgentPool, getInfo, listInstances } from '../ingest/master-api.js';
import type { Persister, SupervisorName } from '../persistence/persister.js';
import { Stats } from './stats.js';
import { ChangeFeed, stateName } from './change-feed.js';
import { actorId } from '../../actors/model.js';

/** An endpoint as the registry knows it, with its key in clear (held in memory only, never logged). */
export interface EndpointDefinition {
  id: number;
  name: string;
  baseUrl: string;
  apiKey: string;
  insecureTls: boolean;
  enabled: boolean;
}

export interface RuntimeOptions {
  now?: () => number;
  /** Shared with the persister, so one store holds every counter. */
  stats?: Stats;
  persister?: Persister;
  journal?: JournalWriter;
  endpointSettings?: EndpointInput['settings'];
  supervisors?: SupervisorInputs;
  /**
   * Called when an endpoint's state or a tunnel's status, configuration or state changes (with the actor id).
   * Setting it costs a call per change on the hot path; the live feed uses `runtime.changes` instead, which costs
   * nothing while nobody listens.
   */
  onChange?: (kind: 'endpoint' | 'tunnel', id: string) => void;
  /** The live change feed (default: a new one). */
  changes?: ChangeFeed;
  /** What `/info` said about a master (on connect and every `infoRefreshMs`); the service stores it on the endpoint row. */
  onMasterInfo?: (endpointId: number, info: MasterInfo) => void;
  /** Bound on each `/info` and `/instances` call (default 10 s). */
  masterRequestTimeoutMs?: number;
  /** Latest events kept in memory per endpoint (`GET /api/endpoints/:id/events`); default 1,000, 0: none. */
  recentEventsPerEndpoint?: number;
  /**
   * The SSE input is parsed and delivered in time-boxed slices (src/runtime/ingest-scheduler.ts) so that HTTP and
   * database replies interleave with ingest; `false`: in each socket's callback, as it arrives.
   */
  ingest?: IngestSchedulerOptions | false;
}

/** Bound on each `/info` and `/instances` call (a real `/info` takes ~100 ms; a big listing a few MB). */
const MASTER_REQUEST_TIMEOUT_MS = 10_000;

const CLOSE_KIND: Record<string, StreamCloseKind> = {
  auth: 'auth',
  http: 'http',
  'not-sse': 'not-sse',
  refused: 'refused',
  dns: 'dns',
  timeout: 'timeout',
  tls: 'tls',
  reset: 'reset',
  network: 'network',
};

function toClosedEvent(result: StreamCloseResult, at: number): EndpointEvent | null {
  if (result.kind === 'closed-by-us') return null;
  if (result.kind === 'eof') return { type: 'stream.closed', at, kind: result.afterShutdown ? 'shutdown' : 'eof' };
  const kind = CLOSE_KIND[result.kind] ?? 'network';
  const message = 'status' in result ? `HTTP ${result.status}` : 'message' in result ? String(result.message) : result.kind;
  return { type: 'stream.closed', at, kind, message };
}

export class Runtime {
  readonly stats: Stats;
  readonly now: () => number;
  readonly fleet: Actor<typeof fleetMachine>;
  /** Endpoint and tunnel changes for the live feed (`GET /api/events`). */
  readonly changes: ChangeFeed;
  /** Where the streams' input waits for its slice (null: processed in the socket callbacks). */
  readonly ingest: IngestScheduler | null;
  private readonly definitions = new Map<number, EndpointDefinition>();
  /** Keep-alive connections for `/info` and `/instances`, one small pool per master origin. */
  private readonly agents = new MasterAgentPool();
  /** Endpoint actors whose state the feed follows: the unsubscribe, and the last state name published. */
  private readonly endpointWatches = new Map<number, { unsubscribe: () => void; last: string }>();
  /** The ring of the latest events of each endpoint; it outlives reconnects, not the endpoint's removal. */
  private readonly recent = new Map<number, RecentEvents>();
  private stopped = false;

  constructor(private readonly options: RuntimeOptions = {}) {
    this.now = options.now ?? Date.now;
    this.stats = options.stats ?? new Stats();
    const persister = options.persister;
    this.changes = options.changes ?? new ChangeFeed({ now: this.now });
    this.ingest = options.ingest === false ? null : new IngestScheduler({ now: this.now, ...options.ingest });
    const tunnel = tunnelMachine.provide({ actions: this.tunnelEffects(persister) });
    const endpoint = endpointMachine.provide({
      actors: {
        tunnel,
        eventStream: fromCallback<EndpointEvent, { endpointId: number; connection: number }>(({ input, sendBack, self }) =>
          this.connect(input.endpointId, sendBack, self),
        ),
        probeMaster: fromPromise(async ({ input, signal }) => this.queryMaster(input, signal)),
      },
      actions: {
        ...(persister ? { persistOffline: persister.endpointEffects.persistOffline } : {}),
        // Master facts from `/info` (on arrival, refreshed periodically) go to the registry row, if anyone keeps it.
        persistMaster: (_, params) => {
          if (params.info) options.onMasterInfo?.(params.endpointId, { ...params.info, masterId: params.masterId, alias: params.alias });
        },
      },
    });
    const batcher = batcherMachine.provide({
      actors: {
        writeBatch: fromPromise(async ({ input }) => {
          if (!persister) return { rows: 0, remaining: 0, at: this.now() };
          return persister.writeBatch(input.name as SupervisorName);
        }),
      },
    });
    const scheduledJob = scheduledJobMachine.provide({
      actors: {
        job: fromPromise(async ({ input }) => {
          if (!persister) return { rows: 0, at: this.now() };
          return input.name === 'hourlyRollup' ? persister.rollup() : persister.retention();
        }),
        untilNextRun: fromPromise(async ({ input }) => {
          const now = this.now();
          const next = Math.floor(now / input.periodMs) * input.periodMs + input.periodMs + input.offsetMs;
          return Math.max(1_000, next - now);
        }),
      },
    });
    const fleet = fleetMachine.provide({
      actors: { endpoint, batcher, scheduledJob },
      actions: {
        // A restarted endpoint actor is a new actor: follow it once the fleet has spawned it.
        endpointFailed: (_, params) => {
          if (params.restarted) queueMicrotask(() => this.watchEndpoint(params.endpointId));
        },
      },
    });
    this.fleet = createActor(fleet, { input: { supervisors: options.supervisors } });
    // The root's owner of last resort: an error that escaped every supervisor is counted, never thrown.
    this.fleet.subscribe({ error: () => this.stats.add('memoryErrors') });
  }

  start(): void {
    this.fleet.start();
    const supervisors = this.fleet.getSnapshot().context.supervisors;
    if (this.options.persister) {
      for (const name of ['configWriter', 'stateFlusher', 'logBatcher'] as const) {
        const ref = supervisors[name];
        if (ref) this.options.persister.attachSupervisor(name, ref as never);
      }
    }
  }

  // ---- registry ---------------------------------------------------------------------------------------

  addEndpoint(def: EndpointDefinition, restore?: { tunnels?: TunnelContext[] }): void {
    this.definitions.set(def.id, def);
    if (!this.recent.has(def.id)) this.recent.set(def.id, new RecentEvents(this.options.recentEventsPerEndpoint ?? 1_000));
    this.fleet.send({
      type: 'fleet.add_endpoint',
      input: { endpointId: def.id, name: def.name, enabled: def.enabled, settings: this.options.endpointSettings, restoreTunnels: restore?.tunnels },
    });
    this.watchEndpoint(def.id);
    if (this.changes.active) {
      const stateName = this.endpointWatches.get(def.id)?.last ?? '';
      this.changes.publish('endpoint.added', def.id, null, { name: def.name, enabled: def.enabled, stateName });
    }
  }

  /** A changed URL, key or TLS choice reconnects (and leaves `authFailed`); a rename does not. */
  updateEndpoint(def: EndpointDefinition): void {
    const before = this.definitions.get(def.id);
    this.definitions.set(def.id, def);
    const ref = this.endpointRef(def.id);
    if (!ref || !before) return;
    if (before.enabled !== def.enabled) ref.send({ type: def.enabled ? 'endpoint.enable' : 'endpoint.disable', at: this.now() });
    const reconnect = before.baseUrl !== def.baseUrl || before.apiKey !== def.apiKey || before.insecureTls !== def.insecureTls;
    if (reconnect) this.releaseAgents(before.baseUrl);
    if (reconnect || before.name !== def.name) ref.send({ type: 'endpoint.reconfigure', at: this.now(), name: def.name });
  }

  /** Closes pooled REST connections to an origin no registered endpoint uses any more (or whose TLS choice changed). */
  private releaseAgents(baseUrl: string): void {
    const origin = new URL(baseUrl).origin;
    for (const d of this.definitions.values()) if (new URL(d.baseUrl).origin === origin && d.baseUrl !== baseUrl) return;
    this.agents.release(baseUrl);
  }

  removeEndpoint(id: number): void {
    this.endpointWatches.get(id)?.unsubscribe();
    this.endpointWatches.delete(id);
    this.fleet.send({ type: 'fleet.remove_endpoint', endpointId: id });
    const removed = this.definitions.get(id);
    this.definitions.delete(id);
    this.recent.delete(id);
    if (removed) this.releaseAgents(removed.baseUrl);
    this.changes.publish('endpoint.removed', id, null, {});
  }

  reconnect(id: number): void {
    this.endpointRef(id)?.send({ type: 'endpoint.reconnect', at: this.now() });
  }

  // ---- reads ------------------------------------------------------------------------------------------

  /** The ingest backlog (input received, not yet processed) and how often it overflowed; null without a scheduler. */
  ingestStats(): IngestStats | null {
    return this.ingest?.stats() ?? null;
  }

  /** The endpoint's latest events, newest first (null: no such endpoint). */
  recentEvents(id: number, limit?: number): { capacity: number; total: number; items: RecentEvent[] } | null {
    const ring = this.recent.get(id);
    return ring ? { capacity: ring.capacity, total: ring.total, items: ring.latest(limit) } : null;
  }

  endpointRef(id: number) {
    return this.fleet.getSnapshot().context.endpoints[String(id)];
  }

  endpoints(): EndpointContext[] {
    return Object.values(this.fleet.getSnapshot().context.endpoints).map((e) => e.getSnapshot().context);
  }

  endpointState(id: number): { value: unknown; context: EndpointContext } | null {
    const ref = this.endpointRef(id);
    if (!ref) return null;
    const snap = ref.getSnapshot();
    return { value: snap.value, context: snap.context };
  }

  /**
   * The live contexts of an endpoint's tunnels (and of one, below): read them at once. The tunnel updates them in
   * place, nested values included (counters, traffic, rates, buckets): copy what must be kept.
   */
  tunnels(endpointId: number): TunnelContext[] {
    const ref = this.endpointRef(endpointId);
    if (!ref) return [];
    return Object.values(ref.getSnapshot().context.tunnels).map((t) => t.getSnapshot().context);
  }

  tunnel(endpointId: number, instanceId: string): TunnelContext | null {
    const ref = this.endpointRef(endpointId)?.getSnapshot().context.tunnels[instanceId];
    return ref ? ref.getSnapshot().context : null;
  }

  // ---- change feed ------------------------------------------------------------------------------------

  /**
   * The tunnel effects: the persister's, plus the change feed. With nobody listening (and no `onChange`) the
   * added cost per effect is one boolean check.
   */
  private tunnelEffects(persister: Persister | undefined) {
    const feed = this.changes;
    const onChange = this.options.onChange;
    const p = persister?.tunnelEffects;
    return {
      persistConfig: (args: unknown, params: ConfigChangeParams) => {
        p?.persistConfig(args, params);
        if (feed.active) feed.tunnelConfig(params.context);
        onChange?.('tunnel', actorId.tunnel(params.context.endpointId, params.context.instanceId));
      },
      persistStatusChange: (args: unknown, params: StatusChangeParams) => {
        p?.persistStatusChange(args, params);
        if (feed.active) feed.tunnelStatus(params.endpointId, params.instanceId, params.status, params.at);
      },
      queueState: (args: unknown, params: StateChangeParams) => {
        p?.queueState(args, params);
        if (feed.active) feed.tunnelState(params.context);
        onChange?.('tunnel', actorId.tunnel(params.context.endpointId, params.context.instanceId));
      },
      queueLog: (args: unknown, params: LogLineParams) => p?.queueLog(args, params),
      memoryFailed: (args: unknown, params: MemoryFailureParams) => p?.memoryFailed(args, params),
    };
  }

  /** Follows an endpoint actor's state for the feed; its snapshot changes on every event, so bail out early. */
  private watchEndpoint(id: number): void {
    this.endpointWatches.get(id)?.unsubscribe();
    const ref = this.endpointRef(id);
    if (!ref) return;
    const watch = { unsubscribe: () => {}, last: '' };
    const subscription = ref.subscribe({
      next: (snapshot) => {
        if (!this.changes.active && !this.options.onChange) return;
        const name = stateName(snapshot.value);
        if (name === watch.last) return;
        watch.last = name;
        this.changes.endpointState(snapshot.context, snapshot.value);
        this.options.onChange?.('endpoint', actorId.endpoint(id));
      },
      error: () => {},
    });
    watch.unsubscribe = () => subscription.unsubscribe();
    watch.last = stateName(ref.getSnapshot().value);
    this.endpointWatches.set(id, watch);
  }

  // ---- effects ----------------------------------------------------------------------------------------

  private connect(endpointId: number, sendBack: (event: EndpointEvent) => void, stream: AnyActorRef): () => void {
    const def = this.definitions.get(endpointId);
    if (!def) {
      queueMicrotask(() => sendBack({ type: 'stream.closed', at: this.now(), kind: 'network', message: 'endpoint not registered' }));
      return () => {};
    }
    const journal = this.options.journal?.endpoint(def.name);
    // The instance events of one piece of input reach the endpoint as one batch (src/runtime/delivery.ts).
    // A live endpoint takes a batch in place (`routeBatchInPlace`); anything else is sent. Only while this stream
    // actor runs: XState drops what a stopped one sends back, and so must the shortcut.
    const endpoint = this.endpointRef(endpointId);
    const toEndpoint = (event: EndpointEvent): void => {
      if (event.type === 'stream.batch' && endpoint && stream.getSnapshot().status === 'active' && routeBatchInPlace(endpoint, event.items)) return;
      sendBack(event);
    };
    const delivery = new EventDelivery(this.stats, this.now, toEndpoint);
    const ring = this.recent.get(endpointId);
    const deliver = (parsed: ParsedEvent) => {
      ring?.record(parsed, this.now());
      delivery.deliver(parsed);
    };
    const handle = openEventStream({
      baseUrl: def.baseUrl,
      apiKey: def.apiKey,
      insecureTls: def.insecureTls,
      now: this.now,
      scheduler: this.ingest ?? undefined,
      onInputProcessed: () => delivery.flush(),
      onOpen: () => {
        journal?.open(def.baseUrl);
        sendBack({ type: 'stream.opened', at: this.now() });
      },
      onRetry: (ms) => journal?.retry(ms),
      onEvent: (parsed, raw) => {
        journal?.event('instance', raw);
        deliver(parsed);
      },
      onRejected: (rejection) => {
        journal?.rejected(rejection);
        deliver({ kind: 'rejected', reason: rejection.reason });
      },
      onClose: (result) => {
        journal?.close(result);
        delivery.flush();
        const event = toClosedEvent(result, this.now());
        if (event && !this.stopped) sendBack(event);
      },
    });
    return () => {
      // Closing processes what the scheduler still holds for this stream; then nothing may stay gathered.
      handle.close();
      delivery.flush();
    };
  }

  /**
   * `GET /info` and/or `GET /instances` for the endpoint machine: its liveness probe (both, /info first), the
   * info refresh, and the periodic reconciliation. Failures throw (the machine counts them); the machine
   * compares the listing with its tunnels and decides (docs/actors.md, "Liveness").
   */
  private async queryMaster(input: ProbeInput, signal: AbortSignal): Promise<ProbeResult> {
    const def = this.definitions.get(input.endpointId);
    if (!def) throw new Error('endpoint not registered');
    const timeoutMs = this.options.masterRequestTimeoutMs ?? MASTER_REQUEST_TIMEOUT_MS;
    const options = { insecureTls: def.insecureTls, timeoutMs, signal, agents: this.agents };
    const info = input.info ? (await getInfo(def.baseUrl, def.apiKey, options)).info : null;
    if (!input.instances) return { info, instances: null, unreadableIds: [], complete: true, sentAt: this.now(), receivedAt: this.now() };
    const sentAt = this.now();
    const listed = await listInstances(def.baseUrl, def.apiKey, options);
    if (info && !info.masterId && listed.masterId) info.masterId = listed.masterId; // `mid` is "" on a first run (§3.6)
    const unreadableIds = listed.rejected.flatMap((r) => (r.id === null ? [] : [r.id]));
    const complete = listed.rejected.every((r) => r.id !== null);
    return { info, instances: listed.instances, unreadableIds, complete, sentAt, receivedAt: this.now() };
  }

  /** Stops reading, then writes everything queued. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const ref of Object.values(this.fleet.getSnapshot().context.endpoints)) ref.send({ type: 'endpoint.disable', at: this.now() });
    try {
      await this.options.persister?.close();
    } finally {
      for (const watch of this.endpointWatches.values()) watch.unsubscribe();
      this.endpointWatches.clear();
      this.changes.close();
      // Tunnel actors are not XState children of their endpoint (endpoint.machine.ts, `createTunnel`).
      for (const ref of Object.values(this.fleet.getSnapshot().context.endpoints)) stopTunnels(ref);
      this.fleet.stop();
      this.agents.destroy();
    }
  }
}

export const DEFAULT_SUPERVISORS = (s: { logBatchSize: number; logFlushMs: number; stateFlushMs: number }): SupervisorInputs => ({
  configWriter: { name: 'configWriter', batchSize: 1, intervalMs: 0 },
  stateFlusher: { name: 'stateFlusher', batchSize: Number.MAX_SAFE_INTEGER, intervalMs: s.stateFlushMs },
  logBatcher: { name: 'logBatcher', batchSize: s.logBatchSize, intervalMs: s.logFlushMs },
  hourlyRollup: { name: 'hourlyRollup', periodMs: HOUR_MS, offsetMs: 60_000 },
  retention: { name: 'retention', periodMs: HOUR_MS, offsetMs: 5 * 60_000 },
});
