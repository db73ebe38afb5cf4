/**
 * `stream.batch` (src/runtime/delivery.ts → actors/endpoint.machine.ts) must do exactly what the same events do
 * one by one: the real captures are fed both ways, cut into chunks of several sizes, and every tunnel actor ends
 * in the same state with the same context, every event counted the same.
 */
import { describe, expect, it } from 'vitest';
import { createActor, fromCallback } from 'xstate';
import { endpointMachine, routeBatchInPlace, type EndpointEvent } from '../../actors/endpoint.machine.js';
import { setSystemInspected } from '../../actors/tunnel.machine.js';
import { parseNodePassPayload } from '../../src/protocol/events.js';
import { readReplaySource, type ReplayItem } from '../../src/replay/sources.js';
import { EventDelivery } from '../../src/runtime/delivery.js';
import { Stats } from '../../src/runtime/stats.js';
import { SteppedClock } from '../../src/runtime/stepped-clock.js';
import { instanceEvent, T0 } from '../support/instances.js';

const CAPTURES = [
  'fixtures/captures/nodepass-s1-main-debug.sse',
  'fixtures/captures/nodepass-s2-info-level.sse',
  'fixtures/captures/nodepass-s3-report-interval-1s.sse',
];

function eventTime(item: Extract<ReplayItem, { kind: 'payload' }>): number | null {
  const m = /"time"\s*:\s*"([^"]+)"/.exec(item.data);
  const t = m ? Date.parse(m[1]!) : NaN;
  return Number.isFinite(t) ? t : null;
}

/**
 * Feeds a capture to one endpoint actor, `chunk` payloads per socket chunk; batching or one event at a time, and
 * batches either sent or, where the endpoint is live, routed in place (`routeBatchInPlace`, as the runtime does).
 */
function feed(file: string, chunk: number, batching: boolean, inPlace = false) {
  const items = readReplaySource(file).items;
  const clock = new SteppedClock(0);
  const machine = endpointMachine.provide({ actors: { eventStream: fromCallback(() => () => {}) } });
  const actor = createActor(machine, {
    input: {
      endpointId: 1,
      name: 'batch',
      settings: {
        probeIntervalMs: Infinity,
        reconcileIntervalMs: Infinity,
        infoRefreshMs: Infinity,
        backoffBaseMs: 0,
        backoffCapMs: 0,
        tunnel: { logDedupeWindowMs: Infinity, statusHistoryLimit: Number.MAX_SAFE_INTEGER },
      },
    },
    clock,
  });
  const errors: unknown[] = [];
  actor.subscribe({ error: (e) => errors.push(e) });
  actor.start();
  const sent: string[] = [];
  const send = (event: EndpointEvent) => {
    if (inPlace && event.type === 'stream.batch' && routeBatchInPlace(actor, event.items)) {
      sent.push('in place');
      return;
    }
    sent.push(event.type);
    actor.send(event);
  };
  const delivery = new EventDelivery(new Stats(), () => clock.now(), send, batching);
  let inChunk = 0;
  const endChunk = () => {
    delivery.flush();
    inChunk = 0;
  };
  for (const item of items) {
    if (item.kind === 'payload') {
      const t = eventTime(item);
      // The clock moves only between chunks (timers fire between socket reads, never inside one).
      if (inChunk === 0 && t !== null) clock.advanceTo(Math.max(clock.now(), t));
      delivery.deliver(parseNodePassPayload(item.data, item.eventName));
      if (++inChunk >= chunk) endChunk();
      continue;
    }
    endChunk();
    if (item.kind === 'open') {
      if (!actor.getSnapshot().matches({ enabled: { online: 'connecting' } })) send({ type: 'endpoint.reconnect', at: clock.now() });
      send({ type: 'stream.opened', at: clock.now() });
    } else if (item.kind === 'close') {
      send({ type: 'stream.closed', at: clock.now(), kind: 'eof' });
    }
  }
  endChunk();
  const ctx = actor.getSnapshot().context;
  const tunnels = Object.fromEntries(
    Object.entries(ctx.tunnels).map(([id, ref]) => {
      const snap = ref.getSnapshot();
      return [id, { value: snap.value, status: snap.status, context: JSON.parse(JSON.stringify(snap.context)) }];
    }),
  );
  const result = {
    value: actor.getSnapshot().value,
    events: ctx.events,
    ignoredAfterTombstone: ctx.ignoredAfterTombstone,
    connections: ctx.connections,
    tunnels,
  };
  actor.stop();
  return { result, errors, batches: sent.filter((t) => t === 'stream.batch').length, inPlace: sent.filter((t) => t === 'in place').length };
}

describe('stream.batch is the same as its events one by one', () => {
  for (const file of CAPTURES) {
    it(file.split('/').pop()!, () => {
      for (const chunk of [1, 3, 16, 512]) {
        // The same chunks (so the same receive times), one event at a time versus batched.
        const single = feed(file, chunk, false);
        expect(single.errors).toEqual([]);
        expect(single.batches).toBe(0);
        expect(Object.keys(single.result.tunnels).length).toBeGreaterThan(0);
        const batched = feed(file, chunk, true);
        expect(batched.errors).toEqual([]);
        expect(batched.batches).toBeGreaterThan(0);
        expect(batched.result).toEqual(single.result);
        const routed = feed(file, chunk, true, true);
        expect(routed.errors).toEqual([]);
        expect(routed.inPlace).toBeGreaterThan(0);
        expect(routed.result).toEqual(single.result);
      }
    });
  }

  it('covers new tunnels mid-stream and a delete inside one batch (s1, one 512-event chunk)', () => {
    const { result } = feed(CAPTURES[0]!, 512, true);
    expect(result.events.byType['create']).toBeGreaterThan(0);
    expect(result.events.byType['delete']).toBeGreaterThan(0);
    expect(Object.values(result.tunnels).some((t) => t.status === 'done')).toBe(true);
  });

  it('in one batch: a new tunnel, its later events, its delete and events after the delete (ignored, counted)', () => {
    const run = (batching: boolean) => {
      const machine = endpointMachine.provide({ actors: { eventStream: fromCallback(() => () => {}) } });
      const actor = createActor(machine, { input: { endpointId: 1, name: 'b', settings: { probeIntervalMs: Infinity, reconcileIntervalMs: Infinity, infoRefreshMs: Infinity } }, clock: new SteppedClock(T0) });
      actor.start();
      const delivery = new EventDelivery(new Stats(), () => T0, (e) => actor.send(e), batching);
      actor.send({ type: 'stream.opened', at: T0 });
      delivery.deliver({ kind: 'instance', event: instanceEvent('initial', T0, { id: 'aaaaaaaa', tcprx: 10 }) });
      const chunk = [
        instanceEvent('update', T0 + 1, { id: 'aaaaaaaa', tcprx: 20 }),
        instanceEvent('create', T0 + 2, { id: 'bbbbbbbb', status: 'stopped' }),
        instanceEvent('update', T0 + 3, { id: 'bbbbbbbb', status: 'running', tcprx: 5 }),
        instanceEvent('update', T0 + 4, { id: 'aaaaaaaa', tcprx: 40 }),
        instanceEvent('delete', T0 + 5, { id: 'bbbbbbbb', status: 'stopped', tcprx: 5 }),
        instanceEvent('update', T0 + 6, { id: 'bbbbbbbb', status: 'running', tcprx: 9 }),
        instanceEvent('log', T0 + 7, { id: 'bbbbbbbb', status: 'running', tcprx: 9 }, 'line'),
        instanceEvent('update', T0 + 8, { id: 'aaaaaaaa', tcprx: 70 }),
      ];
      for (const event of chunk) delivery.deliver({ kind: 'instance', event });
      delivery.flush();
      const ctx = actor.getSnapshot().context;
      const tunnel = (id: string) => {
        const snap = ctx.tunnels[id]!.getSnapshot();
        return { status: snap.status, value: snap.value, context: JSON.parse(JSON.stringify(snap.context)) };
      };
      return { events: ctx.events, ignored: ctx.ignoredAfterTombstone, a: tunnel('aaaaaaaa'), b: tunnel('bbbbbbbb') };
    };
    const single = run(false);
    expect(single.ignored).toBe(2);
    expect(single.b.status).toBe('done');
    expect(single.a.context.traffic.tcprx).toBe(60);
    expect(run(true)).toEqual(single);
  });

  it('routes in place only while live and not inspected', () => {
    const machine = endpointMachine.provide({ actors: { eventStream: fromCallback(() => () => {}) } });
    const actor = createActor(machine, { input: { endpointId: 1, name: 'b', settings: { probeIntervalMs: Infinity, reconcileIntervalMs: Infinity, infoRefreshMs: Infinity } }, clock: new SteppedClock(T0) });
    actor.start();
    const item = (at: number) => ({ parsed: { kind: 'instance' as const, event: instanceEvent('update', at, { id: 'aaaaaaaa', tcprx: at - T0 }) }, receivedAt: at });
    expect(routeBatchInPlace(actor, [item(T0 + 1)])).toBe(false); // connecting
    actor.send({ type: 'stream.opened', at: T0 });
    expect(routeBatchInPlace(actor, [item(T0 + 2)])).toBe(false); // syncing: the batch makes it live, so it is sent
    actor.send({ type: 'stream.batch', items: [item(T0 + 3)] });
    expect(actor.getSnapshot().matches({ enabled: { online: 'live' } })).toBe(true);
    expect(routeBatchInPlace(actor, [item(T0 + 4)])).toBe(true);
    expect(actor.getSnapshot().context.events.total).toBe(2);
    setSystemInspected(actor.system, true);
    expect(routeBatchInPlace(actor, [item(T0 + 5)])).toBe(false);
    setSystemInspected(actor.system, false);
    actor.stop();
    expect(routeBatchInPlace(actor, [item(T0 + 6)])).toBe(false);
  });
});
