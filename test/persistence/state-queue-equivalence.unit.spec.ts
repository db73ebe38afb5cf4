/**
 * The state queue marks a tunnel dirty per update and builds its record only when a flush takes it
 * (persister.ts `DirtyTunnel`, queues.ts `CoalescingQueue.mark`). These tests prove that the rows a flush hands to
 * `Store.flushTunnelStates` are exactly those of the queue it replaced (a record refreshed per update, kept in
 * legacy-state-queue.ts), on the real captures and on seeded sequences with resets, stale events, hours dropped
 * from the tunnel, failed flushes put back and a tunnel actor replaced by a restored one; that a tunnel updated many
 * times between flushes is one row with its latest state and every hour it touched; and that the preparation of a
 * big flush lets the event loop run every `STATE_PREPARE_TURN_ROWS` tunnels.
 */
import { describe, expect, it, vi } from 'vitest';
import { createActor, fromCallback, type ActorRefFrom } from 'xstate';
import { endpointMachine, type EndpointEvent } from '../../actors/endpoint.machine.js';
import type { InstanceStatus } from '../../actors/model.js';
import type { HourBucketRecord, TunnelStateRecord } from '../../actors/records.js';
import { hourKeyOf } from '../../actors/traffic.js';
import { newTunnelContext, observeInPlace, tunnelMachine, type StateChangeParams } from '../../actors/tunnel.machine.js';
import { FLUSH_CHUNK_ROWS } from '../../src/db/store.js';
import { DEFAULT_PERSISTER_SETTINGS, Persister, STATE_PREPARE_TURN_ROWS, type PersistenceStore } from '../../src/persistence/persister.js';
import { parseNodePassPayload } from '../../src/protocol/events.js';
import { readReplaySource } from '../../src/replay/sources.js';
import { EventDelivery } from '../../src/runtime/delivery.js';
import { Stats } from '../../src/runtime/stats.js';
import { SteppedClock } from '../../src/runtime/stepped-clock.js';
import { instanceEvent, T0 } from '../support/instances.js';
import { LegacyStateQueue, legacyRows } from './legacy-state-queue.js';

const HOUR_MS = 3_600_000;

interface Rows {
  states: TunnelStateRecord[];
  buckets: HourBucketRecord[];
}

/** A store that records what each state flush was given (copied at the call) and fails the calls it is told to. */
function recordingStore() {
  const calls: Rows[] = [];
  let failNext = false;
  const store = {
    async flushTunnelStates(states: readonly TunnelStateRecord[], buckets: readonly HourBucketRecord[]) {
      calls.push(structuredClone({ states: [...states], buckets: [...buckets] }));
      if (failNext) {
        failNext = false;
        throw new Error('connection lost');
      }
      return { statements: 2, rows: states.length + buckets.length, states: states.length, buckets: buckets.length };
    },
  } as unknown as PersistenceStore;
  return { store, calls, failNextFlush: () => (failNext = true) };
}

/**
 * The new persister and the legacy queue side by side: every `queueState` goes to both (the queue sizes they notify
 * with must agree), and every flush must hand the same rows to the store, in the same order, failed ones included.
 */
function sideBySide() {
  let now = 0;
  const { store, calls, failNextFlush } = recordingStore();
  const persister = new Persister(store, new Stats(), () => now, { ...DEFAULT_PERSISTER_SETTINGS, recoveryProbeMs: 0 });
  const legacy = new LegacyStateQueue();
  const queueState = (_: unknown, p: StateChangeParams) => {
    now++;
    persister.tunnelEffects.queueState(_, p);
    const legacySize = legacy.queueState(p, now);
    expect(persister.stateQueue.size).toBe(legacySize);
  };
  let flushes = 0;
  let failures = 0;
  let rows = 0;
  const flush = async (fail: boolean) => {
    expect(persister.stateQueue.size).toBe(legacy.size);
    expect(persister.stateQueue.oldestSince()).toBe(legacy.oldestSince());
    if (legacy.size === 0) return;
    flushes++;
    const before = calls.length;
    // Fewer tunnels than one chunk here: the old flush took them all in one batch.
    const batch = legacy.take(FLUSH_CHUNK_ROWS);
    const expected = structuredClone(legacyRows(batch));
    if (fail) {
      failures++;
      failNextFlush();
      await expect(persister.writeBatch('stateFlusher')).rejects.toThrow('connection lost');
      legacy.putBack(batch);
    } else {
      await persister.writeBatch('stateFlusher');
    }
    expect(calls.length).toBe(before + 1);
    const got = calls[calls.length - 1]!;
    expect(got).toStrictEqual(expected);
    // Key order too: the resume JSON is stored as text.
    expect(JSON.stringify(got)).toBe(JSON.stringify(expected));
    rows += got.states.length;
  };
  return { queueState, flush, stats: () => ({ flushes, failures, rows }), persister, legacy };
}

const effects = (queueState: (_: unknown, p: StateChangeParams) => void) => ({
  persistConfig: () => {},
  persistStatusChange: () => {},
  queueLog: () => {},
  memoryFailed: () => {},
  queueState,
});

/** A small seeded generator (deterministic across runs). */
function random(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) >>> 8) / 2 ** 24;
}

describe('state queue: rows identical to the per-update record it replaced', () => {
  for (const seed of [1, 7, 42, 1234]) {
    it(`seeded tunnels with resets, stale events, hours dropped and failed flushes (seed ${seed})`, async () => {
      const rand = random(seed);
      const side = sideBySide();
      const machine = tunnelMachine.provide({ actions: effects(side.queueState) });
      type Tunnel = { actor: ActorRefFrom<typeof machine>; at: number; status: InstanceStatus; rx: number; zeroes: number; sent: Array<ReturnType<typeof instanceEvent>> };
      const start = (i: number, restore?: ReturnType<typeof newTunnelContext>) => {
        const actor = createActor(machine, { input: { endpointId: 1 + (i % 2), instanceId: `t${i}`, restore } });
        actor.start();
        return actor;
      };
      const tunnels: Tunnel[] = [];
      for (let i = 0; i < 6; i++) tunnels.push({ actor: start(i), at: T0, status: 'running', rx: 0, zeroes: 0, sent: [] });
      const statuses: InstanceStatus[] = ['running', 'stopped', 'error'];
      let restored = 0;
      for (let n = 0; n < 4_000; n++) {
        const t = tunnels[Math.floor(rand() * tunnels.length)]!;
        const r = rand();
        // Mostly seconds apart; now and then most of an hour, so one dirty period can span more hours than kept.
        t.at += r < 0.02 ? Math.floor(rand() * 2 * HOUR_MS) : 1 + Math.floor(rand() * 3_000);
        if (r < 0.03) t.status = statuses[Math.floor(rand() * 3)]!;
        if (t.zeroes > 0) t.zeroes--;
        else if (r < 0.06) {
          // A counter reset, sometimes repeated for a few samples (an all-zero offset pending, re-keyed).
          t.rx = 0;
          t.zeroes = Math.floor(rand() * 4);
        } else if (r > 0.25) t.rx += Math.floor(rand() * 5_000);
        const type = n < tunnels.length ? 'initial' : r < 0.6 ? 'update' : r < 0.95 ? 'log' : 'create';
        const line = `2026-11-26 09:15:35.090  INFO  line ${Math.floor(rand() * 20)}`;
        let event = instanceEvent(type, t.at, { id: '', status: t.status, tcprx: t.rx, tcptx: t.rx * 2, ping: Math.floor(rand() * 3) }, type === 'log' ? line : '');
        // Now and then an older event arrives late (stale): only its log line counts.
        if (rand() < 0.05 && t.sent.length > 3) event = t.sent[t.sent.length - 3]!;
        t.sent.push(event);
        // Now and then received on a clock hours behind: an hour older than every bucket kept (reported undefined).
        const receivedAt = rand() < 0.01 ? t.at - 5 * HOUR_MS : t.at + 5;
        if (!observeInPlace(t.actor, event, receivedAt, 1)) t.actor.send({ type: 'tunnel.observe', event, receivedAt, connection: 1 });
        // Once: a tunnel's actor replaced by one restored from its context (another context object, same key).
        if (restored === 0 && n === 2_000) {
          restored++;
          const old = tunnels[0]!;
          const context = old.actor.getSnapshot().context;
          old.actor.stop();
          old.actor = start(0, context);
        }
        const f = rand();
        if (f < 0.01) await side.flush(rand() < 0.3);
      }
      await side.flush(false);
      await side.flush(false);
      expect(side.legacy.size).toBe(0);
      const { flushes, failures, rows } = side.stats();
      expect(flushes).toBeGreaterThan(20);
      expect(failures).toBeGreaterThan(3);
      expect(rows).toBeGreaterThan(50);
    });
  }

  const CAPTURES = [
    'fixtures/captures/nodepass-s1-main-debug.sse',
    'fixtures/captures/nodepass-s2-info-level.sse',
    'fixtures/captures/nodepass-s3-report-interval-1s.sse',
  ];
  for (const file of CAPTURES) {
    it(`the real capture ${file.split('/').pop()} through the endpoint and tunnel actors`, async () => {
      const side = sideBySide();
      const rand = random(file.length);
      const clock = new SteppedClock(0);
      const machine = endpointMachine.provide({
        actors: { tunnel: tunnelMachine.provide({ actions: effects(side.queueState) }), eventStream: fromCallback(() => () => {}) },
      });
      const actor = createActor(machine, {
        input: {
          endpointId: 1,
          name: 'capture',
          settings: { probeIntervalMs: Infinity, reconcileIntervalMs: Infinity, infoRefreshMs: Infinity, backoffBaseMs: 0, backoffCapMs: 0 },
        },
        clock,
      });
      actor.start();
      const delivery = new EventDelivery(new Stats(), () => clock.now(), (event: EndpointEvent) => actor.send(event), true);
      let payloads = 0;
      for (const item of readReplaySource(file).items) {
        if (item.kind === 'payload') {
          const m = /"time"\s*:\s*"([^"]+)"/.exec(item.data);
          const t = m ? Date.parse(m[1]!) : NaN;
          if (Number.isFinite(t)) clock.advanceTo(Math.max(clock.now(), t));
          delivery.deliver(parseNodePassPayload(item.data, item.eventName));
          payloads++;
          if (payloads % 4 === 0) delivery.flush();
        } else {
          delivery.flush();
          if (item.kind === 'open') {
            if (!actor.getSnapshot().matches({ enabled: { online: 'connecting' } })) actor.send({ type: 'endpoint.reconnect', at: clock.now() });
            actor.send({ type: 'stream.opened', at: clock.now() });
          } else if (item.kind === 'close') actor.send({ type: 'stream.closed', at: clock.now(), kind: 'eof' });
        }
        if (item.kind === 'payload' && rand() < 0.25) {
          delivery.flush();
          await side.flush(rand() < 0.25);
        }
      }
      delivery.flush();
      await side.flush(false);
      await side.flush(false);
      actor.stop();
      expect(side.legacy.size).toBe(0);
      // Failed flushes are covered by the seeded cases; some captures are short.
      expect(side.stats().flushes).toBeGreaterThanOrEqual(2);
    });
  }
});

describe('state queue: coalescing and a big flush', () => {
  it('one row per tunnel per flush, with its latest state and every hour it touched', async () => {
    const { store, calls } = recordingStore();
    const persister = new Persister(store, new Stats(), () => 0, DEFAULT_PERSISTER_SETTINGS);
    const machine = tunnelMachine.provide({ actions: effects(persister.tunnelEffects.queueState) });
    const busy = createActor(machine, { input: { endpointId: 1, instanceId: 'busy' } }).start();
    const quiet = createActor(machine, { input: { endpointId: 1, instanceId: 'quiet' } }).start();
    const observe = (actor: typeof busy, at: number, tcprx: number, ping = 0) => {
      const event = instanceEvent(at === T0 ? 'initial' : 'update', at, { tcprx, tcptx: 0, ping });
      if (!observeInPlace(actor, event, at, 1)) actor.send({ type: 'tunnel.observe', event, receivedAt: at, connection: 1 });
    };
    observe(quiet, T0, 0);
    // 1,000 updates of one tunnel across three hours, 10 bytes each.
    const hours = new Set<number>();
    let at = T0;
    for (let i = 0; i <= 1_000; i++) {
      at = T0 + Math.floor((i * 3 * HOUR_MS) / 1_000);
      observe(busy, at, i * 10, i % 7);
      if (i > 0) hours.add(Number(hourKeyOf(at)));
    }
    expect(persister.stateQueue.size).toBe(2);
    await persister.writeBatch('stateFlusher');
    expect(calls).toHaveLength(1);
    const { states, buckets } = calls[0]!;
    expect(states.map((s) => s.instanceId)).toEqual(['quiet', 'busy']);
    const latest = busy.getSnapshot().context;
    expect(states[1]).toMatchObject({ at, ping: 1_000 % 7, counters: { tcprx: 10_000 }, traffic: { tcprx: 10_000 } });
    expect(latest.stateAt).toBe(at);
    const busyBuckets = buckets.filter((b) => b.instanceId === 'busy');
    expect(busyBuckets.map((b) => b.hour).sort()).toEqual([...hours].sort());
    // Absolute values: the hours' deltas add up to the whole traffic.
    expect(busyBuckets.reduce((sum, b) => sum + b.traffic.tcprx, 0)).toBe(10_000);
    // The tunnel keeps the last three hours; the queue kept the older one's last value too.
    expect(hours.size).toBe(4);
    for (const b of busyBuckets) if (String(b.hour) in latest.hours) expect(b.traffic).toEqual(latest.hours[String(b.hour)]);
    expect(buckets.filter((b) => b.instanceId === 'quiet')).toEqual([]);
    // Nothing changed since: nothing queued; the next change queues the tunnel again.
    expect(persister.stateQueue.size).toBe(0);
    observe(busy, at + 1, 10_010);
    expect(persister.stateQueue.size).toBe(1);
  });

  it('hands the store snapshots: counters, traffic and buckets updated in place by the tunnel while a flush is under way stay as taken', async () => {
    // A store that keeps what it was given by reference and answers when told: the tunnel moves in between.
    const given: Array<{ states: readonly TunnelStateRecord[]; buckets: readonly HourBucketRecord[] }> = [];
    let answer: () => void = () => {};
    const store = {
      async flushTunnelStates(states: readonly TunnelStateRecord[], buckets: readonly HourBucketRecord[]) {
        given.push({ states, buckets });
        await new Promise<void>((resolve) => (answer = resolve));
        return { statements: 2, rows: states.length + buckets.length, states: states.length, buckets: buckets.length };
      },
    } as unknown as PersistenceStore;
    const persister = new Persister(store, new Stats(), () => 0, DEFAULT_PERSISTER_SETTINGS);
    const machine = tunnelMachine.provide({ actions: effects(persister.tunnelEffects.queueState) });
    const tunnel = createActor(machine, { input: { endpointId: 1, instanceId: 'moving' } }).start();
    const observe = (at: number, tcprx: number) => {
      const event = instanceEvent(at === T0 ? 'initial' : 'update', at, { tcprx, tcptx: 0 });
      if (!observeInPlace(tunnel, event, at, 1)) tunnel.send({ type: 'tunnel.observe', event, receivedAt: at, connection: 1 });
    };
    observe(T0, 0);
    observe(T0 + 1_000, 100);
    const context = tunnel.getSnapshot().context;
    const ownTraffic = context.traffic;
    const ownCounters = context.counters;
    const ownBucket = context.hours[hourKeyOf(T0 + 1_000)]!;
    const flush = persister.writeBatch('stateFlusher');
    await vi.waitFor(() => expect(given).toHaveLength(1));
    // The flush holds its rows; the tunnel moves on, updating the same objects in place.
    observe(T0 + 2_000, 250);
    expect(context.traffic).toBe(ownTraffic);
    expect(context.counters).toBe(ownCounters);
    expect(context.track.last).toBe(ownCounters);
    expect(ownCounters.tcprx).toBe(250);
    expect(ownTraffic.tcprx).toBe(250);
    expect(ownBucket.tcprx).toBe(250);
    expect(context.rates.tcprx).toBe(150);
    answer();
    await flush;
    const { states, buckets } = given[0]!;
    expect(states).toHaveLength(1);
    expect(states[0]).toMatchObject({ at: T0 + 1_000, counters: { tcprx: 100 }, traffic: { tcprx: 100, tcptx: 0, udprx: 0, udptx: 0 } });
    expect(states[0]!.traffic).not.toBe(ownTraffic);
    expect(states[0]!.resume).toMatchObject({ track: { last: { tcprx: 100 } } });
    expect(buckets).toEqual([{ endpointId: 1, instanceId: 'moving', hour: Number(hourKeyOf(T0 + 1_000)), traffic: { tcprx: 100, tcptx: 0, udprx: 0, udptx: 0 } }]);
    expect(buckets[0]!.traffic).not.toBe(ownBucket);
    // The move during the flush is queued for the next one, with its own values.
    expect(persister.stateQueue.size).toBe(1);
    const next = persister.writeBatch('stateFlusher');
    await vi.waitFor(() => expect(given).toHaveLength(2));
    answer();
    await next;
    expect(given[1]!.states[0]).toMatchObject({ at: T0 + 2_000, traffic: { tcprx: 250 } });
    expect(given[1]!.buckets[0]!.traffic).toEqual({ tcprx: 250, tcptx: 0, udprx: 0, udptx: 0 });
    tunnel.stop();
  });

  it('prepares 10,000 dirty tunnels in turns of STATE_PREPARE_TURN_ROWS, letting the event loop run between them', async () => {
    const { store, calls } = recordingStore();
    const persister = new Persister(store, new Stats(), () => 0, DEFAULT_PERSISTER_SETTINGS);
    const n = 10_000;
    const hour = hourKeyOf(T0);
    for (let i = 0; i < n; i++) {
      const context = newTunnelContext({ endpointId: 1, instanceId: `t${i}` });
      Object.assign(context, { status: 'running', stateAt: T0 + i, traffic: { tcprx: i, tcptx: 0, udprx: 0, udptx: 0 } });
      persister.tunnelEffects.queueState(undefined, { context, hours: { [hour]: context.traffic } });
    }
    // Every yield of the preparation (a `setImmediate` it asks for) notes how far it got: never more than one
    // turn's worth of tunnels between two yields, and the other callbacks of the loop run between turns.
    const yieldsAt: number[] = [];
    const interleaved: number[] = [];
    const realSetImmediate = globalThis.setImmediate;
    const spy = vi.spyOn(globalThis, 'setImmediate').mockImplementation(((callback: () => void) => {
      yieldsAt.push(persister.stateQueue.size);
      realSetImmediate(() => interleaved.push(persister.stateQueue.size));
      return realSetImmediate(callback);
    }) as typeof setImmediate);
    const turnsBefore = persister.statePrepareTurns;
    try {
      const flushing = persister.writeBatch('stateFlusher');
      // The first turn ran synchronously inside writeBatch: at most one turn's worth taken before the loop runs.
      expect(n - persister.stateQueue.size).toBeLessThanOrEqual(STATE_PREPARE_TURN_ROWS);
      await flushing;
    } finally {
      spy.mockRestore();
    }
    expect(calls.map((c) => c.states.length)).toEqual(Array.from({ length: n / FLUSH_CHUNK_ROWS }, () => FLUSH_CHUNK_ROWS));
    expect(calls.flatMap((c) => c.states.map((s) => s.instanceId))).toEqual(Array.from({ length: n }, (_, i) => `t${i}`));
    expect(calls.flatMap((c) => c.buckets.map((b) => b.traffic.tcprx))).toEqual(Array.from({ length: n }, (_, i) => i));
    const turns = persister.statePrepareTurns - turnsBefore;
    expect(turns).toBe(Math.ceil(n / STATE_PREPARE_TURN_ROWS));
    // A yield between every two turns, also across chunks (the store here answers without yielding itself).
    expect(yieldsAt).toHaveLength(turns - 1);
    let last = n;
    for (const size of yieldsAt) {
      expect(last - size).toBeLessThanOrEqual(STATE_PREPARE_TURN_ROWS);
      last = size;
    }
    // A callback queued at a yield ran before the next turn took anything.
    expect(interleaved).toEqual(yieldsAt);
  });
});
