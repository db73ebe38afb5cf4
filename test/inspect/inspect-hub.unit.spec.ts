/**
 * The inspect hub's bounds, on a real actor system (a Runtime with its fleet, no endpoints): inspection is
 * attached only while an actor is watched, each watched actor keeps a bounded ring of the events that reached
 * it, a stream that does not drain is cut off and counted, and views of contexts are bounded and mask secrets.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { toSafeJson } from '../../src/inspect/actor-tree.js';
import { redactUrlCredentials } from '../../src/runtime/change-feed.js';
import { InspectHub, summariseEvent, type StreamSink } from '../../src/inspect/inspect-hub.js';
import { Runtime } from '../../src/runtime/runtime.js';

/** A sink standing for a socket: records what was written; `backlog` is what the client has not read yet. */
interface RecordingSink extends StreamSink {
  chunks: string[];
  backlog: number;
  destroyed: boolean;
}

function recordingSink(): RecordingSink {
  const sink: RecordingSink = {
    chunks: [],
    backlog: 0,
    destroyed: false,
    write: (chunk) => void sink.chunks.push(chunk),
    buffered: () => sink.backlog,
    destroy: () => {
      sink.destroyed = true;
    },
  };
  return sink;
}

const events = (chunks: string[], name: string) =>
  chunks.filter((c) => c.startsWith(`event: ${name}\n`)).map((c) => JSON.parse(c.slice(c.indexOf('data: ') + 6)) as Record<string, unknown>);

describe('InspectHub', () => {
  const runtimes: Runtime[] = [];
  const hubs: InspectHub[] = [];
  afterEach(async () => {
    for (const hub of hubs.splice(0)) hub.close();
    for (const runtime of runtimes.splice(0)) await runtime.stop();
  });
  const make = (options: ConstructorParameters<typeof InspectHub>[1] = {}) => {
    const runtime = new Runtime();
    runtime.start();
    runtimes.push(runtime);
    const hub = new InspectHub(runtime, { tickMs: 60_000, ...options });
    hubs.push(hub);
    return { runtime, hub };
  };

  it('sends the tree at once, and attaches inspection only while an actor is watched', () => {
    const { hub } = make();
    const treeOnly = recordingSink();
    const closeTree = hub.connect(treeOnly, null)!;
    expect(events(treeOnly.chunks, 'tree')[0]).toMatchObject({ reset: true, upsert: [{ id: 'fleet', kind: 'fleet', value: 'running', status: 'active' }] });
    expect(hub.status()).toMatchObject({ clients: 1, inspecting: false });

    const watcher = recordingSink();
    const closeWatch = hub.connect(watcher, 'fleet')!;
    expect(hub.status()).toMatchObject({ clients: 2, inspecting: true, watchedActors: ['fleet'] });
    expect(events(watcher.chunks, 'actor')[0]).toMatchObject({ id: 'fleet', missing: false, value: 'running' });

    closeWatch();
    closeWatch(); // idempotent: a socket reports close twice (request and response)
    expect(hub.status()).toMatchObject({ clients: 1, inspecting: false, watchedActors: [] });
    closeTree();
    expect(hub.status()).toMatchObject({ clients: 0, inspecting: false });
  });

  it('keeps a bounded ring of the events that reached a watched actor', () => {
    const { runtime, hub } = make({ ringSize: 10 });
    const close = hub.connect(recordingSink(), 'fleet')!;
    for (let i = 0; i < 25; i++) runtime.fleet.send({ type: 'fleet.remove_endpoint', endpointId: 1000 + i });
    const recorded = hub.actor('fleet')!.events;
    expect(recorded).toHaveLength(10);
    expect(recorded.map((e) => (e.event as { endpointId: number }).endpointId)).toEqual([1015, 1016, 1017, 1018, 1019, 1020, 1021, 1022, 1023, 1024]);
    expect(recorded.every((e) => e.type === 'fleet.remove_endpoint')).toBe(true);
    expect(hub.status().recordedEvents).toBe(25);
    close();
    // Nothing is recorded once nobody watches.
    runtime.fleet.send({ type: 'fleet.remove_endpoint', endpointId: 1 });
    expect(hub.status().recordedEvents).toBe(25);
    expect(hub.actor('fleet')!.events).toEqual([]);
  });

  it('cuts off a stream that does not drain, counts it, and detaches inspection with it', () => {
    const { runtime, hub } = make({ maxBufferedBytes: 1_000 });
    const slow = recordingSink();
    hub.connect(slow, 'fleet');
    expect(hub.status().inspecting).toBe(true);
    slow.backlog = 1_001;
    runtime.fleet.send({ type: 'fleet.remove_endpoint', endpointId: 7 });
    (hub as unknown as { tick(): void }).tick();
    expect(slow.destroyed).toBe(true);
    expect(hub.status()).toMatchObject({ clients: 0, slowClientsCut: 1, inspecting: false });
  });

  it('refuses streams beyond its limit, and counts them', () => {
    const { hub } = make({ maxClients: 2 });
    expect(hub.connect(recordingSink(), null)).not.toBeNull();
    expect(hub.connect(recordingSink(), null)).not.toBeNull();
    expect(hub.admits()).toBe(false);
    expect(hub.connect(recordingSink(), null)).toBeNull();
    expect(hub.status()).toMatchObject({ clients: 2, refusedStreams: 2 });
  });

  it('reports an unknown watched actor once', () => {
    const { hub } = make();
    const sink = recordingSink();
    hub.connect(sink, 'tunnel:9/nope');
    (hub as unknown as { tick(): void }).tick();
    expect(events(sink.chunks, 'actor')).toEqual([{ id: 'tunnel:9/nope', missing: true }]);
  });
});

describe('toSafeJson', () => {
  it('replaces actor refs by their ids, and masks URL userinfo', () => {
    const runtime = new Runtime();
    const view = toSafeJson({ child: runtime.fleet, url: 'client://s3cret@1.2.3.4:10101/127.0.0.1:80', note: 'mail me at a@b.c' }) as Record<string, unknown>;
    expect(view['child']).toEqual({ $actor: runtime.fleet.id });
    expect(view['url']).toBe('client://***@1.2.3.4:10101/127.0.0.1:80');
    expect(view['note']).toBe('mail me at a@b.c');
    expect(redactUrlCredentials('x server://k@:1/a y client://u:p@h:2/b')).toBe('x server://***@:1/a y client://***@h:2/b');
  });

  it('cuts long strings, arrays and objects with a visible marker', () => {
    const limits = { maxDepth: 3, maxArray: 3, maxKeys: 2, maxString: 5 };
    expect(toSafeJson('abcdefgh', limits)).toBe('abcde… (8 chars)');
    expect(toSafeJson([1, 2, 3, 4, 5], limits)).toEqual([1, 2, 3, '… 2 more']);
    expect(toSafeJson({ a: 1, b: 2, c: 3 }, limits)).toEqual({ a: 1, b: 2, '…': '1 more keys' });
    expect(toSafeJson({ a: { b: { c: { d: 1 } } } }, limits)).toEqual({ a: { b: { c: '…' } } });
    expect(toSafeJson(new Map([['k', new Set([1, 2])]]), limits)).toEqual({ k: [1, 2] });
    expect(toSafeJson({ n: Infinity, f: () => 1, u: undefined, big: 10n }, { ...limits, maxKeys: 10 })).toEqual({ n: 'Infinity', big: '10' });
  });
});

describe('summariseEvent', () => {
  it('names the NodePass event inside an actor event', () => {
    expect(summariseEvent({ type: 'tunnel.observe', event: { type: 'update', instance: { id: 'ab', status: 'stopped' } } })).toBe('update stopped');
    expect(summariseEvent({ type: 'stream.event', parsed: { kind: 'instance', event: { type: 'log', instance: { id: 'ab', status: 'running' } } } })).toBe('log ab running');
    expect(summariseEvent({ type: 'stream.event', parsed: { kind: 'shutdown' } })).toBe('shutdown');
    expect(summariseEvent({ type: 'batch.flush' })).toBeNull();
  });
});
