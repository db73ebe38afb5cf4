/**
 * The fleet machine (actors/fleet.machine.ts): the root owns one endpoint actor per master, restarts a failing
 * one within its budget, counts it, and never fails itself.
 */
import { describe, expect, it } from 'vitest';
import { createActor, fromCallback } from 'xstate';
import { endpointMachine } from '../../actors/endpoint.machine.js';
import { fleetMachine } from '../../actors/fleet.machine.js';
import { actorId, type MasterInfo } from '../../actors/model.js';
import { SteppedClock } from '../../src/runtime/stepped-clock.js';
import { instance, instanceEvent, T0 } from '../support/instances.js';

const INFO: MasterInfo = { masterId: '1ab781946d30b9c8', alias: 'lab', version: 'dev', os: 'linux', arch: 'amd64', name: 'h', uptime: 1, system: {} };

/**
 * A fleet whose endpoint actors throw from their `persistMaster` effect while `failing` says so (a bug in an
 * effect, not bad input), so that a `master.info` event makes the endpoint actor fail.
 */
function startFleet(restartBudget = 2, endpoints = [1]) {
  const failing = new Set<number>();
  const endpointFailed: { endpointId: number; error: string; restarted: boolean }[] = [];
  const errors: unknown[] = [];
  const clock = new SteppedClock(T0);
  const endpoint = endpointMachine.provide({
    actors: { eventStream: fromCallback(() => () => {}) },
    actions: {
      persistMaster: (_, p) => {
        if (failing.has(p.endpointId)) throw new Error(`persistMaster exploded for ${p.endpointId}`);
      },
    },
  });
  const machine = fleetMachine.provide({
    actors: { endpoint },
    actions: { endpointFailed: (_, p) => void endpointFailed.push({ ...p }) },
  });
  const actor = createActor(machine, {
    clock,
    input: { restartBudget, endpoints: endpoints.map((id) => ({ endpointId: id, name: `m${id}` })) },
  });
  actor.subscribe({ error: (e) => errors.push(e) });
  actor.start();
  const child = (id: number) => actor.getSnapshot().context.endpoints[String(id)]!;
  const breakEndpoint = (id: number) => {
    failing.add(id);
    child(id).send({ type: 'master.info', info: INFO, at: T0 });
  };
  return { actor, failing, endpointFailed, errors, child, breakEndpoint, ctx: () => actor.getSnapshot().context };
}

describe('endpoints as children', () => {
  it('spawns the endpoints of its input as children with kind:id ids', () => {
    const f = startFleet(2, [1, 2]);
    const children = f.actor.getSnapshot().children as Record<string, unknown>;
    expect(Object.keys(children).sort()).toEqual([actorId.endpoint(1), actorId.endpoint(2)]);
    expect(children[actorId.endpoint(1)]).toBe(f.child(1));
    expect(f.child(1).getSnapshot().value).toEqual({ enabled: { online: 'connecting' } });
  });

  it('adds an endpoint once, and removes it (stopping it)', () => {
    const f = startFleet(2, []);
    f.actor.send({ type: 'fleet.add_endpoint', input: { endpointId: 7, name: 'm7' } });
    const first = f.child(7);
    f.actor.send({ type: 'fleet.add_endpoint', input: { endpointId: 7, name: 'renamed' } });
    expect(f.child(7)).toBe(first);
    expect(first.getSnapshot().context.name).toBe('m7');
    f.actor.send({ type: 'fleet.remove_endpoint', endpointId: 7 });
    expect(f.ctx().endpoints).toEqual({});
    expect(f.ctx().inputs).toEqual({});
    expect(first.getSnapshot().status).toBe('stopped');
    expect(Object.keys(f.actor.getSnapshot().children)).toEqual([]);
    f.actor.send({ type: 'fleet.remove_endpoint', endpointId: 7 }); // unknown: nothing happens
    expect(f.errors).toEqual([]);
  });

  it('stops the tunnel actors of an endpoint it removes, and unregisters them from the system', () => {
    const f = startFleet(2, [3]);
    const ep = f.child(3);
    ep.send({ type: 'stream.opened', at: T0 });
    for (const id of ['aa', 'bb']) {
      const parsed = { kind: 'instance' as const, event: { type: 'initial' as const, at: T0, time: new Date(T0).toISOString(), instance: instance({ id }), logs: '' } };
      ep.send({ type: 'stream.event', parsed, receivedAt: T0 });
    }
    const tunnels = Object.values(ep.getSnapshot().context.tunnels);
    expect(tunnels.map((t) => t.getSnapshot().status)).toEqual(['active', 'active']);
    f.actor.send({ type: 'fleet.remove_endpoint', endpointId: 3 });
    const stopped = 2; // XState's ProcessingStatus.Stopped
    expect(tunnels.map((t) => (t as unknown as { _processingStatus: number })._processingStatus)).toEqual([stopped, stopped]);
    expect(f.errors).toEqual([]);
  });
});

describe('a failing endpoint actor', () => {
  it('is restarted, counted and reported, and the root keeps running', () => {
    const f = startFleet(2, [1, 2]);
    const before = f.child(1);
    f.breakEndpoint(1);
    expect(before.getSnapshot().status).toBe('error');
    const after = f.child(1);
    expect(after).not.toBe(before);
    expect(after.getSnapshot().status).toBe('active');
    expect(f.ctx()).toMatchObject({ endpointRestarts: 1, endpointFailures: 1 });
    expect(f.endpointFailed).toEqual([{ endpointId: 1, error: expect.stringContaining('persistMaster exploded'), restarted: true }]);
    expect(f.actor.getSnapshot().status).toBe('active');
    expect(f.child(2).getSnapshot().status).toBe('active');
    expect(f.errors).toEqual([]);
  });

  it('restarts it with the tunnels it had, so no counter baseline is lost', () => {
    const f = startFleet(2, [1]);
    const ep = f.child(1);
    ep.send({ type: 'stream.opened', at: T0 });
    ep.send({ type: 'stream.event', parsed: { kind: 'instance', event: instanceEvent('update', T0, { tcprx: 1000 }) }, receivedAt: T0 });
    ep.send({ type: 'stream.event', parsed: { kind: 'instance', event: instanceEvent('update', T0 + 5000, { tcprx: 4000 }) }, receivedAt: T0 + 5000 });
    f.breakEndpoint(1);
    const tunnel = f.child(1).getSnapshot().context.tunnels['a236701f'];
    expect(tunnel).toBeDefined();
    expect(tunnel!.getSnapshot().context.traffic.tcprx).toBe(3000);
    expect(tunnel!.getSnapshot().context.counters.tcprx).toBe(4000);
    expect(f.errors).toEqual([]);
  });

  it('is left failed and counted once the budget is spent, and the root still keeps running', () => {
    const f = startFleet(1, [1]);
    f.breakEndpoint(1);
    expect(f.ctx()).toMatchObject({ endpointRestarts: 1, endpointFailures: 1 });
    f.breakEndpoint(1);
    expect(f.ctx()).toMatchObject({ endpointRestarts: 1, endpointFailures: 2 });
    expect(f.endpointFailed.map((e) => e.restarted)).toEqual([true, false]);
    expect(f.child(1).getSnapshot().status).toBe('error');
    expect(f.actor.getSnapshot().status).toBe('active');
    // The fleet still works for everything else.
    f.actor.send({ type: 'fleet.add_endpoint', input: { endpointId: 2, name: 'm2' } });
    expect(f.child(2).getSnapshot().status).toBe('active');
    expect(f.errors).toEqual([]);
  });
});
