/** The dashboard aggregates and the service statistics. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ZERO_COUNTERS, iso } from '../../../actors/model.js';
import type { TunnelContext } from '../../../actors/tunnel.machine.js';
import { HOUR_MS } from '../../../actors/traffic.js';
import type { HttpDeps } from '../deps.js';
import { DashboardResponse, PerformanceResponse, QueuesResponse, StatsResponse, errorResponses } from '../schemas.js';
import { addInto, hourRange, isConnected, totalBytes, trafficPoints } from '../views.js';
import { stateName } from '../../runtime/change-feed.js';

const TOP = 10;
const startedAt = Date.now();

export const overviewRoutes: FastifyPluginAsyncTypebox<HttpDeps> = async (fastify, deps) => {
  const { runtime, store } = deps;

  const allTunnels = (): TunnelContext[] => runtime.endpoints().flatMap((e) => runtime.tunnels(e.endpointId));

  fastify.get('/api/dashboard', {
    schema: {
      tags: ['overview'],
      summary: 'Endpoints by state, tunnels by status, traffic today and over 24 h, top tunnels',
      response: { 200: DashboardResponse, ...errorResponses },
    },
  }, async () => {
    const now = runtime.now();
    const byState: Record<string, number> = {};
    let connected = 0;
    const endpoints = runtime.endpoints();
    for (const e of endpoints) {
      const value = runtime.endpointState(e.endpointId)?.value;
      // The first two levels are what an operator reads (enabled.online.live.probing → online.live).
      const name = stateName(value).split('.').filter((part) => part !== 'enabled').slice(0, 2).join('.') || 'unknown';
      byState[name] = (byState[name] ?? 0) + 1;
      if (isConnected(value)) connected++;
    }
    const tunnels = allTunnels();
    const byStatus: Record<string, number> = {};
    const rates = { ...ZERO_COUNTERS };
    for (const t of tunnels) {
      const key = t.deleted ? 'deleted' : (t.status ?? 'pending');
      byStatus[key] = (byStatus[key] ?? 0) + 1;
      if (!t.deleted) addInto(rates, t.rates);
    }
    const series = trafficPoints(await store.trafficSeries(hourRange(24, now)), tunnels, 24, now);
    const midnight = Math.floor(now / (24 * HOUR_MS)) * 24 * HOUR_MS;
    const today = { ...ZERO_COUNTERS };
    const last24h = { ...ZERO_COUNTERS };
    for (const p of series.points) {
      addInto(last24h, p);
      if (Date.parse(p.hour) >= midnight) addInto(today, p);
    }
    const live = tunnels.filter((t) => !t.deleted);
    const top = (score: (t: TunnelContext) => number) =>
      live
        .map((t) => ({ t, score: score(t) }))
        .filter((x) => x.score > 0)
        .sort((a, b) => b.score - a.score)
        .slice(0, TOP)
        .map(({ t }) => ({
          endpointId: t.endpointId,
          instanceId: t.instanceId,
          alias: t.alias,
          status: t.status,
          bytesPerSecond: totalBytes(t.rates),
          trafficBytes: totalBytes(t.traffic),
        }));
    return {
      generatedAt: iso(now),
      endpoints: { total: endpoints.length, connected, byState },
      tunnels: { total: tunnels.length, byStatus },
      traffic: { today, last24h, rates },
      topTunnels: { byRate: top((t) => totalBytes(t.rates)), byTraffic: top((t) => totalBytes(t.traffic)) },
    };
  });

  fastify.get('/api/stats', {
    schema: { tags: ['stats'], summary: 'Service statistics (BRIEF part 5)', response: { 200: StatsResponse, ...errorResponses } },
  }, async () => {
    const endpoints = runtime.endpoints();
    let tunnels = 0;
    for (const e of endpoints) tunnels += Object.keys(e.tunnels).length;
    return {
      ...runtime.stats.snapshot(),
      endpoints: endpoints.length,
      tunnels,
      liveFeed: runtime.changes.stats(),
      uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
    };
  });

  fastify.get('/api/stats/queues', {
    schema: { tags: ['stats'], summary: 'Persistence queues: depth, oldest entry age, spill', response: { 200: QueuesResponse, ...errorResponses } },
  }, async () => {
    const queues = runtime.stats.snapshot().queues;
    const all = Object.values(queues);
    return {
      queues,
      pendingRows: all.reduce((n, q) => n + q.depth, 0),
      spilledRows: all.reduce((n, q) => n + q.spilledRows, 0),
      spillBytes: all.reduce((n, q) => n + q.spillBytes, 0),
      oldestAgeMs: all.reduce((n, q) => Math.max(n, q.oldestAgeMs), 0),
      ingest: runtime.ingestStats(),
    };
  });

  let previous = { at: startedAt, processed: 0 };
  fastify.get('/api/stats/performance', {
    schema: {
      tags: ['stats'],
      summary: 'Hit rate, error rate, processing time (average and p99), throughput',
      response: { 200: PerformanceResponse, ...errorResponses },
    },
  }, async () => {
    const s = runtime.stats.snapshot();
    const now = Date.now();
    const seconds = (now - previous.at) / 1000;
    const eventsPerSecond = seconds > 0 ? (s.processedEvents - previous.processed) / seconds : 0;
    previous = { at: now, processed: s.processedEvents };
    const { queues: _queues, ...rest } = s;
    return { ...rest, eventsPerSecond: Math.round(eventsPerSecond * 10) / 10 };
  });
};
