/**
 * The tunnel machine: one actor per NodePass instance, keyed by (endpoint, instance id).
 *
 * States mirror the instance's status (`running`, `stopped`, `error`) plus the final `deleted` tombstone.
 * Every event that carries an instance — `log` included, since NodePass reports `error` mostly there —
 * is an idempotent upsert of the full snapshot, guarded by the event's own time: an event older than the
 * last applied one changes nothing (its log line still counts, see log-identity.ts). Counter arithmetic is
 * in traffic.ts; this file only routes and records.
 *
 * Effects are named stubs (`persistConfig`, `queueState`, `queueLog`, `persistStatusChange`,
 * `memoryFailed`): the runtime supplies them with `.provide()`, replay and tests supply their own.
 */
import { assign, enqueueActions, setup, type ActorRefFrom } from 'xstate';
import { lineHash, newLogDedupe, sightLogLine, type LogDedupe } from './log-identity.js';
import {
  ZERO_COUNTERS,
  type Counters,
  type InstanceEvent,
  type InstanceMeta,
  type InstanceStatus,
} from './model.js';
import type { TunnelKey } from './records.js';
import {
  addCounters,
  addToHourBuckets,
  applySample,
  hourKeyOf,
  newCounterTrack,
  pickCounters,
  ratesOf,
  startRun,
  type CounterTrack,
  type SampleFlag,
} from './traffic.js';

export interface TunnelSettings {
  /** How long a log line's identity is remembered for de-duplication (Infinity in replay). */
  logDedupeWindowMs: number;
  /** How many status changes the context keeps (all of them are persisted). */
  statusHistoryLimit: number;
}

export const DEFAULT_TUNNEL_SETTINGS: TunnelSettings = { logDedupeWindowMs: 10 * 60_000, statusHistoryLimit: 100 };

export interface StatusChange {
  at: number;
  status: InstanceStatus;
}

export interface TunnelContext extends TunnelKey {
  alias: string;
  type: string;
  url: string;
  config: string;
  restart: boolean;
  meta: InstanceMeta;
  /** null until the first event for the instance has been applied. */
  status: InstanceStatus | null;
  mode: number;
  ping: number;
  pool: number;
  tcps: number;
  udps: number;
  /** Last absolute counters as NodePass reported them. */
  counters: Counters;
  /** Sum of accepted deltas. */
  traffic: Counters;
  /** Bytes per second over the last interval with a sample. */
  rates: Counters;
  /** Deltas per UTC hour (keys: hour start, epoch ms) for the last few hours. */
  hours: Record<string, Counters>;
  track: CounterTrack;
  /** Event time of the last applied state (staleness guard), 0 before any. */
  stateAt: number;
  /** Clock time when the state last changed. */
  updatedAt: number;
  logLines: number;
  logDedupe: LogDedupe;
  statusChanges: StatusChange[];
  deleted: boolean;
  deletedAt: number | null;
  /** What was deliberately not applied, by reason. */
  ignored: { stale: number; duplicateLog: number };
  /** Counter anomalies noticed (see traffic.ts). */
  anomalies: { resets: number; decreases: number; resetJumps: number; uncertainJumps: number };
  settings: TunnelSettings;
}

export type TunnelEvent =
  | { type: 'tunnel.observe'; event: InstanceEvent; receivedAt: number; connection: number }
  | { type: 'tunnel.tombstone'; at: number; receivedAt: number; reason: string };

export interface TunnelInput extends TunnelKey {
  settings?: Partial<TunnelSettings>;
  /** A context restored from the database after a restart. */
  restore?: TunnelContext;
}

/** Parameters of the effects, so the runtime knows exactly what changed. */
export interface ConfigChangeParams {
  context: TunnelContext;
  at: number;
}
export interface StateChangeParams {
  context: TunnelContext;
  /** The hour buckets this change touched, with their absolute values. */
  hours: Record<string, Counters>;
}
export interface LogLineParams extends TunnelKey {
  at: number;
  time: string;
  hash: string;
  ordinal: number;
  raw: string;
}
export interface StatusChangeParams extends TunnelKey {
  at: number;
  status: InstanceStatus;
}
export interface MemoryFailureParams extends TunnelKey {
  event: InstanceEvent;
  error: string;
}

// Values every new context starts with, shared and frozen: they are replaced when they change, never
// mutated in place, and sharing them keeps an idle tunnel small (docs/performance.md, memory per idle tunnel).
const EMPTY_META: InstanceMeta = Object.freeze({ peer: Object.freeze({ sid: '', type: '', alias: '' }), tags: Object.freeze({}) }) as InstanceMeta;
const NOTHING_IGNORED: TunnelContext['ignored'] = Object.freeze({ stale: 0, duplicateLog: 0 });
const NO_ANOMALIES: TunnelContext['anomalies'] = Object.freeze({ resets: 0, decreases: 0, resetJumps: 0, uncertainJumps: 0 });
const NO_TRACK: CounterTrack = Object.freeze(newCounterTrack());
const DEFAULT_SETTINGS: TunnelSettings = Object.freeze({ ...DEFAULT_TUNNEL_SETTINGS });
/** Settings objects by the partial settings they were made from: the tunnels of an endpoint share one. */
const settingsCache = new WeakMap<Partial<TunnelSettings>, TunnelSettings>();

function settingsOf(partial: Partial<TunnelSettings> | undefined): TunnelSettings {
  if (!partial) return DEFAULT_SETTINGS;
  let settings = settingsCache.get(partial);
  if (!settings) settingsCache.set(partial, (settings = Object.freeze({ ...DEFAULT_TUNNEL_SETTINGS, ...partial })));
  return settings;
}

export function newTunnelContext(input: TunnelInput): TunnelContext {
  if (input.restore) return { ...input.restore, settings: settingsOf(input.settings) };
  return {
    endpointId: input.endpointId,
    instanceId: input.instanceId,
    alias: '',
    type: '',
    url: '',
    config: '',
    restart: false,
    meta: EMPTY_META,
    status: null,
    mode: 0,
    ping: 0,
    pool: 0,
    tcps: 0,
    udps: 0,
    counters: ZERO_COUNTERS,
    traffic: ZERO_COUNTERS,
    rates: ZERO_COUNTERS,
    hours: {},
    track: NO_TRACK,
    stateAt: 0,
    updatedAt: 0,
    logLines: 0,
    logDedupe: newLogDedupe(),
    statusChanges: [],
    deleted: false,
    deletedAt: null,
    ignored: NOTHING_IGNORED,
    anomalies: NO_ANOMALIES,
    settings: settingsOf(input.settings),
  };
}

/**
 * The fields of the context that one applied (not stale) event sets. Built by `observe`, written into the
 * context by `commitObservation`.
 */
export type AppliedState = Omit<
  Pick<
    TunnelContext,
    | 'alias' | 'type' | 'url' | 'config' | 'restart' | 'meta' | 'status' | 'mode' | 'ping' | 'pool' | 'tcps' | 'udps'
    | 'counters' | 'traffic' | 'rates' | 'hours' | 'track' | 'stateAt' | 'updatedAt' | 'statusChanges' | 'anomalies'
    | 'deleted' | 'deletedAt'
  >,
  'status'
> & { status: InstanceStatus };

/** What one observation does, computed by `observe` below; `commitObservation` applies it. */
export interface Observation {
  /** The new state, or null when the event is stale (older than the state held) and moves nothing. */
  applied: AppliedState | null;
  stale: boolean;
  configChanged: boolean;
  stateChanged: boolean;
  statusChanged: boolean;
  hoursTouched: Record<string, Counters>;
  log: LogLineParams | null;
  /** Log lines taken, duplicates and stale events ignored, by this event (0 or 1 each). */
  logLines: number;
  duplicateLogs: number;
  staleIgnored: number;
}

/** Shared by every observation that touched no hour bucket (never mutated: consumers copy or read). */
const NO_HOURS: Record<string, Counters> = Object.freeze({}) as Record<string, Counters>;

/** Same JSON value, key order included: what comparing the two `JSON.stringify`s says, without building them. */
function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  for (let i = 0; i < ka.length; i++) {
    const k = ka[i]!;
    if (k !== kb[i] || !sameJson((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  }
  return true;
}

const sameMeta = (a: InstanceMeta, b: InstanceMeta): boolean => sameJson(a, b);

/**
 * Computes what one event does to a tunnel. Pure apart from the log de-duplication record, which it updates
 * in place (it is owned by this tunnel alone and would otherwise be copied on every log line). Everything that
 * can fail happens here, before anything is written: a failure leaves the context as it was.
 */
export function observe(
  ctx: TunnelContext,
  event: InstanceEvent,
  receivedAt: number,
  connection: number,
): Observation {
  const result: Observation = {
    applied: null,
    stale: false,
    configChanged: false,
    stateChanged: false,
    statusChanged: false,
    hoursTouched: NO_HOURS,
    log: null,
    logLines: 0,
    duplicateLogs: 0,
    staleIgnored: 0,
  };

  if (event.type === 'log') {
    const hash = lineHash(event.logs);
    const { ordinal } = sightLogLine(
      ctx.logDedupe,
      { time: event.time, hash, at: event.at, connection },
      ctx.settings.logDedupeWindowMs,
    );
    if (ordinal > 0) {
      result.logLines = 1;
      result.log = {
        endpointId: ctx.endpointId,
        instanceId: ctx.instanceId,
        at: event.at,
        time: event.time,
        hash,
        ordinal,
        raw: event.logs,
      };
    } else {
      result.duplicateLogs = 1;
    }
  }

  if (event.at < ctx.stateAt) {
    // An older snapshot than the one we hold: it must not move state or counters back.
    result.stale = true;
    if (event.type !== 'log') result.staleIgnored = 1;
    return result;
  }

  const inst = event.instance;
  const firstSight = ctx.status === null;
  // An unchanged meta keeps the object already held (shared by idle tunnels; the new one is garbage at once).
  const metaSame = sameMeta(inst.meta, ctx.meta);
  const configChanged =
    firstSight ||
    // The baseline sample of a tunnel restored without a stored state: written through with the configuration,
    // like a new tunnel's, so it is durable at once (persister.ts `baselineOf`).
    ctx.track.last === null ||
    inst.alias !== ctx.alias ||
    inst.type !== ctx.type ||
    inst.url !== ctx.url ||
    inst.config !== ctx.config ||
    inst.restart !== ctx.restart ||
    inst.status !== ctx.status ||
    event.type === 'delete' ||
    !metaSame;

  // Counters: a new process run starts when the status leaves `stopped` (traffic.ts rule 4).
  let track = ctx.track;
  if (ctx.status === 'stopped' && inst.status !== 'stopped') track = startRun(track, ctx.counters);
  const sample = applySample(track, inst);
  const delta = sample.delta;
  const moved = delta.tcprx + delta.tcptx + delta.udprx + delta.udptx > 0;
  const hours = moved ? addToHourBuckets(ctx.hours, receivedAt, delta) : ctx.hours;
  if (moved) {
    const key = hourKeyOf(receivedAt);
    const touched: Record<string, Counters> = {};
    touched[key] = hours[key]!;
    result.hoursTouched = touched;
  }

  const statusChanged = inst.status !== ctx.status;
  const statusChanges = statusChanged
    ? [...ctx.statusChanges, { at: event.at, status: inst.status }].slice(-ctx.settings.statusHistoryLimit)
    : ctx.statusChanges;
  const span = ctx.stateAt > 0 ? event.at - ctx.stateAt : 0;
  const isDelete = event.type === 'delete';

  result.applied = {
    // Equal strings keep the ones already held: the event's copies then die young instead of being kept until
    // the next event and promoted to the old generation (GC was the largest cost of ingest, docs/performance.md).
    alias: inst.alias === ctx.alias ? ctx.alias : inst.alias,
    type: inst.type === ctx.type ? ctx.type : inst.type,
    url: inst.url === ctx.url ? ctx.url : inst.url,
    config: inst.config === ctx.config ? ctx.config : inst.config,
    restart: inst.restart,
    meta: metaSame ? ctx.meta : inst.meta,
    status: inst.status === ctx.status ? ctx.status : inst.status,
    mode: inst.mode,
    ping: inst.ping,
    pool: inst.pool,
    tcps: inst.tcps,
    udps: inst.udps,
    // The sample's copy of the counters, shared with the track: neither is ever mutated.
    counters: sample.track.last ?? pickCounters(inst),
    traffic: moved ? addCounters(ctx.traffic, delta) : ctx.traffic,
    rates: span > 0 ? ratesOf(delta, span) : ctx.rates,
    hours,
    track: sample.track,
    stateAt: event.at,
    updatedAt: receivedAt,
    statusChanges,
    anomalies: sample.flags.length > 0 && !sample.flags.includes('baseline') ? countFlags(ctx.anomalies, sample.flags) : ctx.anomalies,
    deleted: isDelete ? true : ctx.deleted,
    deletedAt: isDelete ? event.at : ctx.deletedAt,
  };
  result.configChanged = configChanged;
  result.statusChanged = statusChanged;
  result.stateChanged =
    moved ||
    inst.mode !== ctx.mode ||
    inst.ping !== ctx.ping ||
    inst.pool !== ctx.pool ||
    inst.tcps !== ctx.tcps ||
    inst.udps !== ctx.udps ||
    inst.status !== ctx.status ||
    sample.track !== ctx.track && sample.flags.length > 0 ||
    inst.tcprx !== ctx.counters.tcprx ||
    inst.tcptx !== ctx.counters.tcptx ||
    inst.udprx !== ctx.counters.udprx ||
    inst.udptx !== ctx.counters.udptx;
  return result;
}

/**
 * Writes an observation into the tunnel's context, in place. The context belongs to this one actor and every
 * nested value is replaced, never mutated (so records handed to persistence keep what they saw). Why not
 * `assign`: XState's assign copies the whole context with `Object.assign({}, …)`, and V8 turns an object built
 * that way with this many fields into a slow dictionary object — measured 5–8 µs per event, the largest cost
 * of the hot path (docs/performance.md).
 */
export function commitObservation(ctx: TunnelContext, obs: Observation): void {
  if (obs.logLines) ctx.logLines += obs.logLines;
  if (obs.duplicateLogs || obs.staleIgnored) {
    ctx.ignored = { stale: ctx.ignored.stale + obs.staleIgnored, duplicateLog: ctx.ignored.duplicateLog + obs.duplicateLogs };
  }
  const a = obs.applied;
  if (!a) return;
  ctx.alias = a.alias;
  ctx.type = a.type;
  ctx.url = a.url;
  ctx.config = a.config;
  ctx.restart = a.restart;
  ctx.meta = a.meta;
  ctx.status = a.status;
  ctx.mode = a.mode;
  ctx.ping = a.ping;
  ctx.pool = a.pool;
  ctx.tcps = a.tcps;
  ctx.udps = a.udps;
  ctx.counters = a.counters;
  ctx.traffic = a.traffic;
  ctx.rates = a.rates;
  ctx.hours = a.hours;
  ctx.track = a.track;
  ctx.stateAt = a.stateAt;
  ctx.updatedAt = a.updatedAt;
  ctx.statusChanges = a.statusChanges;
  ctx.anomalies = a.anomalies;
  ctx.deleted = a.deleted;
  ctx.deletedAt = a.deletedAt;
}

function countFlags(a: TunnelContext['anomalies'], flags: SampleFlag[]): TunnelContext['anomalies'] {
  return {
    resets: a.resets + (flags.includes('reset') ? 1 : 0),
    decreases: a.decreases + (flags.includes('counterDecrease') ? 1 : 0),
    resetJumps: a.resetJumps + (flags.includes('resetJump') ? 1 : 0),
    uncertainJumps: a.uncertainJumps + (flags.includes('jumpUncertain') ? 1 : 0),
  };
}

/** The tunnel's effects and their parameters (the runtime supplies them with `.provide()`). */
export interface TunnelEffectParams {
  persistConfig: ConfigChangeParams;
  queueState: StateChangeParams;
  queueLog: LogLineParams;
  persistStatusChange: StatusChangeParams;
  memoryFailed: MemoryFailureParams;
}
type EffectRunner = <K extends keyof TunnelEffectParams>(type: K, params: TunnelEffectParams[K]) => void;
type ObserveEvent = Extract<TunnelEvent, { type: 'tunnel.observe' }>;

/**
 * One `tunnel.observe`: computes the observation, writes it into the context and runs the effects it asks for,
 * in order. Shared by the machine's action and by `observeInPlace`, so both do exactly the same thing.
 */
function applyObservation(context: TunnelContext, event: ObserveEvent, run: EffectRunner): void {
  let obs: Observation;
  try {
    obs = observe(context, event.event, event.receivedAt, event.connection);
  } catch (error) {
    // The memory path failed for this event: hand it to the fallback (immediate persistence), keep state.
    run('memoryFailed', {
      endpointId: context.endpointId,
      instanceId: context.instanceId,
      event: event.event,
      error: error instanceof Error ? error.message : String(error),
    });
    return;
  }
  commitObservation(context, obs);
  if (obs.log) run('queueLog', obs.log);
  if (obs.stale) return;
  if (obs.statusChanged && context.status) {
    run('persistStatusChange', { endpointId: context.endpointId, instanceId: context.instanceId, at: context.stateAt, status: context.status });
  }
  if (obs.configChanged) run('persistConfig', { context, at: context.stateAt });
  if (obs.stateChanged) run('queueState', { context, hours: obs.hoursTouched });
}

/** Actor systems being inspected: their tunnels take every event through the machine, so the inspector sees it. */
const inspectedSystems = new WeakSet<object>();

/** Called by the inspection hub when it attaches to (or leaves) an actor system. */
export function setSystemInspected(system: object, inspected: boolean): void {
  if (inspected) inspectedSystems.add(system);
  else inspectedSystems.delete(system);
}

type TunnelActorRef = ActorRefFrom<typeof tunnelMachine>;
type EffectImplementation = (args: unknown, params: unknown) => void;

/**
 * The hot self-transition without XState's transition machinery: an observation that cannot move the tunnel
 * out of its state (same status, not a delete, not the first sight, or stale) only updates the context and
 * runs effects — exactly what `tunnel.observe` does as a targetless transition, through the same function
 * and the effects the actor was provided with. XState's send, macrostep and snapshot cost ~10 µs and most of
 * the garbage per event, a third of the ingest path at 20,000 events/s (docs/performance.md); every event
 * that can change the state still goes through `send`. Returns false when the event must be sent instead.
 *
 * Differences from a send, on purpose: snapshot observers are not notified for these events (the context is
 * mutated in place either way, and nothing subscribes to tunnel actors), and while an inspector is attached
 * (`setSystemInspected`) every event is sent, so the inspector sees them all. An effect that throws here is
 * handed to `memoryFailed` (the fallback that persists the event at once) instead of failing the actor.
 */
export function observeInPlace(ref: TunnelActorRef, event: InstanceEvent, receivedAt: number, connection: number): boolean {
  const snapshot = ref.getSnapshot();
  const context = snapshot.context;
  if (snapshot.status !== 'active' || context.deleted || context.status === null || snapshot.value !== context.status) return false;
  if (event.type === 'delete' || (event.instance.status !== context.status && event.at >= context.stateAt)) return false;
  if (inspectedSystems.has(ref.system)) return false;
  // An ActorRef is an Actor at run time; its logic is the machine with the effects it was provided with.
  const actions = (ref as unknown as { logic: TunnelMachine }).logic.implementations.actions as unknown as Record<keyof TunnelEffectParams, EffectImplementation>;
  const observation: ObserveEvent = { type: 'tunnel.observe', event, receivedAt, connection };
  const args = { context, event: observation, self: ref, system: ref.system };
  applyObservation(context, observation, (type, params) => {
    try {
      actions[type](args, params);
    } catch (error) {
      if (type === 'memoryFailed') throw error;
      actions.memoryFailed(args, {
        endpointId: context.endpointId,
        instanceId: context.instanceId,
        event,
        error: `${type}: ${error instanceof Error ? error.message : String(error)}`,
      } satisfies MemoryFailureParams);
    }
  });
  return true;
}

const tunnelSetup = setup({
  types: {
    context: {} as TunnelContext,
    events: {} as TunnelEvent,
    input: {} as TunnelInput,
  },
  actions: {
    // Effects, supplied by the runtime. Defaults do nothing so the machine runs alone (tests, replay).
    persistConfig: (_, _params: ConfigChangeParams) => {},
    queueState: (_, _params: StateChangeParams) => {},
    queueLog: (_, _params: LogLineParams) => {},
    persistStatusChange: (_, _params: StatusChangeParams) => {},
    memoryFailed: (_, _params: MemoryFailureParams) => {},
  },
  guards: {
    // The state follows the context, so an event the memory path failed on moves nothing.
    hasStatus: ({ context }, params: { status: InstanceStatus }) => !context.deleted && context.status === params.status,
    isTombstoned: ({ context }) => context.deleted,
  },
});

export const tunnelMachine = tunnelSetup.extend({
  // Declared after the effects so that they can enqueue them by name.
  actions: {
    applyObservation: tunnelSetup.createAction(enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'tunnel.observe') return;
      applyObservation(context, event, (type, params) => enqueue({ type, params } as Parameters<typeof enqueue>[0]));
    })),
    /**
     * Once, at start: XState builds the initial context with `Object.assign({}, …)`, which leaves an object of
     * this many fields in V8's slow dictionary mode — and `applyObservation` keeps it for the actor's life. A
     * copy made with spread is a fast object: about 1.4 KB less per tunnel and cheaper field access per event.
     */
    compactContext: assign(({ context }) => ({ ...context })),
    markTombstone: assign(({ event }) => {
      if (event.type !== 'tunnel.tombstone') return {};
      return { deleted: true, deletedAt: event.at, updatedAt: event.receivedAt };
    }),
    persistTombstone: tunnelSetup.createAction(enqueueActions(({ context, enqueue }) => {
      enqueue({ type: 'persistConfig', params: { context, at: context.deletedAt ?? context.stateAt } });
    })),
  },
}).createMachine({
  id: 'tunnel',
  context: ({ input }) => newTunnelContext(input),
  entry: 'compactContext',
  initial: 'pending',
  states: {
    /** Spawned and not yet observed, or restored from the database: go to the status held, if any. */
    pending: { always: routesFrom('pending') },
    running: { always: routesFrom('running') },
    stopped: { always: routesFrom('stopped') },
    error: { always: routesFrom('error') },
    /** The tombstone: the instance is gone. The actor is done; its parent keeps the id and ignores later events. */
    deleted: { type: 'final' },
  },
  on: {
    // Stale events only contribute their log line; current ones move the context, and the state follows it.
    'tunnel.observe': { actions: 'applyObservation' },
    'tunnel.tombstone': { target: '.deleted', actions: ['markTombstone', 'persistTombstone'] },
  },
});

/** Eventless transitions from one state to the state matching the context (never to itself). */
function routesFrom(from: 'pending' | InstanceStatus) {
  const routes = [
    { guard: 'isTombstoned' as const, target: 'deleted' },
    ...(['running', 'stopped', 'error'] as const)
      .filter((status) => status !== from)
      .map((status) => ({ guard: { type: 'hasStatus' as const, params: { status } }, target: status })),
  ];
  return routes;
}

export type TunnelMachine = typeof tunnelMachine;
