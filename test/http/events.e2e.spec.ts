/**
 * The live feed (`GET /api/events`) over a listening socket: the event vocabulary as a simulator drives real
 * changes, the filters, heartbeats, the token, and a slow client cut off and counted without slowing the feed.
 */
import { connect } from 'node:net';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startSimulator, type SimulatorHandle } from '../../src/sim/simulator.js';
import { useTestDatabase } from '../support/database.js';
import { openFeed, type FeedEvent } from './feed-client.js';
import { startHarness, until, type Harness } from './harness.js';

const testDb = useTestDatabase();
let sim: SimulatorHandle;
let h: Harness;
let origin: string;

beforeAll(async () => {
  sim = await startSimulator({ seed: 'http-feed', instances: 2, reportIntervalMs: 0, autoTraffic: false });
});
afterAll(async () => {
  await sim.close();
});
beforeEach(async () => {
  await testDb.reset();
});
afterEach(async () => {
  await h?.close();
});

async function listen(options: Parameters<typeof startHarness>[1] = {}) {
  h = await startHarness(testDb, options);
  origin = await h.http.listen({ host: '127.0.0.1', port: 0 });
}

const named = (events: FeedEvent[], name: string) => events.filter((e) => e.name === name);

describe('GET /api/events', () => {
  it('streams endpoint and tunnel changes as the master changes, with the chosen filters', async () => {
    await listen({ events: { heartbeatMs: 100 } });
    const all = await openFeed(origin, '/api/events');
    const statusOnly = await openFeed(origin, '/api/events?kind=tunnel.status');
    expect(all.status).toBe(200);
    expect(all.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    await all.waitFor('ready', (e) => e.some((x) => x.name === 'ready'));
    await statusOnly.waitFor('ready', (e) => e.some((x) => x.name === 'ready'));

    await h.http.inject({ method: 'POST', url: '/api/endpoints', payload: { name: 'sim', url: sim.master.url, apiKey: sim.master.apiKey } });
    const ids = sim.master.instanceIds();
    await all.waitFor('endpoint live', (e) => named(e, 'endpoint.state').some((x) => x.data.data.stateName.startsWith('enabled.online.live')));
    await all.waitFor('tunnel config for each instance', (e) => new Set(named(e, 'tunnel.config').map((x) => x.data.instanceId)).size === ids.length);
    expect(named(all.events, 'endpoint.added')[0]!.data).toMatchObject({
      kind: 'endpoint.added',
      endpointId: 1,
      instanceId: null,
      data: { name: 'sim', stateName: 'enabled.online.connecting' },
    });
    const states = named(all.events, 'endpoint.state').map((x) => x.data.data.stateName);
    expect(states[0]).toBe('enabled.online.syncing');

    const tunnelOnly = await openFeed(origin, `/api/events?endpoint=1&tunnel=${ids[0]}`);
    await tunnelOnly.waitFor('ready', (e) => e.some((x) => x.name === 'ready'));

    sim.master.stopInstance(ids[0]!);
    await statusOnly.waitFor('stopped', (e) => e.some((x) => x.name === 'tunnel.status' && x.data.data.status === 'stopped'));
    sim.master.addTraffic(ids[1]!, { tcprx: 4096 });
    sim.master.checkpoint(ids[1]!);
    await all.waitFor('coalesced tunnel state', (e) => named(e, 'tunnel.state').some((x) => x.data.instanceId === ids[1] && x.data.data.counters.tcprx === 4096));
    sim.master.deleteInstance(ids[0]!);
    await all.waitFor('deleted', (e) => named(e, 'tunnel.deleted').some((x) => x.data.instanceId === ids[0]));
    await all.waitFor('a heartbeat', () => all.comments.includes(' heartbeat') || all.comments.includes('heartbeat'));

    // Filters: only status changes; only the one tunnel.
    expect(statusOnly.events.every((e) => e.name === 'ready' || e.name === 'tunnel.status')).toBe(true);
    expect(tunnelOnly.events.filter((e) => e.name !== 'ready').every((e) => e.data.instanceId === ids[0])).toBe(true);
    expect(named(tunnelOnly.events, 'tunnel.deleted')).toHaveLength(1);
    // Ids increase in order.
    const seqs = all.events.filter((e) => e.name !== 'ready').map((e) => e.data.seq);
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);

    expect(h.runtime.changes.stats().subscribers).toBe(3);
    for (const c of [all, statusOnly, tunnelOnly]) c.close();
    await until('subscribers gone', () => h.runtime.changes.stats().subscribers === 0);
    expect(h.runtime.changes.active).toBe(false);
  });

  it('rejects an unknown kind or a non-numeric endpoint with 400', async () => {
    await listen();
    for (const q of ['kind=nope', 'endpoint=abc']) {
      const res = await h.http.inject(`/api/events?${q}`);
      expect(res.statusCode, q).toBe(400);
      expect(JSON.parse(res.body).error.code).toBe('BAD_REQUEST');
    }
  });

  it('accepts the token as a header or as ?token= (EventSource), never echoes it', async () => {
    const token = 'feed-token-0123456789abcdef';
    await listen({ accessToken: token });
    const none = await openFeed(origin, '/api/events');
    expect(none.status).toBe(401);
    none.close();
    const viaQuery = await openFeed(origin, `/api/events?token=${token}`);
    expect(viaQuery.status).toBe(200);
    await viaQuery.waitFor('ready', (e) => e.some((x) => x.name === 'ready'));
    expect(JSON.stringify(viaQuery.events)).not.toContain(token);
    viaQuery.close();
    const viaHeader = await openFeed(origin, '/api/events', { authorization: `Bearer ${token}` });
    expect(viaHeader.status).toBe(200);
    viaHeader.close();
  });

  it('cuts off a client that does not read, counts it, and keeps serving the others', async () => {
    await listen({ events: { maxBufferBytes: 256 * 1024, heartbeatMs: 60_000 } });
    const fast = await openFeed(origin, '/api/events?kind=endpoint.removed');
    await fast.waitFor('ready', (e) => e.some((x) => x.name === 'ready'));

    // A client that sends the request and never reads a byte of the answer.
    const slow = connect({ host: '127.0.0.1', port: Number(new URL(origin).port) });
    let slowClosed = false;
    slow.on('close', () => (slowClosed = true));
    slow.on('error', () => (slowClosed = true));
    slow.pause();
    slow.write('GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n');
    await until('both subscribed', () => h.runtime.changes.stats().subscribers === 2);

    // Bounded: at most 1,500 events of 64 KiB (~96 MiB), more than loopback's socket buffers (up to tcp_rmem max +
    // tcp_wmem max, 36 MiB here) plus the bound; the loop stops as soon as the client is cut. Every 50th event is a
    // small one the other client asked for.
    const padding = 'x'.repeat(64 * 1024);
    let small = 0;
    for (let i = 0; i < 1_500 && h.runtime.changes.stats().slowClientsCut === 0; i++) {
      h.runtime.changes.publish('endpoint.state', 1, null, { stateName: 'test', padding, i });
      if (i % 50 === 0) {
        h.runtime.changes.publish('endpoint.removed', 1, null, { i });
        small++;
      }
      if (i % 20 === 19) await new Promise((r) => setImmediate(r));
    }
    await until('the slow client is cut', () => h.runtime.changes.stats().slowClientsCut === 1);
    // The server destroyed its end; the client notices once it reads what the kernel still holds.
    slow.resume();
    await until('its socket is closed', () => slowClosed, 20_000);
    expect(h.runtime.changes.stats().subscribers).toBe(1);
    h.runtime.changes.publish('endpoint.removed', 1, null, { last: true });
    await fast.waitFor('every small event', (e) => named(e, 'endpoint.removed').length === small + 1);

    const metrics = await h.http.inject('/metrics');
    expect(metrics.body).toMatch(/tunnelpulse_feed_slow_clients_cut 1/);
    expect(JSON.parse((await h.http.inject('/api/stats')).body).liveFeed.slowClientsCut).toBe(1);
    fast.close();
    slow.destroy();
  });
});
