/**
 * The tunnel machine (actors/tunnel.machine.ts): status from every event type, idempotent upserts guarded
 * by event time, deletion and tombstones, restore without double counting, and exactly which effects fire.
 */
import { describe, expect, it } from 'vitest';
import { createActor } from 'xstate';
import type { InstanceEvent, InstanceMeta } from '../../actors/model.js';
import {
  commitObservation,
  newTunnelContext,
  observe,
  type TunnelContext,
  type TunnelInput,
} from '../../actors/tunnel.machine.js';
import { counters, instanceEvent, T0 } from '../support/instances.js';
import { recordingTunnelMachine } from '../support/recorded-tunnel.js';

const KEY = { endpointId: 1, instanceId: 'a236701f' };
const ERROR_LINE = '2026-11-26 09:16:04.781  \u001b[31mERROR\u001b[0m  Server error: read: connection reset';
const INFO_LINE = '2026-11-26 09:15:35.090  \u001b[32mINFO\u001b[0m  Server started';

/** A tunnel actor whose effects are recorded (by name, with their params) instead of performed. */
function startTunnel(input: Partial<TunnelInput> = {}) {
  const { machine, calls } = recordingTunnelMachine();
  const actor = createActor(machine, { input: { ...KEY, ...input } });
  const errors: unknown[] = [];
  actor.subscribe({ error: (e) => errors.push(e) });
  actor.start();
  let connection = 1;
  const send = (event: InstanceEvent, receivedAt = event.at) => {
    calls.length = 0;
    actor.send({ type: 'tunnel.observe', event, receivedAt, connection });
    return calls.map((c) => c.name);
  };
  return {
    actor,
    calls,
    errors,
    send,
    reconnect: () => void connection++,
    ctx: () => actor.getSnapshot().context,
    value: () => actor.getSnapshot().value,
  };
}

describe('status from every event type', () => {
  for (const type of ['initial', 'create', 'update', 'log'] as const) {
    it(`takes the status from a "${type}" event`, () => {
      const t = startTunnel();
      expect(t.value()).toBe('pending');
      t.send(instanceEvent(type, T0, { status: 'running' }, type === 'log' ? INFO_LINE : ''));
      expect(t.value()).toBe('running');
      t.send(instanceEvent(type, T0 + 1000, { status: 'error' }, type === 'log' ? ERROR_LINE : ''));
      expect(t.value()).toBe('error');
      t.send(instanceEvent(type, T0 + 2000, { status: 'stopped' }, type === 'log' ? INFO_LINE : ''));
      expect(t.value()).toBe('stopped');
      expect(t.ctx().statusChanges).toEqual([
        { at: T0, status: 'running' },
        { at: T0 + 1000, status: 'error' },
        { at: T0 + 2000, status: 'stopped' },
      ]);
    });
  }

  it('switches to error from a log event alone, with no update (PROTOCOL §5.6)', () => {
    const t = startTunnel();
    t.send(instanceEvent('update', T0, { status: 'running' }));
    const effects = t.send(instanceEvent('log', T0 + 10, { status: 'error', ping: 0, pool: 0 }, ERROR_LINE));
    expect(t.value()).toBe('error');
    expect(effects.sort()).toEqual(['persistConfig', 'persistStatusChange', 'queueLog', 'queueState']);
    expect(t.ctx().logLines).toBe(1);
  });
});

describe('duplicates and stale events', () => {
  it('changes nothing and fires nothing for a repeat of the same state', () => {
    const t = startTunnel();
    t.send(instanceEvent('update', T0, { tcprx: 100 }));
    const before = structuredClone(t.ctx()); // a copy: the actor updates its context in place
    // Byte-identical apart from `time`, as NodePass sends (PROTOCOL §7), and a true duplicate.
    expect(t.send(instanceEvent('update', T0 + 3, { tcprx: 100 }))).toEqual([]);
    expect(t.send(instanceEvent('update', T0 + 3, { tcprx: 100 }))).toEqual([]);
    expect(t.ctx().traffic).toEqual(before.traffic);
    expect(t.ctx().counters).toEqual(before.counters);
  });

  it('ignores an older event entirely but still takes its log line', () => {
    const t = startTunnel();
    t.send(instanceEvent('update', T0 + 5000, { status: 'running', tcprx: 5000, alias: 'new' }));
    t.send(instanceEvent('update', T0 + 10_000, { status: 'running', tcprx: 6000, alias: 'new' }));
    const before = structuredClone(t.ctx()); // a copy: the actor updates its context in place
    expect(t.send(instanceEvent('update', T0 + 7000, { status: 'stopped', tcprx: 1, alias: 'old' }))).toEqual([]);
    expect(t.value()).toBe('running');
    expect(t.ctx().ignored.stale).toBe(1);
    const effects = t.send(instanceEvent('log', T0 + 7000, { status: 'error', tcprx: 2, alias: 'old' }, ERROR_LINE));
    expect(effects).toEqual(['queueLog']);
    expect(t.value()).toBe('running');
    const after = t.ctx();
    expect(after.logLines).toBe(1);
    for (const k of ['status', 'alias', 'counters', 'traffic', 'track', 'hours', 'stateAt', 'statusChanges'] as const) {
      expect(after[k]).toEqual(before[k]);
    }
  });

  it('takes a log line repeated on the same connection twice, and once more on another connection not at all', () => {
    const t = startTunnel();
    const line = instanceEvent('log', T0, {}, INFO_LINE);
    expect(t.send(line)).toContain('queueLog');
    expect(t.send(line)).toEqual(['queueLog']);
    expect(t.calls[0]!.params.ordinal).toBe(2);
    t.reconnect();
    expect(t.send(line)).toEqual([]);
    expect(t.ctx().logLines).toBe(2);
    expect(t.ctx().ignored.duplicateLog).toBe(1);
  });

  it('keeps the newer state when an update comes before its create (PROTOCOL §7)', () => {
    const t = startTunnel();
    t.send(instanceEvent('update', T0 + 1, { status: 'running' }));
    t.send(instanceEvent('create', T0, { status: 'stopped' }));
    expect(t.value()).toBe('running');
    expect(t.ctx().statusChanges).toEqual([{ at: T0 + 1, status: 'running' }]);
  });

  it('applies a create that comes after the update with a newer time and the same payload as a no-op', () => {
    const t = startTunnel();
    expect(t.send(instanceEvent('update', T0, { status: 'running' })).sort()).toEqual([
      'persistConfig',
      'persistStatusChange',
      'queueState',
    ]);
    expect(t.send(instanceEvent('create', T0 + 1, { status: 'running' }))).toEqual([]);
    expect(t.value()).toBe('running');
  });
});

describe('deletion', () => {
  it('goes to the final deleted state on delete and persists the tombstone once', () => {
    const t = startTunnel();
    t.send(instanceEvent('update', T0, { status: 'running', tcprx: 100 }));
    t.send(instanceEvent('update', T0 + 1, { status: 'stopped', tcprx: 100 }));
    const effects = t.send(instanceEvent('delete', T0 + 2, { status: 'stopped', tcprx: 100 }));
    expect(t.value()).toBe('deleted');
    expect(t.actor.getSnapshot().status).toBe('done');
    expect(effects).toEqual(['persistConfig']);
    expect(t.calls[0]!.params.context).toMatchObject({ deleted: true, deletedAt: T0 + 2 });
    // Later events for a deleted instance do nothing (the actor is done).
    t.send(instanceEvent('update', T0 + 3, { status: 'running', tcprx: 900 }));
    expect(t.calls).toEqual([]);
    expect(t.ctx().counters.tcprx).toBe(100);
    expect(t.errors).toEqual([]);
  });

  it('does not delete on a stale delete', () => {
    const t = startTunnel();
    t.send(instanceEvent('update', T0 + 10, { status: 'running' }));
    t.send(instanceEvent('delete', T0, { status: 'stopped' }));
    expect(t.value()).toBe('running');
    expect(t.ctx().deleted).toBe(false);
  });

  it('tunnel.tombstone marks the tunnel deleted and persists it', () => {
    const t = startTunnel();
    t.send(instanceEvent('update', T0, { status: 'running' }));
    t.calls.length = 0;
    t.actor.send({ type: 'tunnel.tombstone', at: T0 + 50, receivedAt: T0 + 60, reason: 'missing from snapshot' });
    expect(t.value()).toBe('deleted');
    expect(t.ctx()).toMatchObject({ deleted: true, deletedAt: T0 + 50, updatedAt: T0 + 60 });
    expect(t.calls.map((c) => c.name)).toEqual(['persistConfig']);
    expect(t.calls[0]!.params).toMatchObject({ at: T0 + 50, context: { deleted: true, deletedAt: T0 + 50 } });
  });
});

describe('restore from a persisted context', () => {
  function liveThenRestore() {
    const a = startTunnel();
    a.send(instanceEvent('update', T0, { status: 'running', tcprx: 1000, udprx: 10 }));
    a.send(instanceEvent('update', T0 + 5000, { status: 'running', tcprx: 4000, udprx: 30 }));
    a.send(instanceEvent('log', T0 + 5001, { status: 'running', tcprx: 4000, udprx: 30 }, INFO_LINE));
    // What the database gives back: plain JSON.
    const saved = JSON.parse(JSON.stringify(a.ctx())) as TunnelContext;
    return { saved, b: startTunnel({ restore: saved }) };
  }

  it('resumes in the status held and with the counters, traffic and log identity it had', () => {
    const { saved, b } = liveThenRestore();
    expect(b.value()).toBe('running');
    expect(b.ctx().traffic).toEqual(counters(3000, 0, 20, 0));
    expect(b.ctx().logLines).toBe(1);
    expect(b.ctx().track).toEqual(saved.track);
  });

  it('counts the first sample after the restore against the saved one, not as a new baseline', () => {
    const { b } = liveThenRestore();
    const effects = b.send(instanceEvent('update', T0 + 10_000, { status: 'running', tcprx: 4500, udprx: 30 }));
    expect(b.ctx().traffic).toEqual(counters(3500, 0, 20, 0));
    expect(effects).toContain('queueState');
  });

  it('does not count again the last sample, or an older one, seen again after the restore', () => {
    const { b } = liveThenRestore();
    expect(b.send(instanceEvent('update', T0 + 5000, { status: 'running', tcprx: 4000, udprx: 30 }))).toEqual([]);
    b.send(instanceEvent('update', T0 + 1, { status: 'running', tcprx: 1500, udprx: 10 }));
    expect(b.ctx().traffic).toEqual(counters(3000, 0, 20, 0));
    // Nor the log line it had already taken (the de-duplication record was restored with it).
    b.reconnect();
    expect(b.send(instanceEvent('log', T0 + 5001, { status: 'running', tcprx: 4000, udprx: 30 }, INFO_LINE))).toEqual([]);
  });

  it('restores a deleted tunnel as deleted', () => {
    const saved = { ...newTunnelContext(KEY), status: 'stopped' as const, deleted: true, deletedAt: T0 };
    const b = startTunnel({ restore: saved });
    expect(b.value()).toBe('deleted');
    expect(b.calls).toEqual([]);
  });
});

describe('effects', () => {
  it('fires config, status change and state on first sight, and nothing for the baseline traffic', () => {
    const t = startTunnel();
    const effects = t.send(instanceEvent('initial', T0, { status: 'running', tcprx: 655360 }));
    expect(effects.sort()).toEqual(['persistConfig', 'persistStatusChange', 'queueState']);
    const state = t.calls.find((c) => c.name === 'queueState')!.params;
    expect(state.hours).toEqual({});
    expect(state.context.traffic).toEqual(counters(0, 0, 0, 0));
    expect(t.calls.find((c) => c.name === 'persistStatusChange')!.params).toEqual({ ...KEY, at: T0, status: 'running' });
  });

  it('fires only queueState, with the touched hour bucket, when counters move', () => {
    const t = startTunnel();
    t.send(instanceEvent('update', T0, { tcprx: 100 }));
    const receivedAt = T0 + 5000;
    expect(t.send(instanceEvent('update', T0 + 5000, { tcprx: 700 }), receivedAt)).toEqual(['queueState']);
    const hour = String(Math.floor(receivedAt / 3_600_000) * 3_600_000);
    expect(t.calls[0]!.params.hours).toEqual({ [hour]: counters(600, 0, 0, 0) });
    expect(t.ctx().rates.tcprx).toBe(120);
  });

  it('fires only queueState when a gauge (ping, pool, tcps, udps, mode) moves', () => {
    const t = startTunnel();
    t.send(instanceEvent('update', T0, { pool: 3 }));
    expect(t.send(instanceEvent('update', T0 + 1, { pool: 6 }))).toEqual(['queueState']);
    expect(t.send(instanceEvent('update', T0 + 2, { pool: 6, ping: 12 }))).toEqual(['queueState']);
  });

  it('fires only persistConfig when alias, meta, url or the restart policy change', () => {
    const t = startTunnel();
    t.send(instanceEvent('update', T0));
    expect(t.send(instanceEvent('update', T0 + 1, { alias: 'np-server-renamed' }))).toEqual(['persistConfig']);
    expect(t.send(instanceEvent('update', T0 + 2, { alias: 'np-server-renamed', meta: { peer: { sid: '1', type: '2', alias: 'p' }, tags: { env: 'prod' } } }))).toEqual(['persistConfig']);
    expect(t.send(instanceEvent('update', T0 + 3, { alias: 'np-server-renamed', meta: { peer: { sid: '1', type: '2', alias: 'p' }, tags: { env: 'prod' } }, restart: false }))).toEqual(['persistConfig']);
    expect(t.calls[0]!.params.context).toMatchObject({ alias: 'np-server-renamed', restart: false, meta: { tags: { env: 'prod' } } });
  });

  it('fires only queueLog for a log line that changes nothing else, with its identity', () => {
    const t = startTunnel();
    t.send(instanceEvent('update', T0));
    const event = instanceEvent('log', T0 + 1, {}, INFO_LINE);
    expect(t.send(event)).toEqual(['queueLog']);
    expect(t.calls[0]!.params).toMatchObject({ ...KEY, at: T0 + 1, time: event.time, ordinal: 1, raw: INFO_LINE });
    expect(t.calls[0]!.params.hash).toMatch(/^[0-9a-f]{16}$/);
  });

  it('counts the reset action and the second-reset jump as anomalies, and queues them', () => {
    const t = startTunnel();
    t.send(instanceEvent('update', T0, { status: 'stopped', tcprx: 0 }));
    t.send(instanceEvent('update', T0 + 1, { status: 'running', tcprx: 0 }));
    t.send(instanceEvent('update', T0 + 2, { tcprx: 819200 }));
    expect(t.send(instanceEvent('update', T0 + 3, { tcprx: 0 }))).toEqual(['queueState']);
    t.send(instanceEvent('update', T0 + 4, { tcprx: 30000 }));
    t.send(instanceEvent('update', T0 + 5, { tcprx: 0 }));
    t.send(instanceEvent('update', T0 + 6, { tcprx: 819200 }));
    expect(t.ctx().traffic.tcprx).toBe(819200 + 30000);
    expect(t.ctx().anomalies).toMatchObject({ resets: 2, resetJumps: 1, uncertainJumps: 0 });
  });
});

describe('a failure in the memory path', () => {
  /** A restored context whose counter bookkeeping is corrupt, so that `observe` throws on a state event. */
  function corrupt(status: 'running' | 'stopped') {
    const good = newTunnelContext(KEY);
    return { ...good, status, stateAt: T0, track: null } as unknown as TunnelContext;
  }

  it('observe really throws on such a context (the premise of the tests below)', () => {
    expect(() => observe(corrupt('stopped'), instanceEvent('update', T0 + 1, { status: 'running' }), T0 + 1, 1)).toThrow();
  });

  it('hands the event to memoryFailed and leaves context and state unchanged', () => {
    const t = startTunnel({ restore: corrupt('stopped') });
    expect(t.value()).toBe('stopped');
    const before = structuredClone(t.ctx()); // a copy: the actor updates its context in place
    const event = instanceEvent('update', T0 + 1, { status: 'running', tcprx: 5 });
    expect(t.send(event)).toEqual(['memoryFailed']);
    expect(t.calls[0]!.params).toMatchObject({ ...KEY, event: { type: 'update', at: T0 + 1 } });
    expect(typeof t.calls[0]!.params.error).toBe('string');
    expect(t.ctx()).toEqual(before);
    expect(t.errors).toEqual([]);
    expect(t.actor.getSnapshot().status).toBe('active');
    // The state node agrees with context.status: the failed event did not move the tunnel to running.
    // (Regression guard: the target used to be chosen by a guard before observe() ran, moving the state
    // node to `running` while context.status stayed `stopped`.)
    expect(t.value()).toBe('stopped');
  });

  it('does not end the actor as deleted when the delete itself failed to apply', () => {
    const t = startTunnel({ restore: corrupt('running') });
    expect(t.send(instanceEvent('delete', T0 + 1, { status: 'stopped' }))).toEqual(['memoryFailed']);
    expect(t.ctx().deleted).toBe(false);
    // (Regression guard: it used to end in the final `deleted` state with context.deleted === false.)
    expect(t.actor.getSnapshot().status).toBe('active');
  });
});

describe('configuration changes', () => {
  it('takes a meta as changed exactly when its JSON differs (values, key order, extra keys, tags)', () => {
    const peer = (sid: string, type = 'server', alias = 'p') => ({ sid, type, alias });
    const metas: unknown[] = [
      { peer: peer(''), tags: {} },
      { peer: peer('s1'), tags: {} },
      { peer: peer('s1', 'client'), tags: {} },
      { peer: { type: 'server', sid: 's1', alias: 'p' }, tags: {} }, // same values, other key order
      { peer: { ...peer('s1'), extra: 1 }, tags: {} },
      { peer: { ...peer('s1'), extra: 2 }, tags: {} },
      { tags: {}, peer: peer('s1') },
      { peer: peer('s1'), tags: {}, more: true },
      { peer: peer('s1'), tags: { env: 'prod' } },
      { peer: peer('s1'), tags: { env: 'test' } },
      { peer: peer('s1'), tags: [] },
    ];
    for (const a of metas) {
      for (const b of metas) {
        const ctx = newTunnelContext(KEY);
        commitObservation(ctx, observe(ctx, instanceEvent('initial', T0, { meta: a as InstanceMeta }), T0, 1));
        // A fresh copy each time: equal values in another object are not a change.
        const obs = observe(ctx, instanceEvent('update', T0 + 1, { meta: structuredClone(b) as InstanceMeta }), T0 + 1, 1);
        expect(obs.configChanged, `${JSON.stringify(a)} → ${JSON.stringify(b)}`).toBe(JSON.stringify(a) !== JSON.stringify(b));
      }
    }
  });
});

describe('values the tunnel updates in place', () => {
  it('are its own: a restored tunnel does not change the context it was restored from', () => {
    const first = startTunnel();
    first.send(instanceEvent('initial', T0, { tcprx: 100 }));
    first.send(instanceEvent('update', T0 + 1_000, { tcprx: 300 }));
    const source = first.ctx();
    const kept = structuredClone(source);
    first.actor.stop();

    const restored = startTunnel({ restore: source });
    restored.send(instanceEvent('update', T0 + 2_000, { tcprx: 1_000 }));
    const ctx = restored.ctx();
    expect(ctx.counters.tcprx).toBe(1_000);
    expect(ctx.track.last).toBe(ctx.counters);
    expect(ctx.traffic.tcprx).toBe(900);
    expect(ctx.rates.tcprx).toBe(700);
    // The source's counters, track, traffic, rates and buckets are as they were.
    expect(source).toEqual(kept);
    expect(ctx.traffic).not.toBe(source.traffic);
    expect(ctx.track).not.toBe(source.track);
    for (const hour in ctx.hours) expect(ctx.hours[hour]).not.toBe(source.hours[hour]);
  });

  it('are updated in place event after event, with the values a fresh computation gives', () => {
    const t = startTunnel();
    t.send(instanceEvent('initial', T0, { tcprx: 0 }));
    t.send(instanceEvent('update', T0 + 1_000, { tcprx: 500, udptx: 20 }));
    const { traffic, counters: last, rates } = t.ctx();
    t.send(instanceEvent('update', T0 + 3_000, { tcprx: 1_500, udptx: 60 }));
    const ctx = t.ctx();
    expect(ctx.traffic).toBe(traffic);
    expect(ctx.counters).toBe(last);
    expect(ctx.rates).toBe(rates);
    expect(ctx.traffic).toEqual(counters(1_500, 0, 0, 60));
    expect(ctx.counters).toEqual(counters(1_500, 0, 0, 60));
    expect(ctx.rates).toEqual(counters(500, 0, 0, 20)); // 1,000 and 40 bytes over 2 s
    // A reset builds a new track (rule 2/3), and the counters follow it.
    t.send(instanceEvent('update', T0 + 4_000, { tcprx: 0, udptx: 0 }));
    expect(t.ctx().counters).toEqual(counters(0, 0, 0, 0));
    expect(t.ctx().counters).not.toBe(last);
    expect(t.ctx().traffic).toEqual(counters(1_500, 0, 0, 60));
  });
});
