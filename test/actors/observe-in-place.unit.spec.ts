/**
 * `observeInPlace` (actors/tunnel.machine.ts): the hot self-transition applied without XState's send must do
 * exactly what sending `tunnel.observe` does — same context, same state, same effects in the same order — and
 * must decline every event that can change the state, and every event while an inspector is attached.
 */
import { describe, expect, it } from 'vitest';
import { createActor } from 'xstate';
import type { InstanceEvent, InstanceStatus } from '../../actors/model.js';
import { observeInPlace, setSystemInspected } from '../../actors/tunnel.machine.js';
import { instanceEvent, T0 } from '../support/instances.js';
import { recordingTunnelMachine } from '../support/recorded-tunnel.js';

function startTunnel() {
  const { machine, calls, failing } = recordingTunnelMachine();
  const actor = createActor(machine, { input: { endpointId: 1, instanceId: 'a236701f' } });
  const errors: unknown[] = [];
  actor.subscribe({ error: (e) => errors.push(e) });
  actor.start();
  return { actor, calls, errors, failing };
}

/** A seeded sequence with every kind of event: counters moving, gauges, logs, stale repeats, status changes, a delete. */
function eventSequence(seed: number, length: number): InstanceEvent[] {
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const statuses: InstanceStatus[] = ['running', 'stopped', 'error'];
  const events: InstanceEvent[] = [];
  let at = T0;
  let status: InstanceStatus = 'running';
  let rx = 0;
  for (let i = 0; i < length; i++) {
    at += 1 + Math.floor(rand() * 3_000);
    const r = rand();
    if (r < 0.05) status = statuses[Math.floor(rand() * 3)]!;
    if (r > 0.1) rx += Math.floor(rand() * 5_000);
    const type = i === 0 ? 'initial' : r < 0.6 ? 'update' : r < 0.95 ? 'log' : 'create';
    const line = `2026-11-26 09:15:35.090  INFO  line ${Math.floor(rand() * 20)}`;
    const event = instanceEvent(type, at, { status, tcprx: rx, tcptx: rx * 2, ping: Math.floor(rand() * 3), alias: r < 0.02 ? 'renamed' : 'np-server' }, type === 'log' ? line : '');
    events.push(event);
    // Now and then an older event arrives late (stale): it must move nothing.
    if (rand() < 0.05 && events.length > 2) events.push(events[events.length - 3]!);
  }
  events.push(instanceEvent('delete', at + 1, { status, tcprx: rx, tcptx: rx * 2 }));
  events.push(instanceEvent('update', at + 2, { status, tcprx: rx + 10, tcptx: rx * 2 }));
  return events;
}

describe('observeInPlace', () => {
  for (const seed of [1, 7, 42]) {
    it(`leaves context, state and effects exactly as sending would (seed ${seed}, 400 events)`, () => {
      const sent = startTunnel();
      const direct = startTunnel();
      let inPlace = 0;
      for (const [i, event] of eventSequence(seed, 400).entries()) {
        const receivedAt = event.at + 5;
        sent.actor.send({ type: 'tunnel.observe', event, receivedAt, connection: 1 });
        if (observeInPlace(direct.actor, event, receivedAt, 1)) inPlace++;
        else direct.actor.send({ type: 'tunnel.observe', event, receivedAt, connection: 1 });
        expect(direct.actor.getSnapshot().value, `state after event ${i}`).toEqual(sent.actor.getSnapshot().value);
      }
      expect(direct.calls).toEqual(sent.calls);
      expect(direct.actor.getSnapshot().context).toEqual(sent.actor.getSnapshot().context);
      expect(direct.actor.getSnapshot().status).toBe('done');
      expect(inPlace).toBeGreaterThan(300); // most events are hot self-transitions
      expect(direct.errors).toEqual([]);
    });
  }

  it('declines the first sight, a status change, a delete, and anything after the tombstone', () => {
    const { actor } = startTunnel();
    expect(observeInPlace(actor, instanceEvent('initial', T0), T0, 1)).toBe(false);
    actor.send({ type: 'tunnel.observe', event: instanceEvent('initial', T0), receivedAt: T0, connection: 1 });
    expect(observeInPlace(actor, instanceEvent('update', T0 + 1, { status: 'stopped' }), T0 + 1, 1)).toBe(false);
    expect(observeInPlace(actor, instanceEvent('delete', T0 + 2), T0 + 2, 1)).toBe(false);
    expect(observeInPlace(actor, instanceEvent('update', T0 + 3, { tcprx: 9 }), T0 + 3, 1)).toBe(true);
    // A stale event with another status cannot move the state: taken in place (it only counts its log line).
    expect(observeInPlace(actor, instanceEvent('log', T0 - 10, { status: 'error' }, 'x'), T0 + 4, 1)).toBe(true);
    expect(actor.getSnapshot().context.status).toBe('running');
    actor.send({ type: 'tunnel.observe', event: instanceEvent('delete', T0 + 5), receivedAt: T0 + 5, connection: 1 });
    expect(observeInPlace(actor, instanceEvent('update', T0 + 6), T0 + 6, 1)).toBe(false);
  });

  it('sends everything while the system is inspected, so the inspector sees every event', () => {
    const { actor } = startTunnel();
    actor.send({ type: 'tunnel.observe', event: instanceEvent('initial', T0), receivedAt: T0, connection: 1 });
    setSystemInspected(actor.system, true);
    expect(observeInPlace(actor, instanceEvent('update', T0 + 1, { tcprx: 5 }), T0 + 1, 1)).toBe(false);
    setSystemInspected(actor.system, false);
    expect(observeInPlace(actor, instanceEvent('update', T0 + 2, { tcprx: 6 }), T0 + 2, 1)).toBe(true);
  });

  it('hands an effect that throws to memoryFailed instead of throwing into the endpoint', () => {
    const { actor, calls, errors, failing } = startTunnel();
    actor.send({ type: 'tunnel.observe', event: instanceEvent('initial', T0), receivedAt: T0, connection: 1 });
    calls.length = 0;
    failing.effect = 'queueState';
    expect(observeInPlace(actor, instanceEvent('update', T0 + 1_000, { tcprx: 500 }), T0 + 1_000, 1)).toBe(true);
    expect(calls.map((c) => [c.name, c.params.error])).toEqual([['memoryFailed', 'queueState: queueState broke']]);
    expect(actor.getSnapshot().context.counters.tcprx).toBe(500);
    expect(errors).toEqual([]);
  });
});
