/**
 * The HTTP application as a Fastify plugin, so tests build it without listening (`app.inject`) and the service
 * registers it on its server. It is wrapped with fastify-plugin so its hooks (the bearer-token check), its error
 * and not-found handlers cover the whole server, the `/inspect` plugin included; each route group below is an
 * encapsulated plugin of its own.
 *
 * Answers come from the actors in memory wherever they can (endpoints, tunnels, actors, dashboard counts, stats);
 * history comes from the database (traffic before the open hour, logs).
 */
import cors from '@fastify/cors';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Store } from '../db/store.js';
import type { Runtime } from '../runtime/runtime.js';
import type { EndpointRegistry } from '../service/registry.js';
import type { HttpDeps } from './deps.js';
import { HttpError, errorBody, errorHandler } from './errors.js';
import { actorRoutes } from './routes/actors.js';
import { endpointRoutes } from './routes/endpoints.js';
import { eventRoutes, type EventsOptions } from './routes/events.js';
import { healthRoutes, type Readiness } from './routes/health.js';
import { overviewRoutes } from './routes/overview.js';
import { tunnelRoutes } from './routes/tunnels.js';
import { inspectPlugin, isPublicInspectPath } from '../inspect/plugin.js';

export { endpointView, tunnelView } from './views.js';
export type { Readiness } from './routes/health.js';

export interface AppOptions {
  runtime: Runtime;
  /** Absent (benchmarks): endpoints are read from the runtime and the mutating routes answer 503. */
  registry?: EndpointRegistry;
  store: Pick<Store, 'trafficSeries' | 'logsPage'>;
  /** Bearer token required on every route but the health checks, when set. */
  accessToken: string | null;
  readiness: () => Promise<Readiness>;
  /** Origins allowed by CORS; empty or absent: CORS off (no CORS headers at all). */
  corsOrigins?: readonly string[];
  /** Mutating routes (POST, PATCH, DELETE), per client address. Default 60 per minute. */
  rateLimit?: { max: number; timeWindowMs: number };
  events?: EventsOptions;
}

/** Routes anyone may call: what a load balancer or an orchestrator probes. */
const OPEN_PATHS = new Set(['/healthz', '/readyz']);

const digest = (text: string): Buffer => createHash('sha256').update(text).digest();

/** Constant time whatever the lengths: both sides are hashed to 32 bytes first. */
export function tokenMatches(presented: string, expectedDigest: Buffer): boolean {
  return timingSafeEqual(digest(presented), expectedDigest);
}

function pathOf(request: FastifyRequest): string {
  const q = request.url.indexOf('?');
  return q === -1 ? request.url : request.url.slice(0, q);
}

/**
 * `?token=` is accepted only where a browser cannot send a header: the EventSource streams (`/api/events` and the
 * inspect page's `/inspect/api/stream`). It is compared like the header and never echoed.
 */
const acceptsQueryToken = (path: string): boolean => path === '/api/events' || path === '/inspect/api/stream';

async function appPlugin(root: FastifyInstance, options: AppOptions): Promise<void> {
  const fastify = root.withTypeProvider<TypeBoxTypeProvider>();
  const timeWindow = options.rateLimit?.timeWindowMs ?? 60_000;
  const deps: HttpDeps = {
    runtime: options.runtime,
    registry: options.registry ?? null,
    store: options.store,
    rateLimit: { max: options.rateLimit?.max ?? 60, timeWindow },
  };

  fastify.setErrorHandler(errorHandler);
  fastify.setNotFoundHandler((request, reply) => {
    void reply.code(404).send(errorBody(404, `no route ${request.method} ${pathOf(request)}`));
  });

  if (options.accessToken) {
    const expected = digest(`Bearer ${options.accessToken}`);
    const expectedQuery = digest(options.accessToken);
    fastify.addHook('onRequest', async (request, reply) => {
      const path = pathOf(request);
      // The /inspect page and its script and style are static files holding no data; the page then calls
      // /inspect/api/* with the token (header, or ?token= on its EventSource).
      if (OPEN_PATHS.has(path) || isPublicInspectPath(path) || request.method === 'OPTIONS') return;
      const header = request.headers.authorization;
      if (typeof header === 'string' && tokenMatches(header, expected)) return;
      const query = (request.query as Record<string, unknown> | undefined)?.['token'];
      if (header === undefined && typeof query === 'string' && acceptsQueryToken(path) && tokenMatches(query, expectedQuery)) return;
      return reply.code(401).header('www-authenticate', 'Bearer').send(errorBody(401, 'a valid bearer token is required (Authorization: Bearer …)'));
    });
  }

  if (options.corsOrigins && options.corsOrigins.length > 0) {
    await fastify.register(cors, {
      origin: [...options.corsOrigins],
      methods: ['GET', 'POST', 'PATCH', 'DELETE', 'OPTIONS'],
      allowedHeaders: ['Authorization', 'Content-Type', 'Last-Event-ID'],
      maxAge: 600,
    });
  }

  await fastify.register(rateLimit, {
    global: false,
    errorResponseBuilder: (_request, context) => new HttpError(429, `rate limit exceeded: at most ${context.max} changes per ${context.after === '' ? 'window' : 'window; retry in ' + context.after}`),
  });

  await fastify.register(swagger, {
    openapi: {
      info: { title: 'TunnelPulse API', version: '1', description: 'Real-time state, history and statistics of NodePass tunnel fleets. See docs/http-api.md.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: options.accessToken ? [{ bearer: [] }] : [],
    },
  });
  // Swagger UI's assets ship inside the package and are served from here: no CDN.
  await fastify.register(swaggerUi, { routePrefix: '/docs' });

  await fastify.register(healthRoutes, { ...deps, readiness: options.readiness });
  await fastify.register(endpointRoutes, deps);
  await fastify.register(tunnelRoutes, deps);
  await fastify.register(overviewRoutes, deps);
  await fastify.register(actorRoutes, deps);
  await fastify.register(eventRoutes, { ...deps, ...(options.events ? { events: options.events } : {}) });
  await fastify.register(inspectPlugin, { runtime: options.runtime });
}

export const app = fp(appPlugin, { name: 'tunnelpulse-http', fastify: '5.x' });
