/**
 * The endpoint machine: one actor per NodePass master. It owns the connection lifecycle and the tunnel
 * actors of that master.
 *
 *   disabled ⇄ enabled:
 *     online (the SSE stream is invoked here; leaving `online` closes it)
 *       connecting → syncing (the `initial` snapshot) → live (quiet streams are probed, never timed out)
 *     backoff   (capped exponential delay with jitter, then online again)
 *     authFailed (401/403: parked until the key changes — no hammering)
 *
 * The stream itself is the `eventStream` actor supplied by the runtime (a real SSE connection) or by
 * replay (nothing: the replay driver sends the stream's events itself). Everything time-related arrives
 * inside events (`at`, `receivedAt`), so the machine runs the same on a real or a simulated clock.
 *
 * Snapshot reconciliation: NodePass sends one `initial` per instance and no end marker (PROTOCOL §5.3).
 * The snapshot is complete at the first non-`initial` event or after a quiet period; then every tunnel
 * missing from it gets a tombstone — unless the tunnel has seen an event newer than the snapshot (a stale
 * snapshot, as when a capture is replayed twice, proves nothing about deletions).
 */
import { assign, createActor, enqueueActions, fromCallback, fromPromise, setup, type ActorRefFrom, type AnyActorRef, type SnapshotFrom } from 'xstate';
import { actorId, type Instance, type InstanceEvent, type MasterInfo, type ParsedEvent } from './model.js';
import type { OfflineRecord } from './records.js';
import { isSystemInspected, observeInPlace, tunnelMachine, type TunnelContext, type TunnelEvent, type TunnelSettings } from './tunnel.machine.js';

export type TunnelRef = ActorRefFrom<typeof tunnelMachine>;

export interface EndpointSettings {
  /** Quiet time (since the last `initial` event) after which an unfinished snapshot is taken as complete. */
  snapshotQuietMs: number;
  /**
   * Whether a tunnel missing from the `initial` snapshot is tombstoned only once `GET /instances` confirms it
   * (live ingest), or at once (replay, which has no master to ask). A snapshot can be incomplete — upstream
   * drops for a slow reader, or an overloaded process whose quiet timer fires before the rest of the snapshot
   * was read — and a wrong tombstone would ignore every later event of a live tunnel.
   */
  confirmSnapshotDeletions: boolean;
  /** How often a live stream is checked; a check probes the master only if no event came since the last one. */
  probeIntervalMs: number;
  /** Consecutive failed probes after which the stream is taken as dead (half-open) and replaced. */
  probeFailureLimit: number;
  /**
   * How long a listing that disagrees with our state is held before it is trusted: events already in flight
   * when the master answered arrive meanwhile and win. It is also the grace a quiet stream gets, after a probe
   * showed changes it should have carried, before it is declared half-open.
   */
  reconcileSettleMs: number;
  /** Periodic `GET /instances` reconciliation while live, busy or not (events are lost upstream, PROTOCOL §7). */
  reconcileIntervalMs: number;
  /** Periodic `GET /info` refresh while live (also read once on every connect). */
  infoRefreshMs: number;
  /** A connection live this long resets the backoff. */
  healthyAfterMs: number;
  backoffBaseMs: number;
  backoffCapMs: number;
  /** How many closed offline intervals the context keeps (all are persisted). */
  offlineHistoryLimit: number;
  /** How many times a failing tunnel actor is restarted before it is left failed. */
  tunnelRestartBudget: number;
  tunnel: Partial<TunnelSettings>;
}

export const DEFAULT_ENDPOINT_SETTINGS: EndpointSettings = {
  snapshotQuietMs: 1_000,
  confirmSnapshotDeletions: true,
  probeIntervalMs: 30_000,
  probeFailureLimit: 2,
  reconcileSettleMs: 2_000,
  reconcileIntervalMs: 60_000,
  infoRefreshMs: 5 * 60_000,
  healthyAfterMs: 60_000,
  backoffBaseMs: 1_000,
  backoffCapMs: 30_000,
  offlineHistoryLimit: 100,
  tunnelRestartBudget: 5,
  tunnel: {},
};

export interface OfflineInterval {
  from: number;
  to: number | null;
  reason: string;
}

export interface EventCounts {
  /** Every payload received, valid or not. */
  total: number;
  /** Valid payloads by NodePass type (the API-key record's events included). */
  byType: Record<string, number>;
  rejected: number;
  /** Rejections by reason (at most 50 distinct reasons are kept; the rest count under "other"). */
  rejectedReasons: Record<string, number>;
}

/** A `GET /instances` answer held until it has settled (see `reconcileSettleMs`). */
export interface HeldListing {
  instances: Instance[];
  /** Ids the master listed but we could not read: never tombstoned for being "missing". */
  unreadableIds: string[];
  /** False when an unreadable entry had no id either: then nothing is taken as missing. */
  complete: boolean;
  /** Our clock when the request went out: a tunnel that heard from the stream since then is fresher. */
  sentAt: number;
  /** Our clock when the answer came (the receive time of the corrections). */
  receivedAt: number;
  /** Newest event time applied before the request went out (the master's clock): the listing is at least this new. */
  masterAt: number;
}

/** Liveness and reconciliation counters (the rule is in docs/actors.md). */
export interface LivenessCounts {
  /** Probes of a quiet stream, and how many failed (no answer, an error status). */
  probes: number;
  probeFailures: number;
  /** Probes whose listing showed changes the stream should have carried. */
  probeMismatches: number;
  /** Streams replaced because a probe's changes never arrived (half-open). */
  halfOpenReplaced: number;
  /** Periodic reconciliations run and failed. */
  reconciliations: number;
  reconcileFailures: number;
  /** Tunnels corrected from a listing (missed updates, creates) and tombstoned (missed deletes). */
  corrected: number;
  tombstoned: number;
  /** `/info` refreshes that failed (the previous info is kept). */
  infoFailures: number;
  lastProbeAt: number | null;
  lastReconcileAt: number | null;
}

export interface EndpointContext {
  endpointId: number;
  name: string;
  /** Whether the operator wants this endpoint watched. */
  enabled: boolean;
  masterId: string;
  masterAlias: string;
  info: MasterInfo | null;
  /** Streams opened so far. */
  connections: number;
  /** When the current state began (clock time). */
  since: number;
  connectedAt: number | null;
  /** The open disconnected interval, if disconnected. */
  disconnected: OfflineInterval | null;
  /** Closed disconnected intervals, oldest first. */
  offline: OfflineInterval[];
  reconnects: number;
  /** Consecutive failed connection attempts (drives the backoff). */
  attempt: number;
  lastError: string | null;
  /** The `initial` snapshot being received: instance ids and its newest event time. */
  snapshot: { ids: Record<string, true>; at: number } | null;
  /** Tunnels were missing from the last snapshot: the reconciliation asks `GET /instances` at once to confirm. */
  snapshotUnconfirmed: boolean;
  tunnels: Record<string, TunnelRef>;
  events: EventCounts;
  lastEventAt: number;
  eventsSinceProbe: number;
  probeFailures: number;
  liveness: LivenessCounts;
  /** The probe's listing, held while the stream is given its grace (`live.liveness.confirming`). */
  probeListing: HeldListing | null;
  /** The periodic reconciliation's listing, held while it settles (`live.reconcile.settling`). */
  reconcileListing: HeldListing | null;
  /** When a listing last corrected tunnels (our clock), 0 if never on this connection: evidence for the probe. */
  lastCorrectionAt: number;
  ignoredAfterTombstone: number;
  tunnelRestarts: number;
  tunnelFailures: number;
  settings: EndpointSettings;
}

export type StreamCloseKind =
  | 'shutdown'
  | 'eof'
  | 'auth'
  | 'http'
  | 'not-sse'
  | 'refused'
  | 'dns'
  | 'timeout'
  | 'tls'
  | 'reset'
  | 'network'
  | 'probe-failed'
  | 'half-open'
  | 'stale';

/** One event of a `stream.batch`. */
export interface BatchItem {
  parsed: Extract<ParsedEvent, { kind: 'instance' }>;
  receivedAt: number;
}

/** Whether an event may travel in a `stream.batch`: it neither ends a snapshot's members nor moves the state. */
export function isBatchable(parsed: ParsedEvent): parsed is Extract<ParsedEvent, { kind: 'instance' }> {
  return parsed.kind === 'instance' && parsed.event.type !== 'initial';
}

export type EndpointEvent =
  | { type: 'stream.opened'; at: number }
  | { type: 'stream.event'; parsed: ParsedEvent; receivedAt: number }
  /**
   * Consecutive events of one connection that are all instance events other than `initial` (see
   * `isBatchable`), delivered together: handled exactly as the same `stream.event`s one by one would be, at a
   * fraction of the cost (one transition of this machine per batch instead of one per event).
   */
  | { type: 'stream.batch'; items: BatchItem[] }
  | { type: 'stream.closed'; at: number; kind: StreamCloseKind; message?: string }
  | { type: 'endpoint.enable'; at: number }
  | { type: 'endpoint.disable'; at: number }
  | { type: 'endpoint.reconnect'; at: number }
  /** URL or API key changed: reconnect, and leave `authFailed`. */
  | { type: 'endpoint.reconfigure'; at: number; name?: string }
  | { type: 'master.info'; info: MasterInfo; at: number }
  /** Instances listed by `GET /instances` (periodic reconciliation). */
  | { type: 'master.instances'; instances: Instance[]; at: number };

export interface EndpointInput {
  endpointId: number;
  name: string;
  enabled?: boolean;
  settings?: Partial<EndpointSettings>;
  /** Tunnel contexts restored from the database. */
  restoreTunnels?: import('./tunnel.machine.js').TunnelContext[];
  /** Offline interval open when the service stopped, restored. */
  restoreDisconnected?: OfflineInterval | null;
}

export interface StreamInput {
  endpointId: number;
  connection: number;
}

export interface ProbeInput {
  endpointId: number;
  /** What to ask: `GET /info`, `GET /instances`, or both (a liveness probe: /info first). */
  info: boolean;
  instances: boolean;
}

/** What the master answered; `null` for what was not asked (or when there is no master: replay). */
export interface ProbeResult {
  info: MasterInfo | null;
  instances: Instance[] | null;
  /** Listed ids that failed validation (they exist; never tombstone them). */
  unreadableIds: string[];
  /** False when an entry failed validation without even an id: no tunnel can then be taken as missing. */
  complete: boolean;
  /** The caller's clock when `GET /instances` was sent, and when its answer came. */
  sentAt: number;
  receivedAt: number;
}

const NO_ANSWER: ProbeResult = { info: null, instances: null, unreadableIds: [], complete: true, sentAt: 0, receivedAt: 0 };

/**
 * A period stretched by up to 10 %, fixed per endpoint (golden-ratio hash of its id): a thousand endpoints that
 * went live together do not all list their masters in the same second, and a test knows when each one will.
 */
export function spread(periodMs: number, endpointId: number): number {
  return Math.round(periodMs * (1 + ((endpointId * 0.6180339887) % 1) * 0.1));
}

/** Backoff with "equal jitter": half the exponential step fixed, half random. */
export function backoffDelay(attempt: number, baseMs: number, capMs: number, random: () => number = Math.random): number {
  const step = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(step / 2 + random() * (step / 2));
}

const MAX_REJECT_REASONS = 50;

/**
 * Counts one received payload into the endpoint's own context, in place. The counters are owned by this actor
 * and change on every event; an `assign` would copy the whole context per event, which V8 turns into a slow
 * dictionary object at this size (docs/performance.md, hot path).
 */
function countEvent(context: EndpointContext, parsed: ParsedEvent, receivedAt: number): void {
  const events = context.events;
  events.total++;
  context.lastEventAt = receivedAt;
  context.eventsSinceProbe++;
  if (parsed.kind === 'rejected') {
    const reasons = events.rejectedReasons;
    const key = parsed.reason in reasons || Object.keys(reasons).length < MAX_REJECT_REASONS ? parsed.reason : 'other';
    reasons[key] = (reasons[key] ?? 0) + 1;
    events.rejected++;
    return;
  }
  const type = parsed.kind === 'instance' ? parsed.event.type : parsed.kind === 'shutdown' ? 'shutdown' : parsed.type;
  events.byType[type] = (events.byType[type] ?? 0) + 1;
}

const instanceIdOf = (parsed: ParsedEvent): string | null => (parsed.kind === 'instance' ? parsed.event.instance.id : null);

const endpointSetup = setup({
  types: {
    context: {} as EndpointContext,
    events: {} as EndpointEvent,
    input: {} as EndpointInput,
  },
  actors: {
    tunnel: tunnelMachine,
    /** The SSE connection. Supplied by the runtime; replay feeds the stream's events itself. */
    eventStream: fromCallback<EndpointEvent, StreamInput>(() => () => {}),
    /**
     * `GET /info` and/or `GET /instances` (liveness probe, info refresh, reconciliation). Supplied by the runtime;
     * the stub answers nothing, so replay (no master) never compares or reconciles.
     */
    probeMaster: fromPromise<ProbeResult, ProbeInput>(async () => NO_ANSWER),
  },
  actions: {
    // Effects supplied by the runtime.
    persistOffline: (_, _params: OfflineRecord) => {},
    persistMaster: (_, _params: { endpointId: number; masterId: string; alias: string; info: MasterInfo | null }) => {},
    tunnelFailed: (_, _params: { endpointId: number; instanceId: string; error: string; restarted: boolean }) => {},
  },
  delays: {
    snapshotQuiet: ({ context }) => context.settings.snapshotQuietMs,
    probeInterval: ({ context }) => context.settings.probeIntervalMs,
    reconcileSettle: ({ context }) => context.settings.reconcileSettleMs,
    reconcileInterval: ({ context }) => spread(context.settings.reconcileIntervalMs, context.endpointId),
    infoRefresh: ({ context }) => spread(context.settings.infoRefreshMs, context.endpointId),
    healthyAfter: ({ context }) => context.settings.healthyAfterMs,
    backoff: ({ context }) => backoffDelay(context.attempt, context.settings.backoffBaseMs, context.settings.backoffCapMs),
  },
  guards: {
    snapshotUnconfirmed: ({ context }) => context.snapshotUnconfirmed,
    isInitial: ({ event }) => event.type === 'stream.event' && isInitialEvent(event.parsed),
    isShutdown: ({ event }) => event.type === 'stream.event' && event.parsed.kind === 'shutdown',
    isAuthFailure: ({ event }) => event.type === 'stream.closed' && event.kind === 'auth',
    quietSinceLastCheck: ({ context }) => context.eventsSinceProbe === 0,
    probeLimitReached: ({ context }) => context.probeFailures + 1 >= context.settings.probeFailureLimit,
    /** The master's listing disagrees with our state (the probe's or the reconciliation's answer). */
    listingDisagrees: ({ context, event }) => {
      const output = (event as { output?: ProbeResult }).output;
      return !!output?.instances && listingDifferences(context, output.instances, output.unreadableIds, output.complete).length > 0;
    },
    /**
     * The probe's evidence that the master changed things the silent stream never carried: its listing disagrees
     * with our tunnels, or a reconciliation already corrected tunnels after the stream's last event (it would
     * otherwise hide the evidence from this probe).
     */
    masterChangedUnseen: ({ context, event }) => {
      const output = (event as { output?: ProbeResult }).output;
      if (context.lastCorrectionAt > context.lastEventAt) return true;
      return !!output?.instances && listingDifferences(context, output.instances, output.unreadableIds, output.complete).length > 0;
    },
    startsEnabled: ({ context }) => context.enabled,
  },
});

function isInitialEvent(parsed: ParsedEvent): boolean {
  return (parsed.kind === 'instance' && parsed.event.type === 'initial') || (parsed.kind === 'master' && parsed.type === 'initial');
}

const COMPARED_FIELDS = ['status', 'alias', 'type', 'url', 'config', 'restart', 'tcprx', 'tcptx', 'udprx', 'udptx'] as const;

/** Whether a listed instance says what the tunnel already holds (the fields an event would have changed). */
function agrees(tunnel: import('./tunnel.machine.js').TunnelContext, listed: Instance): boolean {
  for (const field of COMPARED_FIELDS) {
    const ours = field === 'tcprx' || field === 'tcptx' || field === 'udprx' || field === 'udptx' ? tunnel.counters[field] : tunnel[field];
    if (ours !== listed[field]) return false;
  }
  return JSON.stringify(tunnel.meta) === JSON.stringify(listed.meta);
}

/**
 * Ids on which a `GET /instances` listing and our tunnels disagree: a listed instance we hold differently or
 * have never seen, or a tunnel we hold that the master no longer lists. Tombstoned ids are settled (PROTOCOL §7:
 * a deleted id may reappear in a race; we keep it deleted), and unreadable listed ids are never "missing".
 * On a healthy stream this is empty apart from events in flight: every change the master makes is an event.
 */
export function listingDifferences(
  context: EndpointContext,
  instances: readonly Instance[],
  unreadableIds: readonly string[] = [],
  complete = true,
): string[] {
  const differing: string[] = [];
  const listed = new Set<string>(unreadableIds);
  for (const instance of instances) {
    listed.add(instance.id);
    const ref = context.tunnels[instance.id];
    if (!ref) {
      differing.push(instance.id);
      continue;
    }
    const t = ref.getSnapshot();
    if (t.status !== 'active' || t.context.deleted) continue;
    if (t.context.status === null || !agrees(t.context, instance)) differing.push(instance.id);
  }
  if (!complete) return differing;
  for (const [instanceId, ref] of Object.entries(context.tunnels)) {
    if (listed.has(instanceId)) continue;
    const t = ref.getSnapshot();
    if (t.status === 'active' && !t.context.deleted && t.context.status !== null) differing.push(instanceId);
  }
  return differing;
}

/** The newest event time applied to any tunnel (the master's clock), 0 before any. */
function newestStateAt(context: EndpointContext): number {
  let newest = 0;
  for (const ref of Object.values(context.tunnels)) newest = Math.max(newest, ref.getSnapshot().context.stateAt);
  return newest;
}

function holdListing(context: EndpointContext, output: ProbeResult): HeldListing | null {
  if (!output.instances) return null;
  return { instances: output.instances, unreadableIds: output.unreadableIds, complete: output.complete, sentAt: output.sentAt, receivedAt: output.receivedAt, masterAt: newestStateAt(context) };
}

export const endpointMachine = endpointSetup
  .extend({
    actions: {
      countAndRoute: endpointSetup.createAction(
        enqueueActions(({ context, event, enqueue, self }) => {
          if (event.type !== 'stream.event') return;
          const parsed = event.parsed;
          countEvent(context, parsed, event.receivedAt);
          if (parsed.kind === 'master') {
            if (parsed.masterId !== context.masterId || parsed.alias !== context.masterAlias) {
              enqueue.assign({ masterId: parsed.masterId || context.masterId, masterAlias: parsed.alias });
              enqueue({
                type: 'persistMaster',
                params: { endpointId: context.endpointId, masterId: parsed.masterId || context.masterId, alias: parsed.alias, info: context.info },
              });
            }
            return;
          }
          if (parsed.kind !== 'instance') return;
          const instanceEvent = parsed.event;
          tunnelFor(context, self, instanceEvent.instance.id);
          enqueue(() => deliverToTunnel(context, self, instanceEvent, event.receivedAt));
        }),
      ),
      countAndRouteBatch: endpointSetup.createAction(
        enqueueActions(({ context, event, enqueue, self }) => {
          if (event.type !== 'stream.batch') return;
          const items = event.items;
          for (const item of items) tunnelFor(context, self, item.parsed.event.instance.id);
          // In order, each event processed by its tunnel before the next is routed (so an event after a delete
          // sees the tombstone, as it would one by one).
          enqueue(() => {
            for (const item of items) {
              countEvent(context, item.parsed, item.receivedAt);
              deliverToTunnel(context, self, item.parsed.event, item.receivedAt);
            }
          });
        }),
      ),
      /** The tunnels restored with the endpoint (created by the context factory, see `createTunnel`). */
      startTunnels: ({ context }) => {
        for (const ref of Object.values(context.tunnels)) ref.start();
      },
      clearSnapshotUnconfirmed: assign({ snapshotUnconfirmed: false }),
      noteSnapshotMember: assign(({ context, event }) => {
        if (event.type !== 'stream.event') return {};
        const snap = context.snapshot ?? { ids: {}, at: 0 };
        const id = instanceIdOf(event.parsed);
        if (id) snap.ids[id] = true;
        const at = event.parsed.kind === 'instance' ? event.parsed.event.at : event.parsed.kind === 'master' ? event.parsed.at : 0;
        return { snapshot: { ids: snap.ids, at: Math.max(snap.at, at) } };
      }),
      reconcileSnapshot: endpointSetup.createAction(
        enqueueActions(({ context, enqueue }) => {
          const snap = context.snapshot;
          if (!snap || snap.at === 0) return;
          let unconfirmed = false;
          for (const [instanceId, ref] of Object.entries(context.tunnels)) {
            if (snap.ids[instanceId]) continue;
            const t = ref.getSnapshot();
            if (t.status !== 'active' || t.context.deleted) continue;
            if (t.context.stateAt > snap.at) continue; // the snapshot is older than what we know
            if (context.settings.confirmSnapshotDeletions) unconfirmed = true;
            else enqueue.sendTo(ref, { type: 'tunnel.tombstone', at: snap.at, receivedAt: context.lastEventAt, reason: 'missing from snapshot' });
          }
          enqueue.assign({ snapshot: null, snapshotUnconfirmed: unconfirmed });
        }),
      ),
      openConnection: assign(({ context, event }) => {
        const at = event.type === 'stream.opened' ? event.at : context.lastEventAt;
        return {
          connections: context.connections + 1,
          reconnects: context.connections > 0 ? context.reconnects + 1 : context.reconnects,
          connectedAt: at,
          since: at,
          snapshot: { ids: {}, at: 0 },
          eventsSinceProbe: 0,
          probeFailures: 0,
          lastCorrectionAt: 0,
          probeListing: null,
          reconcileListing: null,
          lastError: null,
        };
      }),
      closeOfflineInterval: endpointSetup.createAction(
        enqueueActions(({ context, event, enqueue }) => {
          const open = context.disconnected;
          if (!open || event.type !== 'stream.opened') return;
          const closed = { ...open, to: Math.max(open.from, event.at) };
          enqueue.assign({
            disconnected: null,
            offline: [...context.offline, closed].slice(-context.settings.offlineHistoryLimit),
          });
          enqueue({ type: 'persistOffline', params: { endpointId: context.endpointId, ...closed } });
        }),
      ),
      openOfflineInterval: endpointSetup.createAction(
        enqueueActions(({ context, event, enqueue }, params: unknown) => {
          if (context.disconnected) return; // already disconnected; keep the first cause
          // A cause found by a timer or a probe has no time of its own: the stream is known good up to its last event.
          const at = 'at' in event && typeof event.at === 'number' ? event.at : 'receivedAt' in event ? event.receivedAt : context.lastEventAt;
          const from = Math.max(at, context.lastEventAt);
          const reason = (params as { reason?: StreamCloseKind } | undefined)?.reason ?? describeDisconnect(event);
          const interval: OfflineInterval = { from, to: null, reason };
          enqueue.assign({ disconnected: interval, connectedAt: null, since: from, snapshot: null, lastError: reason });
          enqueue({ type: 'persistOffline', params: { endpointId: context.endpointId, ...interval } });
        }),
      ),
      /** The latest failure (the offline interval keeps the first cause; an operator wants the current one too). */
      noteError: assign(({ event }) => ({ lastError: describeDisconnect(event) })),
      countAttempt: assign(({ context }) => ({ attempt: context.attempt + 1 })),
      resetAttempts: assign({ attempt: 0 }),
      markEnabled: assign({ enabled: true, attempt: 0 }),
      markDisabled: assign({ enabled: false }),
      resetQuietCheck: assign({ eventsSinceProbe: 0 }),
      countProbeFailure: assign(({ context }) => ({ probeFailures: context.probeFailures + 1 })),
      resetProbeFailures: assign({ probeFailures: 0 }),
      applyInfo: endpointSetup.createAction(
        enqueueActions(({ context, event, enqueue }) => {
          if (event.type !== 'master.info') return;
          const masterId = event.info.masterId || context.masterId;
          enqueue.assign({ info: event.info, masterId, masterAlias: event.info.alias || context.masterAlias });
          enqueue({ type: 'persistMaster', params: { endpointId: context.endpointId, masterId, alias: event.info.alias, info: event.info } });
        }),
      ),
      applyListedInstances: endpointSetup.createAction(
        enqueueActions(({ context, event, enqueue, self }) => {
          if (event.type !== 'master.instances') return;
          // An explicit listing (tests, tools): trusted as of `at`, with no in-flight check.
          const held: HeldListing = { instances: event.instances, unreadableIds: [], complete: true, sentAt: Number.POSITIVE_INFINITY, receivedAt: event.at, masterAt: event.at };
          const { corrected, tombstoned } = applyListing(context, self, held, enqueue);
          enqueue.assign({ liveness: { ...context.liveness, corrected: context.liveness.corrected + corrected, tombstoned: context.liveness.tombstoned + tombstoned } });
        }),
      ),
      holdProbeListing: assign(({ context, event }) => {
        const output = (event as { output?: ProbeResult }).output;
        return {
          probeListing: output ? holdListing(context, output) : null,
          liveness: { ...context.liveness, probeMismatches: context.liveness.probeMismatches + 1 },
        };
      }),
      holdReconcileListing: assign(({ context, event }) => {
        const output = (event as { output?: ProbeResult }).output;
        return { reconcileListing: output ? holdListing(context, output) : null };
      }),
      /** Applies a settled listing to the tunnels that heard nothing from the stream since it was requested. */
      applyHeldListing: endpointSetup.createAction(
        enqueueActions(({ context, enqueue, self }, params: unknown) => {
          const which = (params as { which: 'probe' | 'reconcile' }).which;
          const held = which === 'probe' ? context.probeListing : context.reconcileListing;
          const clear = which === 'probe' ? { probeListing: null } : { reconcileListing: null };
          if (!held) return;
          const { corrected, tombstoned } = applyListing(context, self, held, enqueue);
          enqueue.assign({
            ...clear,
            ...(corrected + tombstoned > 0 ? { lastCorrectionAt: held.receivedAt } : {}),
            liveness: { ...context.liveness, corrected: context.liveness.corrected + corrected, tombstoned: context.liveness.tombstoned + tombstoned },
          });
        }),
      ),
      dropProbeListing: assign({ probeListing: null }),
      countProbe: assign(({ context, event }) => ({
        liveness: { ...context.liveness, probes: context.liveness.probes + 1, lastProbeAt: (event as { output?: ProbeResult }).output?.sentAt ?? context.liveness.lastProbeAt },
      })),
      countProbeError: assign(({ context }) => ({
        liveness: { ...context.liveness, probes: context.liveness.probes + 1, probeFailures: context.liveness.probeFailures + 1 },
      })),
      countHalfOpen: assign(({ context }) => ({
        probeListing: null,
        liveness: { ...context.liveness, halfOpenReplaced: context.liveness.halfOpenReplaced + 1 },
      })),
      countReconciliation: assign(({ context, event }) => ({
        liveness: {
          ...context.liveness,
          reconciliations: context.liveness.reconciliations + 1,
          lastReconcileAt: (event as { output?: ProbeResult }).output?.sentAt ?? context.liveness.lastReconcileAt,
        },
      })),
      countReconcileFailure: assign(({ context }) => ({
        liveness: { ...context.liveness, reconciliations: context.liveness.reconciliations + 1, reconcileFailures: context.liveness.reconcileFailures + 1 },
      })),
      countInfoFailure: assign(({ context }) => ({ liveness: { ...context.liveness, infoFailures: context.liveness.infoFailures + 1 } })),
      /** `/info` from a probe or a refresh, applied like a `master.info` event. */
      applyAnsweredInfo: endpointSetup.createAction(
        enqueueActions(({ context, event, enqueue }) => {
          const info = (event as { output?: ProbeResult }).output?.info;
          if (!info) return;
          const masterId = info.masterId || context.masterId;
          enqueue.assign({ info, masterId, masterAlias: info.alias || context.masterAlias });
          enqueue({ type: 'persistMaster', params: { endpointId: context.endpointId, masterId, alias: info.alias, info } });
        }),
      ),
      superviseTunnelError: endpointSetup.createAction(
        enqueueActions(({ context, event, enqueue, self }) => {
          // `xstate.error.actor.<child id>`: a tunnel actor failed (a bug, not bad input). Restart it from its
          // last good context within the budget; past the budget it stays failed and counted.
          const childId = (event as { type: string }).type.slice('xstate.error.actor.'.length);
          const instanceId = childId.slice(childId.indexOf('/') + 1);
          const ref = context.tunnels[instanceId];
          const error = String((event as unknown as { error?: unknown }).error ?? 'unknown error');
          if (!ref) return;
          const restart = context.tunnelRestarts < context.settings.tunnelRestartBudget * Math.max(1, Object.keys(context.tunnels).length);
          enqueue({ type: 'tunnelFailed', params: { endpointId: context.endpointId, instanceId, error, restarted: restart } });
          if (!restart) {
            enqueue.assign({ tunnelFailures: context.tunnelFailures + 1 });
            return;
          }
          const last = ref.getSnapshot().context;
          const restarted = createTunnel(self, context.endpointId, instanceId, context.settings.tunnel, last);
          enqueue(() => {
            stopTunnel(ref);
            context.tunnels[instanceId] = restarted;
            restarted.start();
          });
          enqueue.assign({ tunnelRestarts: context.tunnelRestarts + 1, tunnelFailures: context.tunnelFailures + 1 });
        }),
      ),
      updateName: assign(({ context, event }) => (event.type === 'endpoint.reconfigure' && event.name ? { name: event.name } : { name: context.name })),
    },
  })
  .createMachine({
    id: 'endpoint',
    context: ({ input, self }) => {
      const settings = { ...DEFAULT_ENDPOINT_SETTINGS, ...input.settings };
      const tunnels: Record<string, TunnelRef> = {};
      // Started by the `startTunnels` entry action, once this actor runs.
      for (const restore of input.restoreTunnels ?? []) {
        tunnels[restore.instanceId] = createTunnel(self, input.endpointId, restore.instanceId, settings.tunnel, restore);
      }
      return {
        endpointId: input.endpointId,
        name: input.name,
        enabled: input.enabled !== false,
        masterId: '',
        masterAlias: '',
        info: null,
        connections: 0,
        since: 0,
        connectedAt: null,
        disconnected: input.restoreDisconnected ?? null,
        offline: [],
        reconnects: 0,
        attempt: 0,
        lastError: null,
        snapshot: null,
        snapshotUnconfirmed: false,
        tunnels,
        events: { total: 0, byType: {}, rejected: 0, rejectedReasons: {} },
        lastEventAt: 0,
        eventsSinceProbe: 0,
        probeFailures: 0,
        liveness: {
          probes: 0,
          probeFailures: 0,
          probeMismatches: 0,
          halfOpenReplaced: 0,
          reconciliations: 0,
          reconcileFailures: 0,
          corrected: 0,
          tombstoned: 0,
          infoFailures: 0,
          lastProbeAt: null,
          lastReconcileAt: null,
        },
        probeListing: null,
        reconcileListing: null,
        lastCorrectionAt: 0,
        ignoredAfterTombstone: 0,
        tunnelRestarts: 0,
        tunnelFailures: 0,
        settings,
      };
    },
    entry: 'startTunnels',
    initial: 'starting',
    on: {
      'endpoint.disable': { target: '.disabled', actions: ['openOfflineInterval', 'markDisabled'] },
      'master.info': { actions: 'applyInfo' },
      'master.instances': { actions: 'applyListedInstances' },
      'xstate.error.actor.*': { actions: 'superviseTunnelError' },
    },
    states: {
      starting: {
        always: [{ guard: 'startsEnabled', target: 'enabled' }, { target: 'disabled' }],
      },
      disabled: {
        on: { 'endpoint.enable': { target: 'enabled', actions: 'markEnabled' } },
      },
      enabled: {
        initial: 'online',
        on: {
          'endpoint.reconnect': { target: '.online', reenter: true, actions: 'resetAttempts' },
          'endpoint.reconfigure': { target: '.online', reenter: true, actions: ['updateName', 'resetAttempts'] },
        },
        states: {
          online: {
            invoke: {
              src: 'eventStream',
              id: 'stream',
              input: ({ context }) => ({ endpointId: context.endpointId, connection: context.connections + 1 }),
            },
            initial: 'connecting',
            on: {
              'stream.closed': [
                { guard: 'isAuthFailure', target: 'authFailed', actions: ['openOfflineInterval', 'noteError'] },
                { target: 'backoff', actions: ['openOfflineInterval', 'noteError'] },
              ],
            },
            states: {
              connecting: {
                on: {
                  'stream.opened': { target: 'syncing', actions: ['closeOfflineInterval', 'openConnection'] },
                },
              },
              syncing: {
                after: { snapshotQuiet: { target: 'live', actions: 'reconcileSnapshot' } },
                on: {
                  'stream.event': [
                    // Re-entering restarts the quiet timer: the snapshot is quiet only after its last `initial`.
                    { guard: 'isInitial', target: 'syncing', reenter: true, actions: ['noteSnapshotMember', 'countAndRoute'] },
                    { guard: 'isShutdown', target: '#endpoint.enabled.backoff', actions: ['reconcileSnapshot', 'countAndRoute', 'openOfflineInterval'] },
                    { target: 'live', actions: ['reconcileSnapshot', 'countAndRoute'] },
                  ],
                  'stream.batch': { target: 'live', actions: ['reconcileSnapshot', 'countAndRouteBatch'] },
                },
              },
              /**
               * Three regions: the stream's liveness, the periodic `/info` refresh (and once on arrival), and the
               * periodic `GET /instances` reconciliation. Leaving `live` cancels whatever request is outstanding.
               */
              live: {
                type: 'parallel',
                after: { healthyAfter: { actions: 'resetAttempts' } },
                on: {
                  'stream.event': [
                    { guard: 'isShutdown', target: '#endpoint.enabled.backoff', actions: ['countAndRoute', 'openOfflineInterval'] },
                    { actions: 'countAndRoute' },
                  ],
                  'stream.batch': { actions: 'countAndRouteBatch' },
                },
                states: {
                  liveness: {
                    initial: 'streaming',
                    states: {
                      streaming: {
                        after: {
                          probeInterval: [
                            { guard: 'quietSinceLastCheck', target: 'probing' },
                            { target: 'streaming', reenter: true, actions: 'resetQuietCheck' },
                          ],
                        },
                      },
                      /** Quiet for a whole interval: does the master answer, and does its listing match ours? */
                      probing: {
                        invoke: {
                          src: 'probeMaster',
                          input: ({ context }) => ({ endpointId: context.endpointId, info: true, instances: true }),
                          onDone: [
                            { guard: 'masterChangedUnseen', target: 'confirming', actions: ['countProbe', 'resetProbeFailures', 'applyAnsweredInfo', 'holdProbeListing'] },
                            { target: 'streaming', actions: ['countProbe', 'resetProbeFailures', 'applyAnsweredInfo', 'resetQuietCheck'] },
                          ],
                          onError: [
                            {
                              guard: 'probeLimitReached',
                              target: '#endpoint.enabled.backoff',
                              actions: ['countProbeError', { type: 'openOfflineInterval', params: { reason: 'probe-failed' } }],
                            },
                            { target: 'streaming', actions: ['countProbeError', 'countProbeFailure'] },
                          ],
                        },
                      },
                      /**
                       * The master changed things the silent stream should have carried. One settle period of grace
                       * for events in flight: any event means the stream is alive (the listing is then applied where
                       * it is still news); none means the stream is half-open, and it is replaced.
                       */
                      confirming: {
                        after: {
                          reconcileSettle: [
                            {
                              guard: 'quietSinceLastCheck',
                              target: '#endpoint.enabled.backoff',
                              actions: ['countHalfOpen', { type: 'openOfflineInterval', params: { reason: 'half-open' } }],
                            },
                            { target: 'streaming', actions: [{ type: 'applyHeldListing', params: { which: 'probe' } }, 'resetQuietCheck'] },
                          ],
                        },
                      },
                    },
                  },
                  info: {
                    initial: 'fetching',
                    states: {
                      waiting: { after: { infoRefresh: 'fetching' } },
                      fetching: {
                        invoke: {
                          src: 'probeMaster',
                          input: ({ context }) => ({ endpointId: context.endpointId, info: true, instances: false }),
                          onDone: { target: 'waiting', actions: 'applyAnsweredInfo' },
                          onError: { target: 'waiting', actions: 'countInfoFailure' },
                        },
                      },
                    },
                  },
                  reconcile: {
                    initial: 'deciding',
                    states: {
                      /** A snapshot that lacked tunnels we hold is confirmed by a listing at once. */
                      deciding: { always: [{ guard: 'snapshotUnconfirmed', target: 'listing' }, { target: 'waiting' }] },
                      waiting: { after: { reconcileInterval: 'listing' } },
                      listing: {
                        entry: 'clearSnapshotUnconfirmed',
                        invoke: {
                          src: 'probeMaster',
                          input: ({ context }) => ({ endpointId: context.endpointId, info: false, instances: true }),
                          onDone: [
                            { guard: 'listingDisagrees', target: 'settling', actions: ['countReconciliation', 'holdReconcileListing'] },
                            { target: 'waiting', actions: 'countReconciliation' },
                          ],
                          onError: { target: 'waiting', actions: 'countReconcileFailure' },
                        },
                      },
                      /** Events in flight when the master answered arrive now and win over the listing. */
                      settling: {
                        after: { reconcileSettle: { target: 'waiting', actions: { type: 'applyHeldListing', params: { which: 'reconcile' } } } },
                      },
                    },
                  },
                },
              },
            },
          },
          backoff: {
            entry: 'countAttempt',
            after: { backoff: { target: 'online' } },
          },
          authFailed: {},
        },
      },
    },
  });

function describeDisconnect(event: EndpointEvent | { type: string }): string {
  if (event.type === 'stream.closed') {
    const e = event as Extract<EndpointEvent, { type: 'stream.closed' }>;
    return e.message ? `${e.kind}: ${e.message}` : e.kind;
  }
  if (event.type === 'stream.event') return 'shutdown';
  if (event.type === 'endpoint.disable') return 'disabled';
  if (event.type.startsWith('xstate.error.actor')) return 'probe-failed';
  return event.type;
}

/**
 * Applies a settled listing: each listed instance that disagrees with its tunnel becomes an `update` for it,
 * and each tunnel the master no longer lists gets a tombstone — but only for tunnels that heard nothing from
 * the stream since the listing was requested (the stream is fresher than the listing there). The listing's
 * time is the newest event time we had applied (the master's clock; the listing is at least that new), or the
 * tunnel's own last state time if newer, so a listing never passes for older than what it corrects and never
 * mixes our clock into the master's.
 */
function applyListing(
  context: EndpointContext,
  endpoint: AnyActorRef,
  held: HeldListing,
  enqueue: {
    (action: () => void): void;
    sendTo: (ref: TunnelRef, event: TunnelEvent) => void;
  },
): { corrected: number; tombstoned: number } {
  let corrected = 0;
  let tombstoned = 0;
  const baseAt = held.masterAt || held.sentAt;
  const listed = new Set<string>(held.unreadableIds);
  for (const instance of held.instances) {
    listed.add(instance.id);
    const ref = context.tunnels[instance.id];
    let at = baseAt;
    if (ref) {
      const t = ref.getSnapshot();
      if (t.status !== 'active' || t.context.deleted) continue;
      if (t.context.updatedAt >= held.sentAt) continue;
      if (t.context.status !== null && agrees(t.context, instance)) continue;
      at = Math.max(at, t.context.stateAt);
    }
    const update: InstanceEvent = { type: 'update', at, time: new Date(at).toISOString(), instance, logs: '' };
    tunnelFor(context, endpoint, instance.id);
    enqueue(() => deliverToTunnel(context, endpoint, update, held.receivedAt));
    corrected++;
  }
  if (!held.complete) return { corrected, tombstoned };
  for (const [instanceId, ref] of Object.entries(context.tunnels)) {
    if (listed.has(instanceId)) continue;
    const t = ref.getSnapshot();
    if (t.status !== 'active' || t.context.deleted || t.context.status === null || t.context.updatedAt >= held.sentAt) continue;
    const at = Math.max(baseAt, t.context.stateAt);
    enqueue.sendTo(ref, { type: 'tunnel.tombstone', at, receivedAt: held.receivedAt, reason: 'missing from GET /instances' });
    tombstoned++;
  }
  return { corrected, tombstoned };
}

/**
 * Tunnel actors are children of their endpoint — same actor system, `parent` set, so their errors and their end
 * reach the endpoint exactly as a spawned child's would — but they are created with `createActor` rather than
 * `spawn`, so they are not entered in XState's `snapshot.children`. XState copies that record on every spawn and
 * on every stop, which made one endpoint take 12 s to spawn 4,000 tunnels and 14 s to stop them (quadratic,
 * docs/performance.md). The endpoint's `tunnels` record is their one registry: `stopTunnels` stops them, and the
 * fleet calls it before it stops an endpoint. Not started here: the caller starts the actor once it is recorded.
 */
function createTunnel(endpoint: AnyActorRef, endpointId: number, instanceId: string, settings: Partial<TunnelSettings> | undefined, restore?: TunnelContext): TunnelRef {
  // The tunnel logic the endpoint was provided with (the runtime's effects), as `spawn('tunnel')` would use.
  const logic = (endpoint as unknown as { logic: { implementations: { actors: { tunnel?: typeof tunnelMachine } } } }).logic.implementations.actors.tunnel ?? tunnelMachine;
  return createActor(logic, {
    parent: endpoint,
    id: actorId.tunnel(endpointId, instanceId),
    src: 'tunnel',
    input: restore ? { endpointId, instanceId, settings, restore } : { endpointId, instanceId, settings },
  }) as unknown as TunnelRef;
}

/**
 * Stops a tunnel actor. XState refuses `stop()` on an actor with a parent and stops children with the internal
 * `_stop()` (what its own `stopChild` runs); the tests cover it, so an XState upgrade that renames it fails loudly.
 */
function stopTunnel(ref: TunnelRef): void {
  (ref as unknown as { _stop(): void })._stop();
}

/** Stops every tunnel actor of an endpoint (linear; see `createTunnel`). */
export function stopTunnels(endpoint: { getSnapshot(): { context: Pick<EndpointContext, 'tunnels'> } }): void {
  for (const ref of Object.values(endpoint.getSnapshot().context.tunnels)) stopTunnel(ref);
}

/**
 * The live endpoint's `stream.batch` — a targetless transition that only counts and routes — applied without
 * XState's transition of this (parallel, many-region) machine, which costs ~20 µs per batch: at the small
 * batches of a process that keeps up (one socket read, a few events), that was a tenth of the ingest CPU
 * (docs/performance.md). Same counting and routing as `countAndRouteBatch`; returns false, and the caller sends
 * the batch, whenever the endpoint is not live (in `syncing` a batch also makes it live) or an inspector is
 * attached. Call it only from outside any actor's processing (the stream's input callbacks), as a send would be.
 */
export function routeBatchInPlace(endpoint: ActorRefFrom<typeof endpointMachine>, items: readonly BatchItem[]): boolean {
  const snapshot = endpoint.getSnapshot();
  if (snapshot.status !== 'active' || !isLive(snapshot) || isSystemInspected(endpoint.system)) return false;
  const context = snapshot.context;
  for (const item of items) {
    countEvent(context, item.parsed, item.receivedAt);
    deliverToTunnel(context, endpoint, item.parsed.event, item.receivedAt);
  }
  return true;
}

const LIVE = { enabled: { online: 'live' } } as const;
/**
 * `matches(LIVE)` by snapshot: a snapshot never changes, and an endpoint receives thousands of batches between two
 * transitions, while XState's `matches` rebuilds the state value each time (2 % of the ingest thread at 45k/s).
 */
const liveBySnapshot = new WeakMap<object, boolean>();
function isLive(snapshot: SnapshotFrom<typeof endpointMachine>): boolean {
  let live = liveBySnapshot.get(snapshot);
  if (live === undefined) liveBySnapshot.set(snapshot, (live = snapshot.matches(LIVE)));
  return live;
}

/** Tunnel actors created and recorded but not started yet: each starts when its first event is delivered. */
const unstarted = new WeakSet<TunnelRef>();

/**
 * The tunnel actor of an instance, created on first sight and recorded (not started: `deliverToTunnel` starts it).
 * Called while an action is resolved, not inside an executed action: XState (development build) warns about
 * creating an actor inside a custom action, as `spawn` would be created during resolution too.
 */
function tunnelFor(context: EndpointContext, endpoint: AnyActorRef, instanceId: string): TunnelRef {
  let ref = context.tunnels[instanceId];
  if (!ref) {
    ref = createTunnel(endpoint, context.endpointId, instanceId, context.settings.tunnel);
    context.tunnels[instanceId] = ref;
    unstarted.add(ref);
  }
  return ref;
}

/** Hands an instance event to its tunnel actor (created by `tunnelFor` if it is new); events after a tombstone are counted. */
function deliverToTunnel(context: EndpointContext, endpoint: AnyActorRef, event: InstanceEvent, receivedAt: number): void {
  const ref = tunnelFor(context, endpoint, event.instance.id);
  if (unstarted.delete(ref)) ref.start();
  else if (ref.getSnapshot().status === 'done') {
    // A tombstone: the instance was deleted; later events for it are ignored and counted (PROTOCOL §7).
    context.ignoredAfterTombstone++;
    return;
  }
  if (!observeInPlace(ref, event, receivedAt, context.connections)) {
    ref.send({ type: 'tunnel.observe', event, receivedAt, connection: context.connections });
  }
}

export type EndpointMachine = typeof endpointMachine;
