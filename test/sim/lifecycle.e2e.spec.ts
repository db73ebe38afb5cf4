/** Instance lifecycles as they appear on the stream (PROTOCOL §9.4), and the second-reset jump over the wire (§6). */
import { afterEach, describe, expect, it } from 'vitest';
import { startSimulator, type SimulatorHandle } from '../../src/sim/simulator.js';
import { instanceEvents, openStream, rest, type StreamRecorder } from '../support/sim-client.js';

let sim: SimulatorHandle | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

async function setup() {
  sim = await startSimulator({ instances: 2, reportIntervalMs: 0, autoTraffic: false, lifecycleLogs: false, restartDelayMs: 20, seed: 'life' });
  const master = sim.master;
  const stream = await openStream(master.apiBase, master.apiKey);
  await stream.waitFor('the snapshot', () => stream.events.length === 3);
  return { master, stream, id: master.instanceIds()[0]! };
}

const summary = (stream: StreamRecorder, id: string, from = 0) =>
  instanceEvents(stream, undefined, id)
    .filter((e) => e.type !== 'initial')
    .slice(from)
    .map((e) => `${e.type}:${e.instance.status}`);

describe('instance lifecycle on the stream', () => {
  it('stop zeroes ping/pool/tcps/udps and keeps mode and counters; start carries the counters on', async () => {
    const { master, stream, id } = await setup();
    master.addTraffic(id, { tcprx: 655_360, udptx: 10_240 });
    master.checkpoint(id);
    await stream.waitFor('checkpoint', () => instanceEvents(stream, 'update', id).length === 1);
    const before = instanceEvents(stream, 'update', id)[0]!.instance;
    expect(before).toMatchObject({ status: 'running', tcprx: 655_360, udptx: 10_240, mode: 1 });
    expect(before.pool).toBeGreaterThan(0);

    master.stopInstance(id);
    await stream.waitFor('stopped', () => instanceEvents(stream, 'update', id).length === 2);
    expect(instanceEvents(stream, 'update', id)[1]!.instance).toMatchObject({
      status: 'stopped', ping: 0, pool: 0, tcps: 0, udps: 0, mode: 1, tcprx: 655_360, udptx: 10_240,
    });

    master.startInstance(id);
    master.addTraffic(id, { tcprx: 1 });
    master.checkpoint(id);
    await stream.waitFor('running again', () => instanceEvents(stream, 'update', id).length === 4);
    expect(instanceEvents(stream, 'update', id)[3]!.instance).toMatchObject({ status: 'running', tcprx: 655_361 });
    expect(summary(stream, id)).toEqual(['update:running', 'update:stopped', 'update:running', 'update:running']);
  });

  it('restart sends update(stopped) then update(running)', async () => {
    const { master, stream, id } = await setup();
    await rest('PATCH', `${master.apiBase}/instances/${id}`, { apiKey: master.apiKey, body: { action: 'restart' } });
    await stream.waitFor('running', () => instanceEvents(stream, 'update', id).length === 2);
    expect(summary(stream, id)).toEqual(['update:stopped', 'update:running']);
  });

  it('error comes only inside log events, with no update, and recovers to running at the next checkpoint', async () => {
    const { master, stream, id } = await setup();
    master.failInstance(id);
    await stream.waitFor('the error log', () => instanceEvents(stream, 'log', id).length === 1);
    const errorLog = instanceEvents(stream, 'log', id)[0]!;
    expect(errorLog.instance.status).toBe('error');
    expect(errorLog.logs).toMatch(/\u001b\[31mERROR\u001b\[0m {2}Server error: .* seq=1$/);
    expect(instanceEvents(stream, 'update', id)).toHaveLength(0);
    expect(master.instance(id)).toMatchObject({ status: 'error', pool: 0, ping: 0 });

    master.checkpoint(id);
    await stream.waitFor('recovery', () => instanceEvents(stream, 'update', id).length === 1);
    expect(summary(stream, id)).toEqual(['log:error', 'log:error', 'update:running']); // error line, restart line, checkpoint
  });

  it('a persistent failure keeps logging errors and sends no checkpoint until restarted', async () => {
    const { master, stream, id } = await setup();
    master.failInstance(id, { persistent: true });
    master.checkpoint(id);
    master.checkpoint(id);
    await stream.waitFor('three error lines', () => instanceEvents(stream, 'log', id).length === 3);
    expect(instanceEvents(stream, 'update', id)).toHaveLength(0);
    await master.restartInstance(id);
    await stream.waitFor('running', () => instanceEvents(stream, 'update', id).length === 2);
    expect(summary(stream, id).slice(-2)).toEqual(['update:stopped', 'update:running']);
  });

  it('delete of a running instance: update(stopped), then delete with the last counters', async () => {
    const { master, stream, id } = await setup();
    master.addTraffic(id, { tcprx: 819_200 });
    master.checkpoint(id);
    master.deleteInstance(id);
    await stream.waitFor('delete', () => instanceEvents(stream, 'delete', id).length === 1);
    expect(summary(stream, id)).toEqual(['update:running', 'update:stopped', 'delete:stopped']);
    expect(instanceEvents(stream, 'delete', id)[0]!.instance.tcprx).toBe(819_200);
    expect(master.instanceIds()).not.toContain(id);
  });

  it('shows the second-reset jump exactly as PROTOCOL §6 observed it', async () => {
    const { master, stream, id } = await setup();
    const patch = (body: unknown) => rest('PATCH', `${master.apiBase}/instances/${id}`, { apiKey: master.apiKey, body });
    const traffic = (n: number) => ({ tcprx: n, tcptx: n, udprx: n / 64, udptx: n / 64 });

    master.addTraffic(id, traffic(819_200));
    master.checkpoint(id);
    const firstReset = await patch({ action: 'reset' });
    expect(firstReset.json()).toMatchObject({ tcprx: 0, tcptx: 0, udprx: 0, udptx: 0 }); // reset is synchronous
    master.addTraffic(id, traffic(30_000));
    master.checkpoint(id);
    await patch({ action: 'reset' });
    master.checkpoint(id); // no new traffic
    await stream.waitFor('five updates', () => instanceEvents(stream, 'update', id).length === 5);

    expect(instanceEvents(stream, 'update', id).map((e) => e.instance.tcprx)).toEqual([819_200, 0, 30_000, 0, 819_200]);
    expect(stream.rejections).toEqual([]);
  });
});
