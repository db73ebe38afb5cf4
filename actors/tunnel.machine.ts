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
  type Instance,
  type InstanceEvent,
  type InstanceMeta,
  type InstanceStatus,
} from './model.js';
import type { TunnelKey } from './records.js';
import {
  addCountersInto,
  applySample,
  copyTrack,
  forwardDelta,
  hourKeyOf,
  isZero,
  keepsHourBucket,
  newCounterTrack,
  pickCounters,
  putHourBucket,
  sampleUnchanged,
  startRun,
  writeRates,
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
  /** Last absolute counters as NodePass reported them: the track's own `last`, updated in place as counters move. */
  counters: Counters;
  /** Sum of accepted deltas. The tunnel's own object, updated in place (a frozen one is shared: replaced when it moves). */
  traffic: Counters;
  /** Bytes per second over the last interval with a sample. Own and updated in place, like `traffic`. */
  rates: Counters;
  /** Deltas per UTC hour (keys: hour start, epoch ms) for the last few hours. Own buckets, updated in place. */
  hours: Record<string, Counters>;
  track: CounterTrack;
  /** Event time of the last applied state (staleness guard), 0 before any. */
  stateAt: number;
  /** Clock time when the state last changed. */
  updatedAt: number;
  logLines: number;
  /** Null until the first log line. */
  logDedupe: LogDedupe | null;
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
// `traffic`, `rates`, the hour buckets and the track's last sample become the tunnel's own objects when they first
// move, and are then updated in place (`commitObservation`); whatever keeps their values beyond the event copies them.
const EMPTY_META: InstanceMeta = Object.freeze({ peer: Object.freeze({ sid: '', type: '', alias: '' }), tags: Object.freeze({}) }) as InstanceMeta;
const NOTHING_IGNORED: TunnelContext['ignored'] = Object.freeze({ stale: 0, duplicateLog: 0 });
const NO_ANOMALIES: TunnelContext['anomalies'] = Object.freeze({ resets: 0, decreases: 0, resetJumps: 0, uncertainJumps: 0 });
const NO_TRACK: CounterTrack = Object.freeze(newCounterTrack());
/**
 * No hour buckets: the record of a tunnel that has not moved yet (replaced by its own on the first bucket, see
 * `commitObservation`) and the `hoursTouched` of an observation that moved nothing (consumers only read it).
 */
const NO_HOURS: Record<string, Counters> = Object.freeze({}) as Record<string, Counters>;
const NO_STATUS_CHANGES: StatusChange[] = Object.freeze([]) as unknown as StatusChange[];
const DEFAULT_SETTINGS: TunnelSettings = Object.freeze({ ...DEFAULT_TUNNEL_SETTINGS });
/** Settings objects by the partial settings they were made from: the tunnels of an endpoint share one. */
const settingsCache = new WeakMap<Partial<TunnelSettings>, TunnelSettings>();

function settingsOf(partial: Partial<TunnelSettings> | undefined): TunnelSettings {
  if (!partial) return DEFAULT_SETTINGS;
  let settings = settingsCache.get(partial);
  if (!settings) settingsCache.set(partial, (settings = Object.freeze({ ...DEFAULT_TUNNEL_SETTINGS, ...partial })));
  return settings;
}

/** A copy of a counters value the tunnel will update in place; a frozen (shared) one stays shared. */
const ownCounters = (c: Counters): Counters => (Object.isFrozen(c) ? c : pickCounters(c));

export function newTunnelContext(input: TunnelInput): TunnelContext {
  if (input.restore) {
    // The values updated in place are copied: the restored context must not share them with whatever it came from.
    const restore = input.restore;
    const hours: Record<string, Counters> = {};
    for (const hour in restore.hours) hours[hour] = ownCounters(restore.hours[hour]!);
    return {
      ...restore,
      traffic: ownCounters(restore.traffic),
      rates: ownCounters(restore.rates),
      hours,
      // A restored track that is not an object is kept as it is: the first event then fails alone (`memoryFailed`).
      track: typeof restore.track === 'object' && restore.track !== null ? copyTrack(restore.track) : restore.track,
      settings: settingsOf(input.settings),
    };
  }
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
    hours: NO_HOURS,
    track: NO_TRACK,
    stateAt: 0,
    updatedAt: 0,
    logLines: 0,
    // Created on the tunnel's first log line: many tunnels never log at a level that reaches us.
    logDedupe: null,
    statusChanges: NO_STATUS_CHANGES,
    deleted: false,
    deletedAt: null,
    ignored: NOTHING_IGNORED,
    anomalies: NO_ANOMALIES,
    settings: settingsOf(input.settings),
  };
}

/** What one observation does, computed by `observe` below; `commitObservation` applies it. */
export interface Observation {
  /**
   * The event's instance, whose fields (configuration, status, gauges) the context takes; null when the event is
   * stale (older than the state held) and moves nothing. The fields below are meaningful only when it is set.
   */
  instance: Instance | null;
  stale: boolean;
  configChanged: boolean;
  stateChanged: boolean;
  statusChanged: boolean;
  /** The new values of the derived fields (the context's own object where unchanged). */
  meta: InstanceMeta;
  counters: Counters;
  track: CounterTrack;
  /** The sample moved the counters forward: `commitObservation` writes it into the track's own last sample. */
  lastInPlace: boolean;
  /** The accepted delta (zero when nothing moved), added to the traffic and the hour bucket when `hourKey` is set. */
  delta: Counters;
  /** > 0: the rates are recomputed from `delta` over this span (ms); 0: they stay. */
  ratesSpanMs: number;
  statusChanges: StatusChange[];
  anomalies: TunnelContext['anomalies'];
  stateAt: number;
  updatedAt: number;
  deleted: boolean;
  deletedAt: number | null;
  /**
   * The hour bucket this event moves (null when nothing moved): the tunnel's own bucket of that hour, or a new zero
   * one for an hour it does not hold, which `commitObservation` puts into its record; `delta` is added into it there.
   */
  hourKey: string | null;
  hourBucket: Counters | null;
  hoursTouched: Record<string, Counters>;
  log: LogLineParams | null;
  /** Log lines taken, duplicates and stale events ignored, by this event (0 or 1 each). */
  logLines: number;
  duplicateLogs: number;
  staleIgnored: number;
}

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

/**
 * `sameJson` for metas. The shape NodePass sends — `{ peer: { sid, type, alias }, tags: {} }`, keys in that order —
 * is recognised without building key lists (two per object per event otherwise); anything else, or any doubt,
 * goes to `sameJson`.
 */
function sameMeta(a: InstanceMeta, b: InstanceMeta): boolean {
  if (a === b) return true;
  const pa = a.peer;
  const pb = b.peer;
  if (
    typeof pa === 'object' && pa !== null && typeof pb === 'object' && pb !== null &&
    pa.sid === pb.sid && pa.type === pb.type && pa.alias === pb.alias &&
    hasKeys(a, 'peer', 'tags') && hasKeys(b, 'peer', 'tags') &&
    hasKeys(pa, 'sid', 'type', 'alias') && hasKeys(pb, 'sid', 'type', 'alias') &&
    isEmptyRecord(a.tags) && isEmptyRecord(b.tags)
  ) {
    return true;
  }
  return sameJson(a, b);
}

/** Whether the enumerable keys of `o` are exactly `k0, k1[, k2]`, in this order (no rest array: called per event). */
function hasKeys(o: object, k0: string, k1: string, k2?: string): boolean {
  let i = 0;
  for (const k in o) {
    if (k !== (i === 0 ? k0 : i === 1 ? k1 : i === 2 ? k2 : undefined)) return false;
    i++;
  }
  return i === (k2 === undefined ? 2 : 3);
}

/** A plain object (not an array) without enumerable keys. */
function isEmptyRecord(v: unknown): boolean {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  for (const _ in v) return false;
  return true;
}

/**
 * Computes what one event does to a tunnel. Pure apart from the log de-duplication record, which it creates on the
 * tunnel's first log line and updates in place (it is owned by this tunnel alone and would otherwise be copied on
 * every log line). Everything that can fail happens here, before anything is written: a failure leaves the context
 * as it was.
 */
export function observe(
  ctx: TunnelContext,
  event: InstanceEvent,
  receivedAt: number,
  connection: number,
): Observation {
  // One object per event, every field set here so that all observations share one shape.
  const result: Observation = {
    instance: null,
    stale: false,
    configChanged: false,
    stateChanged: false,
    statusChanged: false,
    meta: ctx.meta,
    counters: ctx.counters,
    track: ctx.track,
    lastInPlace: false,
    delta: ZERO_COUNTERS,
    ratesSpanMs: 0,
    statusChanges: ctx.statusChanges,
    anomalies: ctx.anomalies,
    stateAt: ctx.stateAt,
    updatedAt: ctx.updatedAt,
    deleted: ctx.deleted,
    deletedAt: ctx.deletedAt,
    hourKey: null,
    hourBucket: null,
    hoursTouched: NO_HOURS,
    log: null,
    logLines: 0,
    duplicateLogs: 0,
    staleIgnored: 0,
  };

  if (event.type === 'log') {
    const hash = lineHash(event.logs);
    const ordinal = sightLogLine(
      ctx.logDedupe ?? (ctx.logDedupe = newLogDedupe()),
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
  // Most events move no counter (log lines, gauge-only updates): nothing to compute or allocate for them. Of those
  // that do, most move them forward: applied to the tunnel's own track in place (not on a track `startRun` just
  // made, which shares its last sample with the one held), the others build a new track.
  const unchanged = sampleUnchanged(track, inst);
  const forward = unchanged || track !== ctx.track || Object.isFrozen(track.last) ? null : forwardDelta(track, inst);
  const sample = unchanged || forward !== null ? null : applySample(track, inst);
  const nextTrack = sample ? sample.track : track;
  let moved = false;
  if (sample || forward) {
    const delta = forward ?? sample!.delta;
    moved = delta.tcprx + delta.tcptx + delta.udprx + delta.udptx > 0;
    result.delta = delta;
    if (moved) {
      const key = hourKeyOf(receivedAt);
      // Not yet in the tunnel's record when new: nothing of the context is written before the commit.
      const bucket = ctx.hours[key] ?? { tcprx: 0, tcptx: 0, udprx: 0, udptx: 0 };
      result.hourKey = key;
      result.hourBucket = bucket;
      const touched: Record<string, Counters> = {};
      // A bucket for an hour older than every one kept is dropped by `putHourBucket` at once (and reported so).
      touched[key] = keepsHourBucket(ctx.hours, key) ? bucket : (undefined as unknown as Counters);
      result.hoursTouched = touched;
    }
    const span = ctx.stateAt > 0 ? event.at - ctx.stateAt : 0;
    if (span > 0) result.ratesSpanMs = span;
    if (sample && sample.flags.length > 0 && !sample.flags.includes('baseline')) result.anomalies = countFlags(ctx.anomalies, sample.flags);
  } else if (ctx.stateAt > 0 && event.at - ctx.stateAt > 0) {
    // A span with no movement: the rate over it is zero (the zero delta over that span).
    result.ratesSpanMs = event.at - ctx.stateAt;
  }

  const statusChanged = inst.status !== ctx.status;
  if (statusChanged) {
    result.statusChanges = [...ctx.statusChanges, { at: event.at, status: inst.status }].slice(-ctx.settings.statusHistoryLimit);
  }
  const isDelete = event.type === 'delete';

  result.instance = inst;
  result.meta = metaSame ? ctx.meta : inst.meta;
  // The sample's copy of the counters, shared with the track (for a forward move: written into it by the commit).
  result.counters = nextTrack.last ?? pickCounters(inst);
  result.track = nextTrack;
  result.lastInPlace = forward !== null;
  result.stateAt = event.at;
  result.updatedAt = receivedAt;
  if (isDelete) {
    result.deleted = true;
    result.deletedAt = event.at;
  }
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
    (sample !== null && sample.track !== ctx.track && sample.flags.length > 0) ||
    inst.tcprx !== ctx.counters.tcprx ||
    inst.tcptx !== ctx.counters.tcptx ||
    inst.udprx !== ctx.counters.udprx ||
    inst.udptx !== ctx.counters.udptx;
  return result;
}

/**
 * Writes an observation into the tunnel's context, in place. The context belongs to this one actor. Its traffic
 * total, rates, hour buckets and the track's last sample (which is also `counters`) are its own objects and are
 * updated in place (a frozen, shared one is replaced by an own copy when it first moves); every other nested value
 * is replaced, never mutated. Whatever keeps those values beyond the event copies them: persistence when a flush
 * builds its records (persister.ts `stateRecordOf`, `DirtyTunnel.build`); the HTTP views and the change feed
 * serialise at once. Why not `assign`: XState's assign copies the whole context with `Object.assign({}, …)`, and V8
 * turns an object built that way with this many fields into a slow dictionary object — measured 5–8 µs per event,
 * the largest cost of the hot path (docs/performance.md).
 */
export function commitObservation(ctx: TunnelContext, obs: Observation): void {
  if (obs.logLines) ctx.logLines += obs.logLines;
  if (obs.duplicateLogs || obs.staleIgnored) {
    ctx.ignored = { stale: ctx.ignored.stale + obs.staleIgnored, duplicateLog: ctx.ignored.duplicateLog + obs.duplicateLogs };
  }
  const inst = obs.instance;
  if (!inst) return;
  // Equal strings keep the ones already held: the event's copies then die young instead of being kept until
  // the next event and promoted to the old generation (GC was the largest cost of ingest, docs/performance.md).
  if (inst.alias !== ctx.alias) ctx.alias = inst.alias;
  if (inst.type !== ctx.type) ctx.type = inst.type;
  if (inst.url !== ctx.url) ctx.url = inst.url;
  if (inst.config !== ctx.config) ctx.config = inst.config;
  ctx.restart = inst.restart;
  ctx.meta = obs.meta;
  if (inst.status !== ctx.status) ctx.status = inst.status;
  ctx.mode = inst.mode;
  ctx.ping = inst.ping;
  ctx.pool = inst.pool;
  ctx.tcps = inst.tcps;
  ctx.udps = inst.udps;
  if (obs.lastInPlace) {
    // The track's own last sample (`observe` checked it is not frozen), shared with `counters`.
    const last = obs.track.last!;
    last.tcprx = inst.tcprx;
    last.tcptx = inst.tcptx;
    last.udprx = inst.udprx;
    last.udptx = inst.udptx;
    ctx.counters = last;
  } else {
    ctx.counters = obs.counters;
  }
  if (obs.hourKey !== null) {
    const delta = obs.delta;
    if (Object.isFrozen(ctx.traffic)) ctx.traffic = { ...ctx.traffic };
    addCountersInto(ctx.traffic, delta);
    const bucket = obs.hourBucket!;
    addCountersInto(bucket, delta);
    // The shared empty record of a tunnel that never moved becomes its own on the first bucket.
    if (ctx.hours === NO_HOURS) ctx.hours = {};
    if (ctx.hours[obs.hourKey] !== bucket) putHourBucket(ctx.hours, obs.hourKey, bucket);
  }
  if (obs.ratesSpanMs > 0) {
    // Zero rates keep the shared zero of a tunnel that has not moved yet.
    if (!(isZero(obs.delta) && ctx.rates === ZERO_COUNTERS)) {
      if (Object.isFrozen(ctx.rates)) ctx.rates = { ...ctx.rates };
      writeRates(ctx.rates, obs.delta, obs.ratesSpanMs);
    }
  }
  ctx.track = obs.track;
  ctx.stateAt = obs.stateAt;
  ctx.updatedAt = obs.updatedAt;
  ctx.statusChanges = obs.statusChanges;
  ctx.anomalies = obs.anomalies;
  ctx.deleted = obs.deleted;
  ctx.deletedAt = obs.deletedAt;
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

export function isSystemInspected(system: object): boolean {
  return inspectedSystems.has(system);
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
     * It also gives the actor's options one shared hidden class (`compactActorOptions`).
     */
    compactContext: assign(({ context, self }) => {
      // Here rather than as an action of its own: a custom entry action of an actor not yet started is deferred
      // by XState, and its queue keeps the array it grew for that (152 bytes) for the actor's life.
      compactActorOptions(self);
      return { ...context };
    }),
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

/** The options XState's `Actor` keeps for a spawned child (xstate 5: its defaults, then what `spawn` passes). */
const SPAWNED_ACTOR_OPTIONS = new Set(['clock', 'logger', 'devTools', 'id', 'parent', 'syncSnapshot', 'input', 'src', 'systemId']);

/**
 * XState keeps an actor's resolved options for its whole life (`actor.options`, read again only for `input` at
 * start and `devTools`). It builds them with `{ ...defaults, ...options }`, and V8 ends up giving almost every
 * object built there a hidden class of its own: ~300 bytes of class and descriptors per tunnel, a tenth of an
 * idle tunnel (docs/performance.md). The same values in one object literal share one class. Done only when every
 * option is one of those known here (fields absent are set to `undefined`, which reads the same), so another
 * XState version with other options keeps its own object untouched.
 */
function compactActorOptions(self: unknown): void {
  const actor = self as { options?: Record<string, unknown> };
  const o = actor.options;
  if (!o || typeof o !== 'object') return;
  for (const key of Object.keys(o)) if (!SPAWNED_ACTOR_OPTIONS.has(key)) return;
  actor.options = {
    clock: o['clock'],
    logger: o['logger'],
    devTools: o['devTools'],
    id: o['id'],
    parent: o['parent'],
    syncSnapshot: o['syncSnapshot'],
    input: o['input'],
    src: o['src'],
    systemId: o['systemId'],
  };
}

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
