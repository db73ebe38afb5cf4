/** The change feed on its own: filters, coalescing of tunnel states, nothing kept while nobody listens. */
import { describe, expect, it } from 'vitest';
import { newTunnelContext } from '../../actors/tunnel.machine.js';
import { ChangeFeed, matches, stateName, type ChangeEvent, type FeedFilter } from '../../src/runtime/change-feed.js';
import { parseFilter } from '../../src/http/routes/events.js';

const filter = (f: Partial<{ endpoints: number[]; tunnels: string[]; kinds: string[] }>): FeedFilter => ({
  endpoints: new Set(f.endpoints ?? []),
  tunnels: new Set(f.tunnels ?? []),
  kinds: new Set(f.kinds ?? []),
});
const event = (kind: ChangeEvent['kind'], endpointId: number, instanceId: string | null): ChangeEvent => ({ seq: 1, at: '', kind, endpointId, instanceId, data: {} });

describe('stateName', () => {
  it('names nested and parallel state values', () => {
    expect(stateName('disabled')).toBe('disabled');
    expect(stateName({ enabled: { online: 'syncing' } })).toBe('enabled.online.syncing');
    expect(stateName({ enabled: { online: { live: { liveness: 'streaming', info: 'idle' } } } })).toBe('enabled.online.live(liveness.streaming,info.idle)');
    expect(stateName(undefined)).toBe('');
  });
});

describe('filters', () => {
  it('match by endpoint, tunnel (bare or endpoint-qualified) and kind or family', () => {
    expect(matches(filter({}), event('tunnel.state', 1, 'a'))).toBe(true);
    expect(matches(filter({ endpoints: [2] }), event('tunnel.state', 1, 'a'))).toBe(false);
    expect(matches(filter({ tunnels: ['a'] }), event('tunnel.state', 1, 'a'))).toBe(true);
    expect(matches(filter({ tunnels: ['2/a'] }), event('tunnel.state', 1, 'a'))).toBe(false);
    expect(matches(filter({ tunnels: ['1/a'] }), event('tunnel.state', 1, 'a'))).toBe(true);
    expect(matches(filter({ tunnels: ['a'] }), event('endpoint.state', 1, null))).toBe(false);
    expect(matches(filter({ kinds: ['tunnel'] }), event('tunnel.deleted', 1, 'a'))).toBe(true);
    expect(matches(filter({ kinds: ['tunnel.status'] }), event('tunnel.state', 1, 'a'))).toBe(false);
  });

  it('parses query parameters and rejects unknown kinds', () => {
    const f = parseFilter({ endpoint: '1, 2', tunnel: 'a,1/b', kind: 'tunnel.status,endpoint' });
    expect([...f.endpoints]).toEqual([1, 2]);
    expect([...f.tunnels]).toEqual(['a', '1/b']);
    expect([...f.kinds]).toEqual(['tunnel.status', 'endpoint']);
    expect(() => parseFilter({ kind: 'tunnels' })).toThrow(/unknown kind/);
    expect(() => parseFilter({ endpoint: '1;drop' })).toThrow(/numeric/);
  });
});

describe('ChangeFeed', () => {
  it('keeps nothing and publishes nothing while nobody listens', () => {
    const feed = new ChangeFeed();
    expect(feed.active).toBe(false);
    feed.publish('endpoint.added', 1, null, {});
    feed.tunnelState(newTunnelContext({ endpointId: 1, instanceId: 'a' }));
    expect(feed.stats()).toMatchObject({ published: 0, pendingTunnelStates: 0 });
    expect(feed.lastSeq).toBe(0);
  });

  it('serialises once per event, delivers in order to matching subscribers, coalesces tunnel states', () => {
    const feed = new ChangeFeed({ now: () => 0, stateIntervalMs: 60_000 });
    const a: string[] = [];
    const b: ChangeEvent[] = [];
    const offA = feed.subscribe(filter({}), (_e, json) => a.push(json));
    const offB = feed.subscribe(filter({ kinds: ['tunnel.state'] }), (e) => b.push(e));
    expect(feed.active).toBe(true);
    feed.publish('endpoint.added', 1, null, { name: 'x' });
    const t = newTunnelContext({ endpointId: 1, instanceId: 'a' });
    feed.tunnelState({ ...t, ping: 1 });
    feed.tunnelState({ ...t, ping: 2 });
    feed.tunnelState({ ...t, instanceId: 'b', ping: 3 });
    expect(feed.stats().pendingTunnelStates).toBe(2);
    feed.flushStates();
    expect(b.map((e) => [e.instanceId, e.data['ping']])).toEqual([['a', 2], ['b', 3]]);
    expect(a.map((j) => JSON.parse(j).seq)).toEqual([1, 2, 3]);
    expect(feed.stats()).toMatchObject({ published: 3, delivered: 5, subscribers: 2 });
    offA();
    offB();
    expect(feed.active).toBe(false);
  });

  it('a tombstone supersedes a pending state of the same tunnel', () => {
    const feed = new ChangeFeed({ stateIntervalMs: 60_000 });
    const seen: string[] = [];
    const off = feed.subscribe(filter({}), (e) => seen.push(e.kind));
    const t = newTunnelContext({ endpointId: 1, instanceId: 'a' });
    feed.tunnelState(t);
    feed.tunnelConfig({ ...t, deleted: true, deletedAt: 5 });
    feed.flushStates();
    expect(seen).toEqual(['tunnel.deleted']);
    off();
  });
});

describe('redactUrlCredentials', () => {
  it('masks the tunnel key of instance URLs, in URLs and in log text, and leaves the rest alone', async () => {
    const { redactUrlCredentials } = await import('../../src/runtime/change-feed.js');
    expect(redactUrlCredentials('server://s3cr3t@:10101/127.0.0.1:8080?log=info')).toBe('server://***@:10101/127.0.0.1:8080?log=info');
    expect(redactUrlCredentials('Server started: server://k3y@0.0.0.0:1/x:2?dns=5m and client://other@h:3/y')).toBe(
      'Server started: server://***@0.0.0.0:1/x:2?dns=5m and client://***@h:3/y',
    );
    expect(redactUrlCredentials('server://127.0.0.1:19100/127.0.0.1:19200?log=debug')).toBe('server://127.0.0.1:19100/127.0.0.1:19200?log=debug');
    expect(redactUrlCredentials('mail me at a@b.c')).toBe('mail me at a@b.c');
  });
});
