/**
 * The runtime: builds the actor system (fleet → endpoints → tunnels, plus the persistence supervisors) and
 * supplies every effect the machines declare — the SSE connection, the liveness probe, the database
 * writers — with `.provide()`. It is the one place where machines meet I/O; the HTTP API reads from it.
 */
import { createActor, fromCallback, fromPromise, type Actor } from 'xstate';
import { endpointMachine, type EndpointContext, type EndpointEvent, type EndpointInput, type StreamCloseKind } from '../../actors/endpoint.machine.js';
import { fleetMachine, type SupervisorInputs } from '../../actors/fleet.machine.js';
import { batcherMachine } from '../../actors/supervisors/batcher.machine.js';
import { scheduledJobMachine } from '../../actors/supervisors/scheduled-job.machine.js';
import { tunnelMachine, type TunnelContext } from '../../actors/tunnel.machine.js';
import type { ParsedEvent } from '../../actors/model.js';
import { HOUR_MS } from '../../actors/traffic.js';
import { openEventStream, type StreamCloseResult } from '../ingest/event-stream.js';
import type { JournalWriter } from '../ingest/journal.js';
import { getInfo, listInstances } from '../ingest/master-api.js';
import type { Persister, SupervisorName } from '../persistence/persister.js';
import { Stats } from './stats.js';

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
  /** Called whenever an actor's snapshot changes (the live feed, inspection). */
  onChange?: (kind: 'endpoint' | 'tunnel', id: string) => void;
}

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
  private readonly definitions = new Map<number, EndpointDefinition>();
  private stopped = false;

  constructor(private readonly options: RuntimeOptions = {}) {
    this.now = options.now ?? Date.now;
    this.stats = options.stats ?? new Stats();
    const persister = options.persister;
    const tunnel = persister ? tunnelMachine.provide({ actions: persister.tunnelEffects }) : tunnelMachine;
    const endpoint = endpointMachine.provide({
      actors: {
        tunnel,
        eventStream: fromCallback<EndpointEvent, { endpointId: number; connection: number }>(({ input, sendBack }) =>
          this.connect(input.endpointId, sendBack),
        ),
        probeMaster: fromPromise(async ({ input }) => this.probe(input.endpointId)),
      },
      actions: persister ? { persistOffline: persister.endpointEffects.persistOffline } : {},
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
    const fleet = fleetMachine.provide({ actors: { endpoint, batcher, scheduledJob } });
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
    this.fleet.send({
      type: 'fleet.add_endpoint',
      input: { endpointId: def.id, name: def.name, enabled: def.enabled, settings: this.options.endpointSettings, restoreTunnels: restore?.tunnels },
    });
  }

  /** A changed URL, key or TLS choice reconnects (and leaves `authFailed`); a rename does not. */
  updateEndpoint(def: EndpointDefinition): void {
    const before = this.definitions.get(def.id);
    this.definitions.set(def.id, def);
    const ref = this.endpointRef(def.id);
    if (!ref || !before) return;
    if (before.enabled !== def.enabled) ref.send({ type: def.enabled ? 'endpoint.enable' : 'endpoint.disable', at: this.now() });
    const reconnect = before.baseUrl !== def.baseUrl || before.apiKey !== def.apiKey || before.insecureTls !== def.insecureTls;
    if (reconnect || before.name !== def.name) ref.send({ type: 'endpoint.reconfigure', at: this.now(), name: def.name });
  }

  removeEndpoint(id: number): void {
    this.fleet.send({ type: 'fleet.remove_endpoint', endpointId: id });
    this.definitions.delete(id);
  }

  reconnect(id: number): void {
    this.endpointRef(id)?.send({ type: 'endpoint.reconnect', at: this.now() });
  }

  // ---- reads ------------------------------------------------------------------------------------------

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

  tunnels(endpointId: number): TunnelContext[] {
    const ref = this.endpointRef(endpointId);
    if (!ref) return [];
    return Object.values(ref.getSnapshot().context.tunnels).map((t) => t.getSnapshot().context);
  }

  tunnel(endpointId: number, instanceId: string): TunnelContext | null {
    const ref = this.endpointRef(endpointId)?.getSnapshot().context.tunnels[instanceId];
    return ref ? ref.getSnapshot().context : null;
  }

  // ---- effects ----------------------------------------------------------------------------------------

  private connect(endpointId: number, sendBack: (event: EndpointEvent) => void): () => void {
    const def = this.definitions.get(endpointId);
    if (!def) {
      queueMicrotask(() => sendBack({ type: 'stream.closed', at: this.now(), kind: 'network', message: 'endpoint not registered' }));
      return () => {};
    }
    const journal = this.options.journal?.endpoint(def.name);
    const deliver = (parsed: ParsedEvent) => {
      const started = performance.now();
      sendBack({ type: 'stream.event', parsed, receivedAt: this.now() });
      this.stats.processed(this.now(), Math.round((performance.now() - started) * 1000), parsed.kind !== 'rejected');
      if (parsed.kind === 'rejected') this.stats.add('rejectedEvents');
    };
    const handle = openEventStream({
      baseUrl: def.baseUrl,
      apiKey: def.apiKey,
      insecureTls: def.insecureTls,
      now: this.now,
      onOpen: () => {
        journal?.open(def.baseUrl);
        sendBack({ type: 'stream.opened', at: this.now() });
        void this.refreshInfo(endpointId);
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
        const event = toClosedEvent(result, this.now());
        if (event && !this.stopped) sendBack(event);
      },
    });
    return () => handle.close();
  }

  private async refreshInfo(endpointId: number): Promise<void> {
    const def = this.definitions.get(endpointId);
    if (!def) return;
    try {
      const { info } = await getInfo(def.baseUrl, def.apiKey, { insecureTls: def.insecureTls });
      this.endpointRef(endpointId)?.send({ type: 'master.info', info, at: this.now() });
    } catch {
      // /info is informative; the stream carries on without it and the next probe retries.
    }
  }

  /** Liveness probe for a quiet stream, and reconciliation with `GET /instances` (events can be lost upstream). */
  private async probe(endpointId: number): Promise<{ instances: null; at: number }> {
    const def = this.definitions.get(endpointId);
    if (!def) throw new Error('endpoint not registered');
    const { info } = await getInfo(def.baseUrl, def.apiKey, { insecureTls: def.insecureTls, timeoutMs: 10_000 });
    const listed = await listInstances(def.baseUrl, def.apiKey, { insecureTls: def.insecureTls, timeoutMs: 10_000 });
    const ref = this.endpointRef(endpointId);
    ref?.send({ type: 'master.info', info, at: this.now() });
    ref?.send({ type: 'master.instances', instances: listed.instances, at: this.now() });
    return { instances: null, at: this.now() };
  }

  /** Stops reading, then writes everything queued. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const ref of Object.values(this.fleet.getSnapshot().context.endpoints)) ref.send({ type: 'endpoint.disable', at: this.now() });
    await this.options.persister?.drain();
    this.fleet.stop();
  }
}

export const DEFAULT_SUPERVISORS = (s: { logBatchSize: number; logFlushMs: number; stateFlushMs: number }): SupervisorInputs => ({
  configWriter: { name: 'configWriter', batchSize: 1, intervalMs: 0 },
  stateFlusher: { name: 'stateFlusher', batchSize: Number.MAX_SAFE_INTEGER, intervalMs: s.stateFlushMs },
  logBatcher: { name: 'logBatcher', batchSize: s.logBatchSize, intervalMs: s.logFlushMs },
  hourlyRollup: { name: 'hourlyRollup', periodMs: HOUR_MS, offsetMs: 60_000 },
  retention: { name: 'retention', periodMs: HOUR_MS, offsetMs: 5 * 60_000 },
});
