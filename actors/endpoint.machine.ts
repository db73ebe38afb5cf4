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
import { assign, enqueueActions, fromCallback, fromPromise, setup, type ActorRefFrom } from 'xstate';
import { actorId, type Instance, type InstanceEvent, type MasterInfo, type ParsedEvent } from './model.js';
import type { OfflineRecord } from './records.js';
import { tunnelMachine, type TunnelSettings } from './tunnel.machine.js';

export type TunnelRef = ActorRefFrom<typeof tunnelMachine>;

export interface EndpointSettings {
  /** Quiet time after which an unfinished `initial` snapshot is taken as complete. */
  snapshotQuietMs: number;
  /** How often a live stream is checked; a check probes the master only if no event came since the last one. */
  probeIntervalMs: number;
  /** Consecutive failed probes after which the stream is taken as dead (half-open) and replaced. */
  probeFailureLimit: number;
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
  probeIntervalMs: 30_000,
  probeFailureLimit: 2,
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
  tunnels: Record<string, TunnelRef>;
  events: EventCounts;
  lastEventAt: number;
  eventsSinceProbe: number;
  probeFailures: number;
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
  | 'stale';

export type EndpointEvent =
  | { type: 'stream.opened'; at: number }
  | { type: 'stream.event'; parsed: ParsedEvent; receivedAt: number }
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
}

/** Backoff with "equal jitter": half the exponential step fixed, half random. */
export function backoffDelay(attempt: number, baseMs: number, capMs: number, random: () => number = Math.random): number {
  const step = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(step / 2 + random() * (step / 2));
}

const MAX_REJECT_REASONS = 50;

function countEvent(events: EventCounts, parsed: ParsedEvent): EventCounts {
  if (parsed.kind === 'rejected') {
    const reasons = { ...events.rejectedReasons };
    const key = parsed.reason in reasons || Object.keys(reasons).length < MAX_REJECT_REASONS ? parsed.reason : 'other';
    reasons[key] = (reasons[key] ?? 0) + 1;
    return { ...events, total: events.total + 1, rejected: events.rejected + 1, rejectedReasons: reasons };
  }
  const type = parsed.kind === 'instance' ? parsed.event.type : parsed.kind === 'shutdown' ? 'shutdown' : parsed.type;
  events.byType[type] = (events.byType[type] ?? 0) + 1; // owned by this actor; avoids a copy per event
  return { ...events, total: events.total + 1 };
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
    /** Liveness probe and reconciliation: GET /info and GET /instances. Supplied by the runtime. */
    probeMaster: fromPromise<{ instances: Instance[] | null; at: number }, ProbeInput>(async () => ({ instances: null, at: 0 })),
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
    healthyAfter: ({ context }) => context.settings.healthyAfterMs,
    backoff: ({ context }) => backoffDelay(context.attempt, context.settings.backoffBaseMs, context.settings.backoffCapMs),
  },
  guards: {
    isInitial: ({ event }) => event.type === 'stream.event' && isInitialEvent(event.parsed),
    isShutdown: ({ event }) => event.type === 'stream.event' && event.parsed.kind === 'shutdown',
    isAuthFailure: ({ event }) => event.type === 'stream.closed' && event.kind === 'auth',
    quietSinceLastCheck: ({ context }) => context.eventsSinceProbe === 0,
    probeLimitReached: ({ context }) => context.probeFailures + 1 >= context.settings.probeFailureLimit,
    startsEnabled: ({ context }) => context.enabled,
  },
});

function isInitialEvent(parsed: ParsedEvent): boolean {
  return (parsed.kind === 'instance' && parsed.event.type === 'initial') || (parsed.kind === 'master' && parsed.type === 'initial');
}

export const endpointMachine = endpointSetup
  .extend({
    actions: {
      countAndRoute: endpointSetup.createAction(
        enqueueActions(({ context, event, enqueue }) => {
          if (event.type !== 'stream.event') return;
          const parsed = event.parsed;
          enqueue.assign({
            events: countEvent(context.events, parsed),
            lastEventAt: event.receivedAt,
            eventsSinceProbe: context.eventsSinceProbe + 1,
          });
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
          routeToTunnel(context, parsed.event, event.receivedAt, enqueue);
        }),
      ),
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
          for (const [instanceId, ref] of Object.entries(context.tunnels)) {
            if (snap.ids[instanceId]) continue;
            const t = ref.getSnapshot();
            if (t.status !== 'active' || t.context.deleted) continue;
            if (t.context.stateAt > snap.at) continue; // the snapshot is older than what we know
            enqueue.sendTo(ref, { type: 'tunnel.tombstone', at: snap.at, receivedAt: context.lastEventAt, reason: 'missing from snapshot' });
          }
          enqueue.assign({ snapshot: null });
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
        enqueueActions(({ context, event, enqueue }) => {
          if (context.disconnected) return; // already disconnected; keep the first cause
          const at = 'at' in event ? event.at : 'receivedAt' in event ? event.receivedAt : context.lastEventAt;
          const from = Math.max(at, context.lastEventAt);
          const reason = describeDisconnect(event);
          const interval: OfflineInterval = { from, to: null, reason };
          enqueue.assign({ disconnected: interval, connectedAt: null, since: from, snapshot: null, lastError: reason });
          enqueue({ type: 'persistOffline', params: { endpointId: context.endpointId, ...interval } });
        }),
      ),
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
        enqueueActions(({ context, event, enqueue }) => {
          if (event.type !== 'master.instances') return;
          const ids: Record<string, true> = {};
          for (const instance of event.instances) {
            ids[instance.id] = true;
            const time = new Date(event.at).toISOString();
            routeToTunnel(context, { type: 'update', at: event.at, time, instance, logs: '' }, event.at, enqueue);
          }
          for (const [instanceId, ref] of Object.entries(context.tunnels)) {
            if (ids[instanceId]) continue;
            const t = ref.getSnapshot();
            if (t.status !== 'active' || t.context.deleted || t.context.stateAt > event.at) continue;
            enqueue.sendTo(ref, { type: 'tunnel.tombstone', at: event.at, receivedAt: event.at, reason: 'missing from GET /instances' });
          }
        }),
      ),
      superviseTunnelError: endpointSetup.createAction(
        enqueueActions(({ context, event, enqueue }) => {
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
          enqueue.stopChild(ref);
          enqueue.assign(({ spawn }) => {
            context.tunnels[instanceId] = spawn('tunnel', {
              id: actorId.tunnel(context.endpointId, instanceId),
              input: { endpointId: context.endpointId, instanceId, settings: context.settings.tunnel, restore: last },
            }) as TunnelRef;
            return { tunnels: context.tunnels, tunnelRestarts: context.tunnelRestarts + 1, tunnelFailures: context.tunnelFailures + 1 };
          });
        }),
      ),
      updateName: assign(({ context, event }) => (event.type === 'endpoint.reconfigure' && event.name ? { name: event.name } : { name: context.name })),
    },
  })
  .createMachine({
    id: 'endpoint',
    context: ({ input, spawn }) => {
      const settings = { ...DEFAULT_ENDPOINT_SETTINGS, ...input.settings };
      const tunnels: Record<string, TunnelRef> = {};
      for (const restore of input.restoreTunnels ?? []) {
        tunnels[restore.instanceId] = spawn('tunnel', {
          id: actorId.tunnel(input.endpointId, restore.instanceId),
          input: { endpointId: input.endpointId, instanceId: restore.instanceId, settings: settings.tunnel, restore },
        }) as TunnelRef;
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
        tunnels,
        events: { total: 0, byType: {}, rejected: 0, rejectedReasons: {} },
        lastEventAt: 0,
        eventsSinceProbe: 0,
        probeFailures: 0,
        ignoredAfterTombstone: 0,
        tunnelRestarts: 0,
        tunnelFailures: 0,
        settings,
      };
    },
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
                { guard: 'isAuthFailure', target: 'authFailed', actions: 'openOfflineInterval' },
                { target: 'backoff', actions: 'openOfflineInterval' },
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
                    { guard: 'isInitial', actions: ['noteSnapshotMember', 'countAndRoute'] },
                    { guard: 'isShutdown', target: '#endpoint.enabled.backoff', actions: ['reconcileSnapshot', 'countAndRoute', 'openOfflineInterval'] },
                    { target: 'live', actions: ['reconcileSnapshot', 'countAndRoute'] },
                  ],
                },
              },
              live: {
                initial: 'streaming',
                after: { healthyAfter: { actions: 'resetAttempts' } },
                on: {
                  'stream.event': [
                    { guard: 'isShutdown', target: '#endpoint.enabled.backoff', actions: ['countAndRoute', 'openOfflineInterval'] },
                    { actions: 'countAndRoute' },
                  ],
                },
                states: {
                  streaming: {
                    after: {
                      probeInterval: [
                        { guard: 'quietSinceLastCheck', target: 'probing' },
                        { target: 'streaming', reenter: true, actions: 'resetQuietCheck' },
                      ],
                    },
                  },
                  /** The stream has been quiet for a whole interval: ask the master whether it is alive. */
                  probing: {
                    invoke: {
                      src: 'probeMaster',
                      input: ({ context }) => ({ endpointId: context.endpointId }),
                      onDone: { target: 'streaming', actions: ['resetProbeFailures', 'resetQuietCheck'] },
                      onError: [
                        { guard: 'probeLimitReached', target: '#endpoint.enabled.backoff', actions: 'openOfflineInterval' },
                        { target: 'streaming', actions: 'countProbeFailure' },
                      ],
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

/** Sends an instance event to its tunnel actor, spawning the actor on first sight. */
function routeToTunnel(
  context: EndpointContext,
  event: InstanceEvent,
  receivedAt: number,
  enqueue: {
    assign: (fn: (args: { spawn: (src: 'tunnel', opts: { id: string; input: import('./tunnel.machine.js').TunnelInput }) => unknown }) => Partial<EndpointContext>) => void;
    sendTo: (ref: TunnelRef | (() => TunnelRef), ev: import('./tunnel.machine.js').TunnelEvent) => void;
  },
): void {
  const instanceId = event.instance.id;
  let ref = context.tunnels[instanceId];
  if (ref && ref.getSnapshot().status === 'done') {
    // A tombstone: the instance was deleted; later events for it are ignored and counted (PROTOCOL §7).
    enqueue.assign(() => ({ ignoredAfterTombstone: context.ignoredAfterTombstone + 1 }));
    return;
  }
  const observation = { type: 'tunnel.observe' as const, event, receivedAt, connection: context.connections };
  if (!ref) {
    let spawned: TunnelRef | undefined;
    enqueue.assign(({ spawn }) => {
      // The record is owned by this actor; adding in place avoids copying thousands of entries per spawn.
      spawned = spawn('tunnel', {
        id: actorId.tunnel(context.endpointId, instanceId),
        input: { endpointId: context.endpointId, instanceId, settings: context.settings.tunnel },
      }) as TunnelRef;
      context.tunnels[instanceId] = spawned;
      return { tunnels: context.tunnels };
    });
    // Resolved after the assign above has run, in enqueue order.
    enqueue.sendTo(() => spawned!, observation);
    return;
  }
  enqueue.sendTo(ref, observation);
}

export type EndpointMachine = typeof endpointMachine;
