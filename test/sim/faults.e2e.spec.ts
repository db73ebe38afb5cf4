/** Fault controls over real sockets: rotation, shutdown and restart, crash, half-open stall, HTTP failures, garbage. */
import { afterEach, describe, expect, it } from 'vitest';
import { startSimulator, type SimulatorHandle } from '../../src/sim/simulator.js';
import { instanceEvents, openStream, rest, sleep } from '../support/sim-client.js';

let sim: SimulatorHandle | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

async function setup(options: Parameters<typeof startSimulator>[0] = {}) {
  sim = await startSimulator({ instances: 2, reportIntervalMs: 0, seed: 'faults', ...options });
  const master = sim.master;
  const stream = await openStream(master.apiBase, master.apiKey);
  await stream.waitFor('the snapshot', () => stream.events.length === master.instanceIds().length + 1);
  return { master, stream };
}

describe('key rotation', () => {
  it('PATCH ******** {action: restart}: new key in the response, shutdown + EOF on streams, 401 for the old key', async () => {
    const { master, stream } = await setup();
    const oldKey = master.apiKey;
    const res = await rest('PATCH', `${master.apiBase}/instances/********`, { apiKey: oldKey, body: { action: 'restart' } });
    const record = res.json<{ id: string; url: string; config: string }>();
    expect(record.id).toBe('********');
    expect(record.url).toMatch(/^[0-9a-f]{32}$/);
    expect(record.url).not.toBe(oldKey);
    expect(record.config).toBe(master.masterId);

    await stream.waitFor('EOF', () => stream.ended !== undefined);
    expect(stream.events.at(-1)).toMatchObject({ kind: 'shutdown' });
    expect(stream.ended).toBe('eof');
    expect(stream.payloads.at(-1)).toMatch(/^\{"type":"shutdown","time":"[^"]+","instance":null,"logs":""\}$/);

    const old = await rest('GET', `${master.apiBase}/instances`, { apiKey: oldKey });
    expect(old.status).toBe(401);
    expect(old.text).toBe('{"error":"Unauthorized: Invalid API key"}\n');
    expect((await rest('GET', `${master.apiBase}/instances`, { apiKey: record.url })).status).toBe(200);
  });

  it('rotateKey() on the handle does the same', async () => {
    const { master, stream } = await setup();
    const oldKey = master.apiKey;
    const newKey = master.rotateKey();
    await stream.waitFor('EOF', () => stream.ended !== undefined);
    expect(stream.events.filter((e) => e.kind === 'shutdown')).toHaveLength(1);
    expect((await rest('GET', `${master.apiBase}/info`, { apiKey: oldKey })).status).toBe(401);
    const fresh = await openStream(master.apiBase, newKey);
    await fresh.waitFor('snapshot', () => fresh.events.length === 3);
    expect(JSON.parse(fresh.payloads.find((p) => p.includes('"********"'))!).instance.url).toBe(newKey);
  });
});

describe('master shutdown and restart', () => {
  it('shutdown sends `shutdown` and ends the stream; restart restores counters and the auto-start policy', async () => {
    const { master, stream } = await setup({
      instances: [
        { id: 'aaaa0001', alias: 'keeps-running', url: 'client://127.0.0.1:19100/127.0.0.1:19001?mode=2', counters: { tcprx: 849_200, udprx: 13_300 } },
        { id: 'aaaa0002', alias: 'no-autostart', url: 'server://127.0.0.1:19100/127.0.0.1:19200?mode=1', restart: false },
      ],
    });
    expect((await rest('GET', `${master.apiBase}/info`, { apiKey: master.apiKey })).json()).toMatchObject({ mid: '' });
    master.shutdown();
    await stream.waitFor('EOF', () => stream.ended !== undefined);
    expect(stream.events.at(-1)).toMatchObject({ kind: 'shutdown' });
    await expect(rest('GET', `${master.apiBase}/info`, { apiKey: master.apiKey })).rejects.toThrow();

    await master.restartMaster();
    const after = await openStream(master.apiBase, master.apiKey);
    await after.waitFor('snapshot', () => after.events.length === 3);
    const initial = Object.fromEntries(instanceEvents(after, 'initial').map((e) => [e.instance.id, e.instance]));
    expect(initial['aaaa0001']).toMatchObject({ status: 'running', tcprx: 849_200, udprx: 13_300 });
    expect(initial['aaaa0002']).toMatchObject({ status: 'stopped' });
    // After a restart the master knows its id in /info (the first-run bug is gone).
    expect((await rest('GET', `${master.apiBase}/info`, { apiKey: master.apiKey })).json()).toMatchObject({ mid: master.masterId });
  });

  it('dropConnections cuts streams with no shutdown event, like a crash', async () => {
    const { master, stream } = await setup();
    master.dropConnections();
    await stream.waitFor('the cut', () => stream.ended !== undefined);
    expect(stream.ended).toBe('error');
    expect(stream.events.some((e) => e.kind === 'shutdown')).toBe(false);
    // The master itself is still there.
    expect((await rest('GET', `${master.apiBase}/info`, { apiKey: master.apiKey })).status).toBe(200);
  });
});

describe('half-open stall', () => {
  it('stops every byte on open streams and hangs /info until unstalled', async () => {
    const { master, stream } = await setup();
    const id = master.instanceIds()[0]!;
    master.stall();
    const bytesAtStall = stream.bytes();
    master.emitLogs(id, 5);
    master.checkpoint();
    await expect(rest('GET', `${master.apiBase}/info`, { apiKey: master.apiKey, timeoutMs: 150 })).rejects.toThrow(/timed out/);
    expect(stream.bytes()).toBe(bytesAtStall);
    expect(master.stats().stalled).toBe(true);

    master.unstall();
    await stream.waitFor('the held events', () => instanceEvents(stream, 'log', id).length === 5);
    expect(stream.bytes()).toBeGreaterThan(bytesAtStall);
    expect((await rest('GET', `${master.apiBase}/info`, { apiKey: master.apiKey })).status).toBe(200);
  });

  it('a request that arrives during a stall is answered once the stall ends', async () => {
    const { master } = await setup();
    master.stall();
    const pending = rest('GET', `${master.apiBase}/instances`, { apiKey: master.apiKey, timeoutMs: 2000 });
    await sleep(50);
    master.unstall();
    expect((await pending).status).toBe(200);
  });
});

describe('half-open streams on a healthy master', () => {
  it('silences the open streams for good while /info, /instances and new streams keep working', async () => {
    const { master, stream } = await setup();
    const id = master.instanceIds()[0]!;
    expect(master.halfOpenStreams()).toBe(1);
    const bytesAtCut = stream.bytes();
    master.emitLogs(id, 3);
    master.checkpoint();
    expect((await rest('GET', `${master.apiBase}/info`, { apiKey: master.apiKey })).status).toBe(200);
    const fresh = await openStream(master.apiBase, master.apiKey);
    await fresh.waitFor('a new snapshot', () => fresh.events.length === master.instanceIds().length + 1);
    master.emitLogs(id, 2);
    await fresh.waitFor('events on the new stream', () => instanceEvents(fresh, 'log', id).length === 2);
    await sleep(50);
    expect(stream.bytes()).toBe(bytesAtCut); // the old stream got nothing, and was not closed either
    expect(stream.ended).toBeUndefined();
    expect(master.stats()).toMatchObject({ halfOpened: 1, connections: 1 });
  });
});

describe('events lost upstream', () => {
  it('loseEvents(n): the next n events reach no stream, are counted, and the stream stays healthy', async () => {
    const { master, stream } = await setup();
    const id = master.instanceIds()[0]!;
    master.loseEvents(2);
    master.emitLogs(id, ['one', 'two', 'three']);
    await stream.waitFor('the third line', () => instanceEvents(stream, 'log', id).length === 1);
    expect(stream.payloads.at(-1)).toContain('three');
    expect(master.stats().lost).toBe(2);
    expect(stream.ended).toBeUndefined();
  });
});

describe('HTTP failures', () => {
  it.each([
    [401, '{"error":"Unauthorized: Invalid API key"}\n'],
    [404, '404 page not found\n'],
    [500, '{"error":"Internal Server Error"}\n'],
  ])('setHttpFailure(%i) answers every request that way until cleared', async (status, text) => {
    const { master } = await setup();
    master.setHttpFailure(status);
    for (const path of ['/info', '/events', '/instances']) {
      const res = await rest('GET', `${master.apiBase}${path}`, { apiKey: master.apiKey });
      expect({ path, status: res.status, text: res.text }).toEqual({ path, status, text });
    }
    master.setHttpFailure(null);
    expect((await rest('GET', `${master.apiBase}/info`, { apiKey: master.apiKey })).status).toBe(200);
  });

  it('html-200 and empty-200 spoil the next responses only', async () => {
    const { master } = await setup();
    master.injectGarbage('html-200');
    master.injectGarbage('empty-200');
    const html = await rest('GET', `${master.apiBase}/events`, { apiKey: master.apiKey });
    expect(html.status).toBe(200);
    expect(html.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(html.text).toContain('<html>');
    const empty = await rest('GET', `${master.apiBase}/info`, { apiKey: master.apiKey });
    expect(empty).toMatchObject({ status: 200, text: '' });
    expect(empty.headers['content-type']).toBeUndefined();
    expect((await rest('GET', `${master.apiBase}/info`, { apiKey: master.apiKey })).json()).toHaveProperty('mid');
  });
});

describe('garbage on the stream', () => {
  it('every kind is rejected by our parser, and the stream goes on', async () => {
    const { master, stream } = await setup();
    const id = master.instanceIds()[0]!;
    for (const kind of ['not-json', 'wrong-shape', 'unknown-type', 'counter-overflow'] as const) master.injectGarbage(kind);
    master.checkpoint(id);
    await stream.waitFor('the checkpoint after the garbage', () => instanceEvents(stream, 'update', id).length === 1);
    expect(stream.rejections).toHaveLength(4);
    expect(stream.rejections.join('\n')).toMatch(/not JSON[\s\S]*instance\.status[\s\S]*unknown event type "heartbeat"[\s\S]*tcprx/);
    expect(stream.body()).toContain('"tcprx":18446744073709551615');
    expect(master.stats().garbageInjected).toBe(4);
  });

  it('a huge line with no newline overflows the bounded parser instead of growing it', async () => {
    const { master, stream } = await setup();
    master.injectGarbage('huge-line', { bytes: 3 * 1024 * 1024 });
    master.checkpoint(); // its first line completes the huge one
    await stream.waitFor('the overflow', () => stream.overflows.length === 1);
    expect(stream.overflows[0]).toBeGreaterThan(3 * 1024 * 1024);
  });
});
