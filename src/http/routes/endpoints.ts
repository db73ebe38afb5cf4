/** Endpoints: the registry (create, change, enable, disable, reconnect, remove) and their real-time views. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { HttpDeps } from '../deps.js';
import { HttpError, notFound } from '../errors.js';
import { iso } from '../../../actors/model.js';
import { CreateEndpointBody, EndpointParams, EndpointView, ErrorResponse, RecentEventsQuery, RecentEventsResponse, UpdateEndpointBody, errorResponses } from '../schemas.js';
import { endpointView } from '../views.js';

export const endpointRoutes: FastifyPluginAsyncTypebox<HttpDeps> = async (fastify, deps) => {
  const { runtime } = deps;
  const mutating = { rateLimit: deps.rateLimit };
  const registry = () => {
    if (!deps.registry) throw new HttpError(503, 'this server has no endpoint registry (read-only)');
    return deps.registry;
  };

  const view = (id: number) => {
    const row = deps.registry?.get(id) ?? null;
    const actor = runtime.endpointState(id);
    if (!row && !actor) throw notFound(`endpoint ${id}`);
    return endpointView(row, actor, runtime.tunnels(id), runtime.now());
  };

  fastify.get('/api/endpoints', {
    schema: { tags: ['endpoints'], summary: 'Every endpoint with its real-time view', response: { 200: Type.Array(EndpointView), ...errorResponses } },
  }, async () => {
    const ids = deps.registry ? deps.registry.list().map((row) => row.id) : runtime.endpoints().map((e) => e.endpointId).sort((a, b) => a - b);
    return ids.map(view);
  });

  fastify.get('/api/endpoints/:id/events', {
    schema: {
      tags: ['endpoints'],
      summary: "The endpoint's latest events, from the in-memory ring (newest first; TUNNELPULSE_EVENT_RING per endpoint)",
      params: EndpointParams,
      querystring: RecentEventsQuery,
      response: { 200: RecentEventsResponse, ...errorResponses },
    },
  }, async (request) => {
    const recent = runtime.recentEvents(request.params.id, request.query.limit ?? 100);
    if (!recent) throw notFound(`endpoint ${request.params.id}`);
    return {
      capacity: recent.capacity,
      total: recent.total,
      items: recent.items.map((e) => ({ ...e, receivedAt: iso(e.receivedAt), at: e.at === null ? null : iso(e.at) })),
    };
  });

  fastify.post('/api/endpoints', {
    config: mutating,
    schema: {
      tags: ['endpoints'],
      summary: 'Register a NodePass master (the API key is stored encrypted and never returned)',
      body: CreateEndpointBody,
      response: { 201: EndpointView, 409: ErrorResponse, 429: ErrorResponse, ...errorResponses },
    },
  }, async (request, reply) => {
    const row = await registry().create(request.body);
    return reply.code(201).send(view(row.id));
  });

  fastify.get('/api/endpoints/:id', {
    schema: { tags: ['endpoints'], summary: 'One endpoint, real-time', params: EndpointParams, response: { 200: EndpointView, ...errorResponses } },
  }, async (request) => view(request.params.id));

  fastify.patch('/api/endpoints/:id', {
    config: mutating,
    schema: {
      tags: ['endpoints'],
      summary: 'Change name, URL, key, TLS choice or enabled; a new URL, key or TLS choice reconnects',
      params: EndpointParams,
      body: UpdateEndpointBody,
      response: { 200: EndpointView, 409: ErrorResponse, 429: ErrorResponse, ...errorResponses },
    },
  }, async (request) => {
    const { enabled, ...changes } = request.body;
    const id = request.params.id;
    const r = registry();
    if (!r.get(id)) throw notFound(`endpoint ${id}`);
    if (Object.keys(changes).length > 0) await r.update(id, changes);
    if (enabled !== undefined && r.get(id)?.enabled !== enabled) await r.setEnabled(id, enabled);
    return view(id);
  });

  fastify.delete('/api/endpoints/:id', {
    config: mutating,
    schema: {
      tags: ['endpoints'],
      summary: 'Stop watching and delete the endpoint with its tunnels, logs and traffic history',
      params: EndpointParams,
      response: { 204: Type.Null(), 429: ErrorResponse, ...errorResponses },
    },
  }, async (request, reply) => {
    await registry().remove(request.params.id);
    return reply.code(204).send(null);
  });

  for (const action of ['enable', 'disable', 'reconnect'] as const) {
    fastify.post(`/api/endpoints/:id/${action}`, {
      config: mutating,
      schema: {
        tags: ['endpoints'],
        summary: action === 'reconnect' ? 'Close the stream and reconnect at once' : `${action[0]!.toUpperCase()}${action.slice(1)} the endpoint`,
        params: EndpointParams,
        response: { 200: EndpointView, 429: ErrorResponse, ...errorResponses },
      },
    }, async (request) => {
      const id = request.params.id;
      if (action === 'reconnect') registry().reconnect(id);
      else await registry().setEnabled(id, action === 'enable');
      return view(id);
    });
  }
};
