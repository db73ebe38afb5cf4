/**
 * The endpoint machine (actors/endpoint.machine.ts) on a simulated clock: connection lifecycle, snapshot
 * reconciliation, backoff, auth failures, probing, and the tunnel actors it owns.
 */
import { describe, expect, it } from 'vitest';
import { createActor, fromCallback, fromPromise } from 'xstate';
import {
  backoffDelay,
  endpointMachine,
  spread,
  stopTunnels,
  type EndpointEvent,
  type EndpointSettings,
  type ProbeInput,
  type ProbeResult,
  type StreamInput,
} from '../../actors/endpoint.machine.js';
import { actorId, type Instance, type InstanceStatus, type ParsedEvent } from '../../actors/model.js';
import type { OfflineRecord } from '../../actors/records.js';
import { parseNodePassPayload } from '../../src/protocol/events.js';
import { SteppedClock } from '../../src/runtime/stepped-clock.js';
import { captureDataLines } from '../support/captures.js';
import { instance, instanceEvent, T0 } from '../support/instances.js';

const SETTINGS: Partial<EndpointSettings> = {
  snapshotQuietMs: 1_000,
  probeIntervalMs: 30_000,
  probeFailureLimit: 2,
  healthyAfterMs: 60_000,
  backoffBaseMs: 1_000,
  backoffCapMs: 8_000,
};

const MASTER_ID = '1ab781946d30b9c8';
const API_KEY = '1a040764b530633900dadf3b18cc8830';

/** What the fake master answers: 'ok' (nothing to compare), 'fail' (an error), or a listing of instances. */
type ProbeOutcome = 'ok' | 'fail' | Instance[] | { instances: Instance[]; unreadableIds: string[]; complete: boolean };

interface Harness {
  actor: ReturnType<typeof createActor<typeof endpointMachine>>;
  clock: SteppedClock;
  /** Every stream the machine opened (invoked), with its input, and how many were closed by the machine. */
  streams: StreamInput[];
  streamsStopped: () => number;
  /** Liveness probes (/info + /instances), info refreshes (/info), reconciliations (/instances). */
  probes: number;
  infoFetches: number;
  listings: number;
  offline: OfflineRecord[];
  masters: { masterId: string; alias: string }[];
  errors: unknown[];
  value: () => unknown;
  ctx: () => ReturnType<Harness['actor']['getSnapshot']>['context'];
  send: (e: EndpointEvent) => void;
  /** Advances the simulated clock by `ms`, letting promise actors (the probe) settle at each step. */
  advance: (ms: number) => Promise<void>;
}

const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

function startEndpoint(
  opts: {
    settings?: Partial<EndpointSettings>;
    probe?: () => ProbeOutcome;
    /** The answer to the periodic `GET /instances` (default: nothing to compare). */
    listing?: () => ProbeOutcome;
    enabled?: boolean;
    now?: number;
  } = {},
): Harness {
  const clock = new SteppedClock(opts.now ?? T0);
  const streams: StreamInput[] = [];
  let stopped = 0;
  const offline: OfflineRecord[] = [];
  const masters: { masterId: string; alias: string }[] = [];
  const h = { probes: 0, infoFetches: 0, listings: 0 } as Harness;
  const machine = endpointMachine.provide({
    actors: {
      eventStream: fromCallback<EndpointEvent, StreamInput>(({ input }) => {
        streams.push(input);
        return () => void stopped++;
      }),
      probeMaster: fromPromise<ProbeResult, ProbeInput>(async ({ input }) => {
        const sentAt = clock.now();
        let outcome: ProbeOutcome = 'ok';
        if (input.info && input.instances) {
          h.probes++;
          outcome = (opts.probe ?? (() => 'ok'))();
        } else if (input.instances) {
          h.listings++;
          outcome = (opts.listing ?? (() => 'ok'))();
        } else {
          h.infoFetches++;
        }
        if (outcome === 'fail') throw new Error('GET /info: timeout');
        const info = input.info ? { masterId: MASTER_ID, alias: 'lab', version: 'v1.14.0', os: 'linux', arch: 'amd64', name: 'h', uptime: 1, system: {} } : null;
        if (outcome === 'ok') return { info, instances: null, unreadableIds: [], complete: true, sentAt, receivedAt: clock.now() };
        if (Array.isArray(outcome)) return { info, instances: outcome, unreadableIds: [], complete: true, sentAt, receivedAt: clock.now() };
        return { info, ...outcome, sentAt, receivedAt: clock.now() };
      }),
    },
    actions: {
      persistOffline: (_, p: OfflineRecord) => void offline.push({ ...p }),
      persistMaster: (_, p) => void masters.push({ masterId: p.masterId, alias: p.alias }),
    },
  });
  const actor = createActor(machine, {
    clock,
    input: { endpointId: 1, name: 'm1', settings: { ...SETTINGS, ...opts.settings }, enabled: opts.enabled },
  });
  const errors: unknown[] = [];
  actor.subscribe({ error: (e) => errors.push(e) });
  actor.start();
  return Object.assign(h, {
    actor,
    clock,
    streams,
    streamsStopped: () => stopped,
    offline,
    masters,
    errors,
    value: () => livenessView(actor.getSnapshot().value),
    ctx: () => actor.getSnapshot().context,
    send: (e: EndpointEvent) => actor.send(e),
    advance: async (ms: number) => {
      const target = clock.now() + ms;
      // One millisecond at a time would be slow; a timer's callback may start a promise, so settle after each.
      while (clock.now() < target) {
        const step = Math.min(target, clock.now() + 250);
        clock.advanceTo(step);
        await settle();
      }
    },
  });
}

/**
 * `live` is parallel (liveness, info, reconcile); most tests care about the liveness region only, so the
 * value is shown as `{ enabled: { online: { live: <liveness state> } } }`.
 */
function livenessView(value: unknown): unknown {
  const live = (value as { enabled?: { online?: { live?: { liveness?: string } } } }).enabled?.online?.live;
  return live && typeof live === 'object' ? { enabled: { online: { live: live.liveness } } } : value;
}

const live = { enabled: { online: { live: 'streaming' } } };
const probing = { enabled: { online: { live: 'probing' } } };

function inst(id: string, at: number, type: 'initial' | 'update' | 'delete' | 'log' = 'update', status: InstanceStatus = 'running', extra: Partial<Instance> = {}): ParsedEvent {
  return { kind: 'instance', event: instanceEvent(type, at, { id, status, ...extra }, type === 'log' ? 'a line' : '') };
}
const master = (at: number, type: 'initial' | 'update' = 'initial'): ParsedEvent => ({ kind: 'master', type, at, masterId: MASTER_ID, alias: '' });
const shutdown = (at: number): ParsedEvent => ({ kind: 'shutdown', at, time: new Date(at).toISOString() });

/** Sends a stream event received "now" on the simulated clock. */
function event(h: Harness, parsed: ParsedEvent): void {
  h.send({ type: 'stream.event', parsed, receivedAt: h.clock.now() });
}

/** Opens a connection and delivers an `initial` snapshot made of `ids` (plus the API-key record). */
function connectWithSnapshot(h: Harness, ids: string[], snapshotAt = h.clock.now()): void {
  h.send({ type: 'stream.opened', at: h.clock.now() });
  event(h, master(snapshotAt));
  for (const id of ids) event(h, inst(id, snapshotAt, 'initial'));
}

const tunnelState = (h: Harness, id: string) => h.ctx().tunnels[id]?.getSnapshot();

describe('connection lifecycle', () => {
  it('goes connecting → syncing on stream.opened, stays syncing during the snapshot, and is live at the first other event', () => {
    const h = startEndpoint();
    expect(h.value()).toEqual({ enabled: { online: 'connecting' } });
    expect(h.streams).toEqual([{ endpointId: 1, connection: 1 }]);
    h.send({ type: 'stream.opened', at: T0 });
    expect(h.value()).toEqual({ enabled: { online: 'syncing' } });
    event(h, master(T0));
    event(h, inst('a236701f', T0, 'initial'));
    expect(h.value()).toEqual({ enabled: { online: 'syncing' } });
    event(h, inst('a236701f', T0 + 5, 'update'));
    expect(h.value()).toEqual(live);
    expect(h.ctx()).toMatchObject({ connections: 1, reconnects: 0, connectedAt: T0 });
    expect(h.ctx().events.byType).toEqual({ initial: 2, update: 1 });
    expect(h.errors).toEqual([]);
  });

  it('completes the snapshot after the quiet delay when nothing else comes', async () => {
    const h = startEndpoint();
    connectWithSnapshot(h, ['a236701f']);
    await h.advance(999);
    expect(h.value()).toEqual({ enabled: { online: 'syncing' } });
    await h.advance(1);
    expect(h.value()).toEqual(live);
    expect(h.ctx().snapshot).toBeNull();
  });

  it('makes every tunnel a child of the endpoint (its parent, same system), keyed by kind:id, outside XState children', () => {
    const h = startEndpoint();
    connectWithSnapshot(h, ['a236701f', '5cc1f9b2']);
    const tunnels = h.ctx().tunnels;
    expect(Object.values(tunnels).map((t) => t.id).sort()).toEqual([actorId.tunnel(1, '5cc1f9b2'), actorId.tunnel(1, 'a236701f')]);
    for (const ref of Object.values(tunnels)) {
      expect((ref as unknown as { _parent: unknown })._parent).toBe(h.actor);
      expect(ref.system).toBe(h.actor.system);
    }
    // Not in XState's children record, which XState copies per spawn and per stop (quadratic).
    expect(Object.keys(h.actor.getSnapshot().children).filter((k) => k.startsWith('tunnel:'))).toEqual([]);
    expect(tunnelState(h, 'a236701f')!.value).toBe('running');
  });

  it('stops its tunnel actors with stopTunnels, linearly: 3,000 tunnels created and stopped', () => {
    const h = startEndpoint();
    const ids = Array.from({ length: 3_000 }, (_, i) => `t${i}`);
    connectWithSnapshot(h, ids);
    const refs = Object.values(h.ctx().tunnels);
    expect(refs).toHaveLength(3_000);
    expect(refs.every((r) => r.getSnapshot().status === 'active')).toBe(true);
    stopTunnels(h.actor);
    expect(refs.every((r) => (r as unknown as { _processingStatus: number })._processingStatus === 2)).toBe(true);
  });
});

describe('snapshot reconciliation', () => {
  async function reconnect(h: Harness): Promise<void> {
    h.send({ type: 'stream.closed', at: h.clock.now(), kind: 'eof' });
    await h.advance(SETTINGS.backoffCapMs!);
    expect(h.value()).toEqual({ enabled: { online: 'connecting' } });
  }

  // Replay's mode: no master to ask, so the snapshot is trusted at once.
  const IMMEDIATE = { settings: { confirmSnapshotDeletions: false } };

  it('tombstones a tunnel missing from a newer snapshot (replay: at once)', async () => {
    const h = startEndpoint(IMMEDIATE);
    connectWithSnapshot(h, ['a236701f', '5cc1f9b2']);
    await h.advance(1_000);
    await reconnect(h);
    connectWithSnapshot(h, ['a236701f']);
    event(h, inst('a236701f', h.clock.now(), 'update'));
    expect(tunnelState(h, '5cc1f9b2')!.value).toBe('deleted');
    expect(tunnelState(h, '5cc1f9b2')!.context.deleted).toBe(true);
    expect(tunnelState(h, 'a236701f')!.value).toBe('running');
  });

  it('tombstones it too when the snapshot completes by the quiet delay (replay: at once)', async () => {
    const h = startEndpoint(IMMEDIATE);
    connectWithSnapshot(h, ['a236701f', '5cc1f9b2']);
    await h.advance(1_000);
    await reconnect(h);
    connectWithSnapshot(h, ['a236701f']);
    await h.advance(1_000);
    expect(tunnelState(h, '5cc1f9b2')!.value).toBe('deleted');
  });

  it('live: a tunnel missing from the snapshot is tombstoned only once GET /instances confirms it', async () => {
    let listing: Instance[] = [];
    const h = startEndpoint({ settings: { reconcileIntervalMs: 600_000, reconcileSettleMs: 1_000 }, listing: () => listing });
    connectWithSnapshot(h, ['a236701f', '5cc1f9b2']);
    await h.advance(1_000);
    await reconnect(h);
    const listingsBefore = h.listings;
    listing = [instance({ id: 'a236701f' })];
    connectWithSnapshot(h, ['a236701f']);
    event(h, inst('a236701f', h.clock.now(), 'update'));
    // Not yet: the snapshot alone may be incomplete; a listing is asked for at once, not after the interval.
    expect(tunnelState(h, '5cc1f9b2')!.value).toBe('running');
    await h.advance(250);
    expect(h.listings).toBe(listingsBefore + 1);
    await h.advance(1_500);
    expect(tunnelState(h, '5cc1f9b2')!.value).toBe('deleted');
    expect(h.ctx().liveness.tombstoned).toBe(1);
  });

  it('live: a snapshot cut short (the quiet timer fired mid-snapshot) tombstones nothing the master still lists', async () => {
    const ids = ['a236701f', '5cc1f9b2', 'deadbeef'];
    const h = startEndpoint({ settings: { reconcileIntervalMs: 600_000, reconcileSettleMs: 1_000 }, listing: () => ids.map((id) => instance({ id })) });
    connectWithSnapshot(h, ids);
    await h.advance(1_000);
    await reconnect(h);
    h.send({ type: 'stream.opened', at: h.clock.now() });
    event(h, master(h.clock.now()));
    event(h, inst('a236701f', h.clock.now(), 'initial'));
    await h.advance(1_000); // the rest of the snapshot is late: the quiet delay ends syncing first
    for (const id of ['5cc1f9b2', 'deadbeef']) event(h, inst(id, h.clock.now(), 'initial'));
    await h.advance(2_000);
    for (const id of ids) expect(tunnelState(h, id)!.value).toBe('running');
    expect(h.ctx().liveness.tombstoned).toBe(0);
  });

  it('the quiet delay runs from the last `initial`, not from the first', async () => {
    const h = startEndpoint(IMMEDIATE);
    h.send({ type: 'stream.opened', at: h.clock.now() });
    event(h, master(h.clock.now()));
    for (let i = 0; i < 4; i++) {
      event(h, inst(`0000000${i}`, h.clock.now(), 'initial'));
      await h.advance(750);
      expect(h.value()).toEqual({ enabled: { online: 'syncing' } });
    }
    await h.advance(500);
    expect(h.value()).not.toEqual({ enabled: { online: 'syncing' } });
  });

  it('does not tombstone a tunnel that has seen an event newer than the snapshot (a stale snapshot proves nothing)', async () => {
    const h = startEndpoint();
    connectWithSnapshot(h, ['a236701f', '5cc1f9b2']);
    event(h, inst('5cc1f9b2', h.clock.now() + 60_000, 'update'));
    await reconnect(h);
    // A replayed, older snapshot without 5cc1f9b2.
    connectWithSnapshot(h, ['a236701f'], T0 - 1_000);
    event(h, inst('a236701f', h.clock.now(), 'update'));
    expect(tunnelState(h, '5cc1f9b2')!.value).toBe('running');
    expect(tunnelState(h, '5cc1f9b2')!.context.deleted).toBe(false);
  });

  it('counts events that arrive after a tombstone and does not revive the tunnel', async () => {
    const h = startEndpoint();
    connectWithSnapshot(h, ['a236701f']);
    event(h, inst('a236701f', T0 + 1, 'delete', 'stopped'));
    expect(tunnelState(h, 'a236701f')!.status).toBe('done');
    event(h, inst('a236701f', T0 + 2, 'update', 'running'));
    event(h, inst('a236701f', T0 + 3, 'log', 'running'));
    expect(h.ctx().ignoredAfterTombstone).toBe(2);
    expect(tunnelState(h, 'a236701f')!.value).toBe('deleted');
  });
});

describe('disconnects and offline intervals', () => {
  it('goes to backoff on shutdown with an offline interval, and closes it on the next stream.opened', async () => {
    const h = startEndpoint();
    connectWithSnapshot(h, ['a236701f']);
    event(h, inst('a236701f', T0 + 10, 'update'));
    await h.advance(5_000);
    event(h, shutdown(h.clock.now()));
    const from = h.clock.now();
    expect(h.value()).toEqual({ enabled: 'backoff' });
    expect(h.ctx().disconnected).toEqual({ from, to: null, reason: 'shutdown' });
    expect(h.offline).toEqual([{ endpointId: 1, from, to: null, reason: 'shutdown' }]);
    expect(h.streamsStopped()).toBe(1);
    await h.advance(SETTINGS.backoffCapMs!);
    expect(h.streams).toHaveLength(2);
    h.send({ type: 'stream.opened', at: h.clock.now() });
    expect(h.ctx().disconnected).toBeNull();
    expect(h.ctx().offline).toEqual([{ from, to: h.clock.now(), reason: 'shutdown' }]);
    expect(h.offline.at(-1)).toEqual({ endpointId: 1, from, to: h.clock.now(), reason: 'shutdown' });
    expect(h.ctx().reconnects).toBe(1);
  });

  it('goes to backoff on stream.closed, keeping the first cause while it stays disconnected', async () => {
    const h = startEndpoint();
    connectWithSnapshot(h, []);
    h.send({ type: 'stream.closed', at: h.clock.now(), kind: 'reset', message: 'ECONNRESET' });
    expect(h.value()).toEqual({ enabled: 'backoff' });
    await h.advance(SETTINGS.backoffCapMs!);
    h.send({ type: 'stream.closed', at: h.clock.now(), kind: 'refused' });
    expect(h.ctx().disconnected!.reason).toBe('reset: ECONNRESET');
    expect(h.offline).toHaveLength(1);
  });

  it('ignores a stream.closed that arrives after a shutdown already moved it to backoff', () => {
    const h = startEndpoint();
    connectWithSnapshot(h, []);
    event(h, shutdown(h.clock.now()));
    h.send({ type: 'stream.closed', at: h.clock.now(), kind: 'eof' });
    expect(h.value()).toEqual({ enabled: 'backoff' });
    expect(h.ctx().attempt).toBe(1);
  });
});

describe('backoffDelay', () => {
  it('grows exponentially from the base and is capped', () => {
    const upper = (attempt: number) => backoffDelay(attempt, 1_000, 30_000, () => 1);
    expect([1, 2, 3, 4, 5, 6, 7, 20, 1000].map(upper)).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000]);
    expect(backoffDelay(0, 1_000, 30_000, () => 1)).toBe(1000);
  });

  it('has equal jitter: between half the step and the whole step', () => {
    expect(backoffDelay(3, 1_000, 30_000, () => 0)).toBe(2000);
    expect(backoffDelay(3, 1_000, 30_000, () => 0.5)).toBe(3000);
    expect(backoffDelay(3, 1_000, 30_000, () => 0.999999)).toBe(4000);
    expect(backoffDelay(50, 1_000, 30_000, () => 0)).toBe(15000);
  });
});

describe('backoff in the machine', () => {
  /** Fails the current connection attempt and returns the delay until the machine tried again. */
  async function failAndMeasure(h: Harness): Promise<number> {
    h.send({ type: 'stream.closed', at: h.clock.now(), kind: 'refused' });
    expect(h.value()).toEqual({ enabled: 'backoff' });
    const before = h.streams.length;
    const start = h.clock.now();
    while (h.streams.length === before) {
      h.clock.advanceTo(h.clock.now() + 1);
      if (h.clock.now() - start > 100_000) throw new Error('never reconnected');
    }
    return h.clock.now() - start;
  }

  it('waits longer after each consecutive failure, up to the cap, with jitter within each step', async () => {
    const h = startEndpoint();
    const delays: number[] = [];
    for (let i = 0; i < 7; i++) delays.push(await failAndMeasure(h));
    const steps = [1000, 2000, 4000, 8000, 8000, 8000, 8000];
    delays.forEach((d, i) => {
      expect(d).toBeGreaterThanOrEqual(steps[i]! / 2);
      expect(d).toBeLessThanOrEqual(steps[i]!);
    });
    expect(h.ctx().attempt).toBe(7);
  });

  it('starts again from the base delay after a connection that stayed healthy', async () => {
    const h = startEndpoint();
    for (let i = 0; i < 4; i++) await failAndMeasure(h);
    expect(h.ctx().attempt).toBe(4);
    connectWithSnapshot(h, []);
    await h.advance(SETTINGS.snapshotQuietMs! + SETTINGS.healthyAfterMs! - 1);
    expect(h.ctx().attempt).toBe(4); // not yet: healthy counts from going live
    await h.advance(1);
    expect(h.ctx().attempt).toBe(0);
    expect(await failAndMeasure(h)).toBeLessThanOrEqual(1000);
  });

  it('does not reset the backoff for a connection that dropped before it was healthy', async () => {
    const h = startEndpoint();
    for (let i = 0; i < 3; i++) await failAndMeasure(h);
    connectWithSnapshot(h, []);
    await h.advance(SETTINGS.healthyAfterMs! / 2);
    expect(await failAndMeasure(h)).toBeGreaterThanOrEqual(4000);
  });
});

describe('authentication failure', () => {
  it('parks in authFailed on a 401 with no timers and no new connections, until endpoint.reconfigure', async () => {
    const h = startEndpoint();
    h.send({ type: 'stream.closed', at: T0, kind: 'auth', message: '401 Unauthorized: Invalid API key' });
    expect(h.value()).toEqual({ enabled: 'authFailed' });
    expect(h.ctx().disconnected).toMatchObject({ from: T0, to: null, reason: 'auth: 401 Unauthorized: Invalid API key' });
    expect(h.clock.pending).toBe(0);
    h.clock.advanceTo(h.clock.now() + 24 * 3_600_000);
    expect(h.value()).toEqual({ enabled: 'authFailed' });
    expect(h.streams).toHaveLength(1);
    h.send({ type: 'endpoint.reconfigure', at: h.clock.now() });
    expect(h.value()).toEqual({ enabled: { online: 'connecting' } });
    expect(h.streams).toHaveLength(2);
    h.send({ type: 'stream.opened', at: h.clock.now() });
    expect(h.ctx().disconnected).toBeNull();
  });
});

describe('disable and enable', () => {
  it('closes the stream and opens an offline interval on disable, and connects again on enable', () => {
    const h = startEndpoint();
    connectWithSnapshot(h, ['a236701f']);
    h.send({ type: 'endpoint.disable', at: T0 + 5 });
    expect(h.value()).toBe('disabled');
    expect(h.ctx().enabled).toBe(false);
    expect(h.streamsStopped()).toBe(1);
    expect(h.ctx().disconnected).toMatchObject({ reason: 'disabled', to: null });
    expect(h.clock.pending).toBe(0);
    h.send({ type: 'endpoint.enable', at: T0 + 10 });
    expect(h.value()).toEqual({ enabled: { online: 'connecting' } });
    expect(h.ctx().enabled).toBe(true);
    expect(h.streams).toHaveLength(2);
  });

  it('starts disabled when asked, without connecting', () => {
    const h = startEndpoint({ enabled: false });
    expect(h.value()).toBe('disabled');
    expect(h.streams).toHaveLength(0);
  });
});

describe('probing a quiet stream', () => {
  /**
   * Connects and goes live by the quiet delay, then passes the first check: the snapshot's own events count
   * as "events since the last check" there, so the first check does not probe. From here on the stream is quiet.
   */
  async function liveAndQuiet(h: Harness): Promise<void> {
    connectWithSnapshot(h, []);
    await h.advance(SETTINGS.snapshotQuietMs!);
    expect(h.value()).toEqual(live);
    await h.advance(SETTINGS.probeIntervalMs!);
    expect(h.probes).toBe(0);
  }

  it('probes the master after a whole interval with no event and keeps the stream when the probe succeeds', async () => {
    const h = startEndpoint();
    await liveAndQuiet(h);
    await h.advance(29_999);
    expect(h.probes).toBe(0);
    await h.advance(1);
    expect(h.probes).toBe(1);
    expect(h.value()).toEqual(live);
    expect(h.streams).toHaveLength(1);
    expect(h.streamsStopped()).toBe(0);
    expect(h.ctx().probeFailures).toBe(0);
  });

  it('replaces the stream (half-open) after probeFailureLimit consecutive failed probes', async () => {
    const h = startEndpoint({ probe: () => 'fail' });
    await liveAndQuiet(h);
    await h.advance(30_000);
    expect(h.probes).toBe(1);
    expect(h.value()).toEqual(live);
    expect(h.ctx().probeFailures).toBe(1);
    await h.advance(30_000);
    expect(h.probes).toBe(2);
    expect(h.value()).toEqual({ enabled: 'backoff' });
    expect(h.streamsStopped()).toBe(1);
    expect(h.ctx().disconnected).toMatchObject({ to: null, reason: 'probe-failed' });
    await h.advance(SETTINGS.backoffCapMs!);
    expect(h.streams).toHaveLength(2); // a new stream replaces the half-open one
  });

  it('does not give up on a failed probe followed by a successful one', async () => {
    const outcomes: ProbeOutcome[] = ['fail', 'ok', 'fail', 'ok'];
    const h = startEndpoint({ probe: () => outcomes.shift() ?? 'ok' });
    await liveAndQuiet(h);
    await h.advance(4 * 30_000);
    expect(h.probes).toBe(4);
    expect(h.value()).toEqual(live);
    expect(h.streams).toHaveLength(1);
  });

  it('never probes a stream that keeps delivering events', async () => {
    const h = startEndpoint({ probe: () => 'fail' });
    connectWithSnapshot(h, ['a236701f']);
    for (let i = 0; i < 40; i++) {
      await h.advance(10_000);
      event(h, inst('a236701f', h.clock.now(), 'update'));
    }
    expect(h.probes).toBe(0);
    expect(h.value()).toEqual(live);
  });

  it('is in the probing state while the probe is outstanding, and back to streaming when it answers', async () => {
    let release!: () => void;
    const pending = new Promise<void>((r) => (release = r));
    const clock = new SteppedClock(T0);
    const machine = endpointMachine.provide({
      actors: {
        probeMaster: fromPromise<ProbeResult, ProbeInput>(async () => {
          await pending;
          return { info: null, instances: null, unreadableIds: [], complete: true, sentAt: 0, receivedAt: 0 };
        }),
      },
    });
    const a = createActor(machine, { clock, input: { endpointId: 2, name: 'm2', settings: SETTINGS } });
    const errors: unknown[] = [];
    a.subscribe({ error: (e) => errors.push(e) });
    a.start();
    a.send({ type: 'stream.opened', at: T0 });
    clock.advanceTo(T0 + 1_000 + 30_000); // live, first check (nothing since connect): probe at once
    await settle();
    expect(livenessView(a.getSnapshot().value)).toEqual(probing);
    release();
    await settle();
    expect(livenessView(a.getSnapshot().value)).toEqual(live);
    expect(errors).toEqual([]);
  });
});

describe('half-open or quiet: the probe compares the listing with our tunnels', () => {
  const running = (id: string, tcprx: number, extra: Partial<Instance> = {}) => instance({ id, status: 'running', tcprx, tcptx: tcprx, ...extra });

  /** Live with tunnel a236701f known at 1000 bytes; from here on the stream says nothing. */
  async function quietWith(h: Harness): Promise<void> {
    h.send({ type: 'stream.opened', at: h.clock.now() });
    event(h, master(h.clock.now()));
    event(h, inst('a236701f', h.clock.now(), 'initial', 'running', { tcprx: 1000, tcptx: 1000 }));
    await h.advance(SETTINGS.snapshotQuietMs!);
    await h.advance(SETTINGS.probeIntervalMs!); // the first check sees the snapshot's events: no probe
    expect(h.probes).toBe(0);
  }

  it('keeps a quiet stream whose master lists exactly what we hold (nothing runs, nothing changed)', async () => {
    const h = startEndpoint({ probe: () => [running('a236701f', 1000)] });
    await quietWith(h);
    await h.advance(5 * SETTINGS.probeIntervalMs!);
    expect(h.probes).toBe(5);
    expect(h.value()).toEqual(live);
    expect(h.streams).toHaveLength(1);
    expect(h.ctx().liveness).toMatchObject({ probes: 5, probeMismatches: 0, halfOpenReplaced: 0 });
    expect(h.ctx().disconnected).toBeNull();
  });

  it('replaces a silent stream when the listing shows counters that moved and no event follows within the grace', async () => {
    const h = startEndpoint({ probe: () => [running('a236701f', 5000)] });
    await quietWith(h);
    await h.advance(SETTINGS.probeIntervalMs!);
    expect(h.probes).toBe(1);
    expect(h.value()).toEqual({ enabled: { online: { live: 'confirming' } } });
    await h.advance(2_000); // reconcileSettleMs default
    expect(h.value()).toEqual({ enabled: 'backoff' });
    expect(h.streamsStopped()).toBe(1);
    expect(h.ctx().liveness).toMatchObject({ probeMismatches: 1, halfOpenReplaced: 1 });
    expect(h.ctx().disconnected).toMatchObject({ to: null, reason: 'half-open' });
    expect(h.offline.at(-1)).toMatchObject({ reason: 'half-open', to: null });
    await h.advance(SETTINGS.backoffCapMs!);
    expect(h.streams).toHaveLength(2);
  });

  it('counts a new instance or a vanished one as a change the stream should have carried', async () => {
    for (const listing of [[running('a236701f', 1000), running('0badcafe', 0)], [] as Instance[]]) {
      const h = startEndpoint({ probe: () => listing });
      await quietWith(h);
      await h.advance(SETTINGS.probeIntervalMs! + 2_000);
      expect(h.ctx().liveness.halfOpenReplaced).toBe(1);
    }
  });

  it('keeps the stream when an event arrives during the grace, and applies the listing only where the stream said nothing since', async () => {
    const listing = [running('a236701f', 5000), running('5cc1f9b2', 7000, { status: 'stopped' }), running('0badcafe', 10)];
    const h = startEndpoint({ probe: () => listing });
    h.send({ type: 'stream.opened', at: h.clock.now() });
    event(h, master(h.clock.now()));
    event(h, inst('a236701f', h.clock.now(), 'initial', 'running', { tcprx: 1000, tcptx: 1000 }));
    event(h, inst('5cc1f9b2', h.clock.now(), 'initial', 'running', { tcprx: 3000, tcptx: 3000 }));
    await h.advance(1_000 + 30_000 + 30_000);
    expect(h.value()).toEqual({ enabled: { online: { live: 'confirming' } } });
    // An event in flight: a236701f's update arrives after the listing was taken.
    event(h, inst('a236701f', h.clock.now(), 'update', 'running', { tcprx: 6000, tcptx: 6000 }));
    await h.advance(2_000);
    expect(h.value()).toEqual(live);
    expect(h.ctx().liveness.halfOpenReplaced).toBe(0);
    expect(h.streams).toHaveLength(1);
    expect(tunnelState(h, 'a236701f')!.context.counters.tcprx).toBe(6000); // the stream won
    expect(tunnelState(h, '5cc1f9b2')!.context).toMatchObject({ status: 'stopped', counters: { tcprx: 7000 } });
    expect(tunnelState(h, '5cc1f9b2')!.context.traffic.tcprx).toBe(4000); // counted once, as one delta
    expect(tunnelState(h, '0badcafe')!.context.status).toBe('running');
    expect(h.ctx().liveness).toMatchObject({ corrected: 2, tombstoned: 0 });
  });

  it('counts a reconciliation that corrected tunnels after the last stream event as evidence for the next probe', async () => {
    // The periodic listing (20 s) shows the counters moved and corrects them; the probe's own listing then agrees,
    // but the silent stream still never carried that change: half-open all the same.
    const moved = [running('a236701f', 5000)];
    const h = startEndpoint({ settings: { reconcileIntervalMs: 20_000 }, listing: () => moved, probe: () => moved });
    await quietWith(h);
    expect(h.listings).toBe(1);
    expect(h.ctx().liveness.corrected).toBe(1);
    expect(tunnelState(h, 'a236701f')!.context.counters.tcprx).toBe(5000);
    await h.advance(SETTINGS.probeIntervalMs! + 2_000);
    expect(h.probes).toBe(1);
    expect(h.ctx().liveness.halfOpenReplaced).toBe(1);
    expect(h.value()).toEqual({ enabled: 'backoff' });
  });

  it('reads /info on arrival and every infoRefreshMs while live', async () => {
    const h = startEndpoint({ settings: { infoRefreshMs: 10_000 } });
    connectWithSnapshot(h, []);
    await h.advance(1_000);
    expect(h.infoFetches).toBe(1);
    expect(h.ctx().info).toMatchObject({ version: 'v1.14.0', masterId: MASTER_ID });
    await h.advance(2 * spread(10_000, 1) + 500); // + the 250 ms steps of `advance`
    expect(h.infoFetches).toBe(3);
  });
});

describe('periodic reconciliation with GET /instances', () => {
  it('runs on a busy stream too, and after the settle applies missed stops, creates and deletes — not what the stream already told', async () => {
    let listing: Instance[] = [];
    const h = startEndpoint({ settings: { reconcileIntervalMs: 20_000, reconcileSettleMs: 1_000 }, listing: () => listing });
    h.send({ type: 'stream.opened', at: h.clock.now() });
    event(h, master(h.clock.now()));
    for (const id of ['a236701f', '5cc1f9b2', 'deadbeef']) event(h, inst(id, h.clock.now(), 'initial', 'running', { tcprx: 100, tcptx: 100 }));
    // The master has since stopped 5cc1f9b2 (its update was dropped upstream), deleted deadbeef, created 0badcafe,
    // and a236701f moved on (its update is on its way).
    listing = [
      instance({ id: 'a236701f', tcprx: 900, tcptx: 900 }),
      instance({ id: '5cc1f9b2', status: 'stopped', tcprx: 300, tcptx: 300 }),
      instance({ id: '0badcafe', tcprx: 5, tcptx: 5 }),
    ];
    // Live from the first update (t = 1 s); the reconciliation runs 20 s later, plus this endpoint's spread.
    expect(spread(20_000, 1)).toBe(21_236);
    for (let t = 0; t < 23; t++) {
      await h.advance(1_000);
      if (h.listings === 0) event(h, inst('a236701f', h.clock.now(), 'update', 'running', { tcprx: 100 + t, tcptx: 100 + t }));
    }
    expect(h.listings).toBe(1);
    event(h, inst('a236701f', h.clock.now(), 'update', 'running', { tcprx: 900, tcptx: 900 })); // in flight, arrives within the settle
    await h.advance(1_000);
    expect(h.ctx().liveness).toMatchObject({ reconciliations: 1, corrected: 2, tombstoned: 1 });
    expect(tunnelState(h, '5cc1f9b2')!.context).toMatchObject({ status: 'stopped', counters: { tcprx: 300 } });
    expect(tunnelState(h, 'deadbeef')!.value).toBe('deleted');
    expect(tunnelState(h, '0badcafe')!.context.counters.tcprx).toBe(5);
    expect(tunnelState(h, 'a236701f')!.context.traffic.tcprx).toBe(800); // from the stream alone, once
    expect(h.streams).toHaveLength(1);
  });

  it('never tombstones a tunnel the master listed unreadably, nor any tunnel when an unreadable entry has no id', async () => {
    for (const unreadable of [
      { unreadableIds: ['5cc1f9b2'], complete: true },
      { unreadableIds: [], complete: false },
    ]) {
      const h = startEndpoint({
        settings: { reconcileIntervalMs: 10_000, reconcileSettleMs: 1_000 },
        listing: () => ({ instances: [instance({ id: 'a236701f', tcprx: 50, tcptx: 50 })], ...unreadable }),
      });
      connectWithSnapshot(h, ['a236701f', '5cc1f9b2']);
      await h.advance(1_000 + spread(10_000, 1) + 1_500);
      expect(h.listings).toBe(1);
      expect(tunnelState(h, '5cc1f9b2')!.value).toBe('running');
      expect(tunnelState(h, 'a236701f')!.context.counters.tcprx).toBe(50); // the readable part still applies
      expect(h.ctx().liveness).toMatchObject({ corrected: 1, tombstoned: 0 });
    }
  });

  it('counts a failed reconciliation and carries on', async () => {
    const h = startEndpoint({ settings: { reconcileIntervalMs: 10_000 }, listing: () => 'fail' });
    connectWithSnapshot(h, []);
    await h.advance(1_000 + 2 * spread(10_000, 1) + 500);
    expect(h.ctx().liveness).toMatchObject({ reconciliations: 2, reconcileFailures: 2 });
    expect(h.value()).toEqual(live);
  });
});

describe('the API-key record', () => {
  it('sets the master id from the ******** record and never keeps the key', () => {
    const h = startEndpoint();
    h.send({ type: 'stream.opened', at: T0 });
    // The real first event of recording s1, through the real parser.
    const first = captureDataLines('nodepass-s1-main-debug.sse')[0]!;
    expect(first).toContain(API_KEY);
    event(h, parseNodePassPayload(first));
    expect(h.ctx().masterId).toBe(MASTER_ID);
    expect(h.masters).toEqual([{ masterId: MASTER_ID, alias: '' }]);
    expect(h.ctx().tunnels).toEqual({});
    expect(JSON.stringify(h.actor.getSnapshot())).not.toContain(API_KEY);
    expect(JSON.stringify(h.actor.getPersistedSnapshot())).not.toContain(API_KEY);
    expect(JSON.stringify(h.masters)).not.toContain(API_KEY);
  });

  it('replays the whole s1 capture without a rejection, a failure or the key anywhere', () => {
    const h = startEndpoint();
    h.send({ type: 'stream.opened', at: T0 });
    for (const data of captureDataLines('nodepass-s1-main-debug.sse')) {
      const parsed = parseNodePassPayload(data);
      h.send({ type: 'stream.event', parsed, receivedAt: parsed.kind === 'rejected' ? T0 : 'at' in parsed ? parsed.at : parsed.event.at });
    }
    expect(h.errors).toEqual([]);
    expect(h.ctx().events).toMatchObject({ total: 628, rejected: 0 });
    expect(h.ctx().events.byType).toEqual({ initial: 1, create: 2, update: 54, delete: 1, log: 569, shutdown: 1 });
    expect(tunnelState(h, '5cc1f9b2')!.value).toBe('deleted');
    expect(h.value()).toEqual({ enabled: 'backoff' });
    expect(JSON.stringify(h.actor.getSnapshot())).not.toContain(API_KEY);
  });
});
