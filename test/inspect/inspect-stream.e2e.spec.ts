/**
 * The inspect stream over real sockets: a NodePass simulator → Runtime → the inspect plugin on a listening
 * Fastify server, read by a plain HTTP client. The tree arrives whole, then as changes (a stopped instance);
 * streams beyond the limit are refused with 429; closing the server ends open streams instead of waiting on them.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { request, type IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inspectPlugin } from '../../src/inspect/plugin.js';
import { Runtime } from '../../src/runtime/runtime.js';
import { startSimulator, type SimulatorHandle } from '../../src/sim/simulator.js';

interface SseEvent {
  event: string;
  data: Record<string, unknown>;
}

/** Opens an SSE stream and collects its events as they come. */
function openStream(url: string): Promise<{ response: IncomingMessage; events: SseEvent[]; ended: Promise<void>; close(): void }> {
  return new Promise((resolve, reject) => {
    const req = request(url, (response) => {
      const events: SseEvent[] = [];
      let buffer = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event && data) events.push({ event, data: JSON.parse(data) as Record<string, unknown> });
        }
      });
      const ended = new Promise<void>((done) => response.on('close', () => done()));
      resolve({ response, events, ended, close: () => req.destroy() });
    });
    req.on('error', reject);
    req.end();
  });
}

async function until<T>(read: () => T | undefined, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = read();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('inspect stream', () => {
  let sim: SimulatorHandle;
  let runtime: Runtime;
  let http: FastifyInstance;
  let base: string;

  beforeAll(async () => {
    sim = await startSimulator({ seed: 'inspect-stream', reportIntervalMs: 500, instances: [{ id: 'aa01', url: 'server://:10101/127.0.0.1:8080' }, { id: 'bb02', url: 'client://127.0.0.1:10101/127.0.0.1:8081' }] });
    runtime = new Runtime();
    runtime.start();
    runtime.addEndpoint({ id: 1, name: 'sim', baseUrl: sim.master.apiBase, apiKey: sim.master.apiKey, insecureTls: false, enabled: true });
    http = Fastify();
    await http.register(inspectPlugin, { runtime, hub: { tickMs: 100, maxClients: 2 } });
    base = await http.listen({ host: '127.0.0.1', port: 0 });
  });

  afterAll(async () => {
    await http?.close();
    await runtime?.stop();
    await sim?.close();
  });

  it('sends the whole tree, then the changes; refuses streams beyond the limit; ends streams on close', async () => {
    await until(() => (runtime.tunnels(1).length === 2 ? true : undefined));
    const watcher = await openStream(`${base}/inspect/api/stream?watch=${encodeURIComponent('tunnel:1/aa01')}`);
    expect(watcher.response.statusCode).toBe(200);
    expect(watcher.response.headers['content-type']).toContain('text/event-stream');
    const first = await until(() => watcher.events.find((e) => e.event === 'tree'));
    expect(first.data['reset']).toBe(true);
    const ids = (first.data['upsert'] as { id: string }[]).map((a) => a.id);
    expect(ids).toEqual(expect.arrayContaining(['fleet', 'endpoint:1', 'tunnel:1/aa01', 'tunnel:1/bb02']));
    const actor = await until(() => watcher.events.find((e) => e.event === 'actor'));
    expect(actor.data).toMatchObject({ id: 'tunnel:1/aa01', machine: 'tunnel', value: 'running' });

    const other = await openStream(`${base}/inspect/api/stream`);
    const refused = await openStream(`${base}/inspect/api/stream`);
    expect(refused.response.statusCode).toBe(429);
    other.close();

    const stop = await fetch(`${sim.master.apiBase}/instances/aa01`, {
      method: 'PATCH',
      headers: { 'X-API-Key': sim.master.apiKey, 'Content-Type': 'application/json' },
      body: JSON.stringify({ action: 'stop' }),
    });
    expect(stop.status).toBe(200);
    const change = await until(() =>
      watcher.events.find((e) => e.event === 'tree' && !e.data['reset'] && (e.data['upsert'] as { id: string; value: unknown }[]).some((a) => a.id === 'tunnel:1/aa01' && a.value === 'stopped')),
    );
    // Only what changed is sent: never the unchanged fleet.
    expect((change.data['upsert'] as { id: string }[]).map((a) => a.id)).not.toContain('fleet');
    await until(() => (watcher.events.some((e) => e.event === 'actor' && e.data['value'] === 'stopped') ? true : undefined));
    const stoppedEvent = await until(() =>
      watcher.events
        .filter((e) => e.event === 'actor')
        .flatMap((e) => e.data['events'] as { type: string; summary: string | null }[])
        .find((e) => e.summary === 'update stopped'),
    );
    expect(stoppedEvent.type).toBe('tunnel.observe');

    const closing = http.close();
    await Promise.race([watcher.ended, new Promise((_, reject) => setTimeout(() => reject(new Error('stream still open after close')), 5_000))]);
    await closing;
  });
});
