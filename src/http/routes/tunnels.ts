/** Tunnels (from the actors), hourly traffic (database + the open hour from memory) and paged logs. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { iso } from '../../../actors/model.js';
import { redactUrlCredentials } from '../../runtime/change-feed.js';
import type { HttpDeps } from '../deps.js';
import { badRequest, notFound } from '../errors.js';
import { EndpointLogsResponse, EndpointParams, LogsQuery, LogsResponse, TrafficQuery, TrafficResponse, TunnelParams, TunnelView, errorResponses } from '../schemas.js';
import { hourRange, listOf, parseTime, trafficPoints, tunnelView } from '../views.js';

/** `since`, `until`, `level`, `limit`, `cursor` as the store takes them. */
function logFilter(q: LogsQuery) {
  const since = parseTime(q.since);
  const until = parseTime(q.until);
  if (since === null) throw badRequest('since must be an ISO 8601 time or epoch milliseconds');
  if (until === null) throw badRequest('until must be an ISO 8601 time or epoch milliseconds');
  const levels = listOf(q.level).map((l) => l.toLowerCase());
  return {
    ...(since === undefined ? {} : { since }),
    ...(until === undefined ? {} : { until }),
    ...(levels.length > 0 ? { level: levels } : {}),
    limit: q.limit,
    cursor: q.cursor ?? null,
  };
}

export const tunnelRoutes: FastifyPluginAsyncTypebox<HttpDeps> = async (fastify, deps) => {
  const { runtime, registry, store } = deps;

  const requireEndpoint = (id: number): void => {
    if (!registry?.get(id) && !runtime.endpointRef(id)) throw notFound(`endpoint ${id}`);
  };
  const requireTunnel = (id: number, instanceId: string) => {
    requireEndpoint(id);
    const t = runtime.tunnel(id, instanceId);
    if (!t) throw notFound(`tunnel ${instanceId} of endpoint ${id}`);
    return t;
  };

  fastify.get('/api/endpoints/:id/tunnels', {
    schema: {
      tags: ['tunnels'],
      summary: "An endpoint's tunnels, real-time (tombstones included, deleted: true), by instance id",
      params: EndpointParams,
      response: { 200: Type.Array(TunnelView), ...errorResponses },
    },
  }, async (request) => {
    requireEndpoint(request.params.id);
    return runtime
      .tunnels(request.params.id)
      .sort((a, b) => (a.instanceId < b.instanceId ? -1 : a.instanceId > b.instanceId ? 1 : 0))
      .map(tunnelView);
  });

  fastify.get('/api/endpoints/:id/tunnels/:instanceId', {
    schema: { tags: ['tunnels'], summary: 'One tunnel, real-time', params: TunnelParams, response: { 200: TunnelView, ...errorResponses } },
  }, async (request) => tunnelView(requireTunnel(request.params.id, request.params.instanceId)));

  fastify.get('/api/endpoints/:id/tunnels/:instanceId/traffic', {
    schema: {
      tags: ['traffic'],
      summary: "A tunnel's hourly traffic, oldest first, the open hour from memory",
      params: TunnelParams,
      querystring: TrafficQuery,
      response: { 200: TrafficResponse, ...errorResponses },
    },
  }, async (request) => {
    const { id, instanceId } = request.params;
    const t = requireTunnel(id, instanceId);
    const now = runtime.now();
    const stored = await store.trafficSeries({ endpointId: id, instanceId, ...hourRange(request.query.hours, now) });
    return trafficPoints(stored, [t], request.query.hours, now);
  });

  fastify.get('/api/endpoints/:id/traffic', {
    schema: {
      tags: ['traffic'],
      summary: "An endpoint's hourly traffic (all its tunnels)",
      params: EndpointParams,
      querystring: TrafficQuery,
      response: { 200: TrafficResponse, ...errorResponses },
    },
  }, async (request) => {
    const id = request.params.id;
    requireEndpoint(id);
    const now = runtime.now();
    const stored = await store.trafficSeries({ endpointId: id, ...hourRange(request.query.hours, now) });
    return trafficPoints(stored, runtime.tunnels(id), request.query.hours, now);
  });

  fastify.get('/api/traffic', {
    schema: {
      tags: ['traffic'],
      summary: 'Hourly traffic of every endpoint',
      querystring: TrafficQuery,
      response: { 200: TrafficResponse, ...errorResponses },
    },
  }, async (request) => {
    const now = runtime.now();
    const stored = await store.trafficSeries(hourRange(request.query.hours, now));
    const tunnels = runtime.endpoints().flatMap((e) => runtime.tunnels(e.endpointId));
    return trafficPoints(stored, tunnels, request.query.hours, now);
  });

  fastify.get('/api/endpoints/:id/tunnels/:instanceId/logs', {
    schema: {
      tags: ['logs'],
      summary: "A tunnel's log lines, newest first, keyset-paged (pass nextCursor back as cursor)",
      params: TunnelParams,
      querystring: LogsQuery,
      response: { 200: LogsResponse, ...errorResponses },
    },
  }, async (request) => {
    const { id, instanceId } = request.params;
    requireTunnel(id, instanceId);
    const page = await store.logsPage({ endpointId: id, instanceId, ...logFilter(request.query) });
    return { items: page.items.map((l) => ({ time: iso(l.at), level: l.level, message: redactUrlCredentials(l.message) })), nextCursor: page.nextCursor };
  });

  fastify.get('/api/endpoints/:id/logs', {
    schema: {
      tags: ['logs'],
      summary: "Log lines of all an endpoint's tunnels, newest first, keyset-paged",
      params: EndpointParams,
      querystring: LogsQuery,
      response: { 200: EndpointLogsResponse, ...errorResponses },
    },
  }, async (request) => {
    const id = request.params.id;
    requireEndpoint(id);
    const page = await store.logsPage({ endpointId: id, ...logFilter(request.query) });
    return {
      items: page.items.map((l) => ({ instanceId: l.instanceId, time: iso(l.at), level: l.level, message: redactUrlCredentials(l.message) })),
      nextCursor: page.nextCursor,
    };
  });
};
