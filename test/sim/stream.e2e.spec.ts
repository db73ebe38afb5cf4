/**
 * The simulator's SSE stream over a real socket, compared with the real master's capture: headers, first
 * bytes, key order, the initial snapshot, and a busy stream that our own parser accepts with zero rejections.
 */
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { logSequence } from '../../src/sim/log-lines.js';
import { startSimulator, type SimulatorHandle } from '../../src/sim/simulator.js';
import { instanceEvents, openStream, rest } from '../support/sim-client.js';

const fixture = (name: string): string => readFileSync(new URL(`../../fixtures/captures/${name}`, import.meta.url), 'utf8');
const capture = fixture('nodepass-s1-main-debug.sse');
const captureHeaders = fixture('nodepass-s1-main-debug.timestamped.txt')
  .split('\n')
  .filter((l) => l.startsWith('# ') && l.includes(': '))
  .map((l) => l.slice(2));

/** Every key path of a JSON value in document order: the key order Go wrote. */
function keyPaths(value: unknown, prefix = ''): string[] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return [];
  return Object.entries(value).flatMap(([k, v]) => [`${prefix}${k}`, ...keyPaths(v, `${prefix}${k}.`)]);
}

function captureEvent(type: string, predicate: (line: string) => boolean = () => true): unknown {
  const line = capture.split('\n').find((l) => l.startsWith(`data: {"type":"${type}"`) && predicate(l));
  return JSON.parse(line!.slice(6));
}

let sim: SimulatorHandle | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

describe('SSE stream', () => {
  it('sends the real master\'s headers and first bytes', async () => {
    sim = await startSimulator({ instances: 2, reportIntervalMs: 0, seed: 'headers' });
    const stream = await openStream(sim.master.apiBase, sim.master.apiKey);
    await stream.waitFor('the initial snapshot', () => stream.events.length === 3);

    const withoutDate = (lines: string[]) => lines.filter((l) => !l.startsWith('Date: '));
    expect(captureHeaders.length).toBeGreaterThan(5);
    expect(withoutDate(stream.headerLines)).toEqual(withoutDate(captureHeaders.filter((l) => !l.startsWith('HTTP '))));

    const upToTime = (body: string) => body.slice(0, body.indexOf('"time":"') + 8);
    expect(upToTime(stream.body())).toBe(upToTime(capture));
    expect(upToTime(stream.body())).toBe('retry: 3000\n\nevent: instance\ndata: {"type":"initial","time":"');
    expect(stream.retry).toBe(3000);
  });

  it('writes events with the same key order as the capture, and frames exactly `event: instance\\ndata: …\\n\\n`', async () => {
    sim = await startSimulator({ instances: 2, reportIntervalMs: 0, seed: 'order' });
    const { master } = sim;
    const stream = await openStream(master.apiBase, master.apiKey);
    const id = master.instanceIds()[0]!;
    master.emitLogs(id, 1);
    master.checkpoint(id);
    await stream.waitFor('log and update', () => stream.events.length === 5);

    const ours = stream.payloads.map((p) => JSON.parse(p) as { type: string; instance: { id: string } });
    const apiKeyRecord = ours.find((e) => e.instance.id === '********');
    expect(keyPaths(apiKeyRecord)).toEqual(keyPaths(captureEvent('initial')));
    for (const type of ['update', 'log']) {
      expect(keyPaths(ours.find((e) => e.type === type))).toEqual(keyPaths(captureEvent(type)));
    }
    // Frames: nothing but `event: instance`, one `data:` line and a blank line, after the `retry` preamble.
    const frames = stream.body().slice('retry: 3000\n\n'.length).split('\n\n').filter((f) => f !== '');
    expect(frames).toHaveLength(5);
    for (const frame of frames) expect(frame).toMatch(/^event: instance\ndata: \{[^\n]*\}$/);
  });

  it('opens with one `initial` per instance in seeded random order, the API-key record included', async () => {
    sim = await startSimulator({ instances: 6, reportIntervalMs: 0, seed: 'snapshot' });
    const { master } = sim;
    const orders: string[][] = [];
    for (let i = 0; i < 4; i++) {
      const stream = await openStream(master.apiBase, master.apiKey);
      await stream.waitFor('the snapshot', () => stream.events.length === 7);
      expect(stream.events.every((e) => e.kind === 'master' || (e.kind === 'instance' && e.event.type === 'initial'))).toBe(true);
      const record = stream.events.find((e) => e.kind === 'master');
      expect(record).toMatchObject({ kind: 'master', type: 'initial', masterId: master.masterId });
      const raw = stream.payloads.map((p) => JSON.parse(p) as { instance: { id: string; url: string; config: string } });
      expect(raw.find((e) => e.instance.id === '********')?.instance.url).toBe(master.apiKey);
      orders.push(raw.map((e) => e.instance.id));
      stream.close();
    }
    expect(new Set(orders.map((o) => [...o].sort().join())).size).toBe(1);
    expect(new Set(orders.map((o) => o.join())).size).toBeGreaterThan(1);
  });

  it('a busy stream (checkpoints, logs, lifecycle) parses with zero rejections and gap-free log sequences', async () => {
    sim = await startSimulator({ instances: 4, reportIntervalMs: 40, logRate: 100, logLevel: 'debug', seed: 'busy' });
    const { master } = sim;
    const stream = await openStream(master.apiBase, master.apiKey);
    const created = await rest('POST', `${master.apiBase}/instances`, {
      apiKey: master.apiKey,
      body: { alias: 'a&b <x>', url: 'server://127.0.0.1:19500/127.0.0.1:19600?mode=1' },
    });
    expect(created.status).toBe(201);
    const newId = created.json<{ id: string }>().id;
    const [first, second] = master.instanceIds();
    await rest('PATCH', `${master.apiBase}/instances/${first}`, { apiKey: master.apiKey, body: { action: 'restart' } });
    await rest('PATCH', `${master.apiBase}/instances/${second}`, { apiKey: master.apiKey, body: { action: 'reset' } });
    master.failInstance(newId);
    await stream.waitFor('plenty of traffic', () => instanceEvents(stream, 'log').length > 150 && instanceEvents(stream, 'update').length > 20);
    await rest('DELETE', `${master.apiBase}/instances/${newId}`, { apiKey: master.apiKey });
    await stream.waitFor('the delete', () => instanceEvents(stream, 'delete').length === 1);

    expect(stream.rejections).toEqual([]);
    expect(stream.overflows).toEqual([]);
    const byType = (t: string) => instanceEvents(stream, t).length;
    expect(byType('create')).toBe(1);
    expect(byType('initial')).toBe(4);
    // The alias travels Go-escaped and decodes back to the original.
    expect(stream.body()).toContain('"alias":"a\\u0026b \\u003cx\\u003e"');
    expect(instanceEvents(stream, 'create')[0]!.instance.alias).toBe('a&b <x>');

    // Lossless delivery: every instance's seq numbers run 1, 2, 3… with no gap and no repeat.
    const seqs = new Map<string, number[]>();
    for (const e of instanceEvents(stream, 'log')) {
      const seq = logSequence(e.logs);
      expect(seq).toBeDefined();
      seqs.set(e.instance.id, [...(seqs.get(e.instance.id) ?? []), seq!]);
    }
    for (const [id, list] of seqs) {
      expect(list, id).toEqual(list.map((_, i) => list[0]! + i));
    }
    expect(master.stats().dropped).toBe(0);
  });

  it('takes event times and log timestamps from the injected clock', async () => {
    const at = Date.UTC(2026, 10, 26, 9, 15, 34, 54);
    sim = await startSimulator({ instances: 1, reportIntervalMs: 0, seed: 'clock', clock: () => at });
    const { master } = sim;
    const stream = await openStream(master.apiBase, master.apiKey);
    master.emitLogs(master.instanceIds()[0]!, 3);
    await stream.waitFor('three logs', () => instanceEvents(stream, 'log').length === 3);
    const raw = stream.payloads.map((p) => (JSON.parse(p) as { time: string }).time);
    for (const time of raw) expect(time).toMatch(/^2026-11-26T09:15:34\.054\d{0,6}Z$/);
    expect(new Set(raw).size).toBe(raw.length); // a frozen clock still gives unique times
    expect(raw).toHaveLength(5); // two initial, three log
    for (const e of instanceEvents(stream, 'log')) expect(e.logs.startsWith('2026-11-26 09:15:34.054  ')).toBe(true);
    expect((await rest('GET', `${master.apiBase}/info`, { apiKey: master.apiKey })).json()).toMatchObject({ uptime: 0 });
  });

  it('is deterministic for a seed: same ids, same traffic at the n-th checkpoint', async () => {
    const run = async () => {
      const s = await startSimulator({ instances: 4, reportIntervalMs: 0, seed: 'same-seed' });
      const m = s.master;
      for (let i = 0; i < 5; i++) m.checkpoint();
      const view = { key: m.apiKey, mid: m.masterId, instances: m.instanceIds().map((id) => m.instance(id)) };
      await s.close();
      return view;
    };
    const a = await run();
    const b = await run();
    expect(a).toEqual(b);
    expect(a.instances.some((i) => i!.tcprx > 0)).toBe(true);
  });
});
