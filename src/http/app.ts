/**
 * The HTTP application as a Fastify plugin, so tests build it without listening (`app.inject`).
 * This first cut answers from the actors in memory: health and readiness, endpoints and their tunnels,
 * the raw state of an endpoint actor, and the statistics (JSON and Prometheus). The full API (trends, logs,
 * live feed, OpenAPI) is tracked in its own issue.
 */
import type { FastifyInstance } from 'fastify';
import client from 'prom-client';
import { iso } from '../../actors/model.js';
import type { EndpointContext } from '../../actors/endpoint.machine.js';
import type { TunnelContext } from '../../actors/tunnel.machine.js';
import { tunnelReport } from '../replay/report.js';
import type { Runtime } from '../runtime/runtime.js';

export interface AppOptions {
  runtime: Runtime;
  /** Bearer token required on every route but the health checks, when set. */
  accessToken: string | null;
  ready: () => Promise<boolean>;
}

export function endpointView(e: EndpointContext, state: unknown) {
  const tunnels = Object.values(e.tunnels).map((t) => t.getSnapshot().context);
  const byStatus: Record<string, number> = {};
  const traffic = { tcprx: 0, tcptx: 0, udprx: 0, udptx: 0 };
  for (const t of tunnels) {
    const key = t.deleted ? 'deleted' : (t.status ?? 'unknown');
    byStatus[key] = (byStatus[key] ?? 0) + 1;
    traffic.tcprx += t.traffic.tcprx;
    traffic.tcptx += t.traffic.tcptx;
    traffic.udprx += t.traffic.udprx;
    traffic.udptx += t.traffic.udptx;
  }
  return {
    id: e.endpointId,
    name: e.name,
    state,
    since: e.since ? iso(e.since) : null,
    masterId: e.masterId,
    master: e.info,
    connections: e.connections,
    reconnects: e.reconnects,
    lastError: e.lastError,
    tunnels: byStatus,
    traffic,
    events: { total: e.events.total, byType: e.events.byType, rejected: e.events.rejected },
    offline: e.offline.map((o) => ({ from: iso(o.from), to: o.to === null ? null : iso(o.to), reason: o.reason })),
    disconnectedSince: e.disconnected ? iso(e.disconnected.from) : null,
  };
}

export function tunnelView(t: TunnelContext) {
  return {
    ...tunnelReport(t),
    mode: t.mode,
    ping: t.ping,
    pool: t.pool,
    tcps: t.tcps,
    udps: t.udps,
    rates: t.rates,
    updatedAt: t.updatedAt ? iso(t.updatedAt) : null,
  };
}

function constantTimeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  if (ab.length !== bb.length) return false;
  let diff = 0;
  for (let i = 0; i < ab.length; i++) diff |= ab[i]! ^ bb[i]!;
  return diff === 0;
}

export async function app(fastify: FastifyInstance, options: AppOptions): Promise<void> {
  const { runtime } = options;
  const registry = new client.Registry();
  const gauge = (name: string, help: string, read: () => number) =>
    registry.registerMetric(new client.Gauge({ name, help, collect() { this.set(read()); } }));
  const stat = () => runtime.stats.snapshot();
  gauge('tunnelpulse_events_processed', 'Events processed by the actors', () => stat().processedEvents);
  gauge('tunnelpulse_events_rejected', 'Payloads rejected by validation', () => stat().rejectedEvents);
  gauge('tunnelpulse_db_statements', 'Database statements written', () => stat().databaseWrites.statements);
  gauge('tunnelpulse_db_rows', 'Database rows written', () => stat().databaseWrites.rows);
  gauge('tunnelpulse_db_errors', 'Database write errors', () => stat().databaseErrors);
  gauge('tunnelpulse_memory_errors', 'Events the memory path failed on', () => stat().memoryErrors);
  gauge('tunnelpulse_endpoints', 'Endpoints registered', () => runtime.endpoints().length);

  if (options.accessToken) {
    const expected = `Bearer ${options.accessToken}`;
    fastify.addHook('onRequest', async (request, reply) => {
      if (request.url === '/healthz' || request.url === '/readyz') return;
      if (!constantTimeEqual(String(request.headers.authorization ?? ''), expected)) {
        await reply.code(401).send({ error: { code: 'UNAUTHORIZED', message: 'a valid bearer token is required' } });
      }
    });
  }

  const notFound = (what: string) => ({ error: { code: 'NOT_FOUND', message: `${what} not found` } });

  fastify.get('/healthz', async () => ({ status: 'ok' }));
  fastify.get('/readyz', async (_req, reply) => ((await options.ready()) ? { status: 'ready' } : reply.code(503).send({ status: 'starting' })));
  fastify.get('/api/endpoints', async () =>
    runtime.endpoints().map((e) => endpointView(e, runtime.endpointState(e.endpointId)?.value)),
  );
  fastify.get<{ Params: { id: string } }>('/api/endpoints/:id', async (req, reply) => {
    const s = runtime.endpointState(Number(req.params.id));
    return s ? endpointView(s.context, s.value) : reply.code(404).send(notFound('endpoint'));
  });
  fastify.get<{ Params: { id: string } }>('/api/endpoints/:id/tunnels', async (req, reply) => {
    const id = Number(req.params.id);
    if (!runtime.endpointState(id)) return reply.code(404).send(notFound('endpoint'));
    return runtime.tunnels(id).map(tunnelView);
  });
  fastify.get<{ Params: { id: string; instanceId: string } }>('/api/endpoints/:id/tunnels/:instanceId', async (req, reply) => {
    const t = runtime.tunnel(Number(req.params.id), req.params.instanceId);
    return t ? tunnelView(t) : reply.code(404).send(notFound('tunnel'));
  });
  fastify.get('/api/stats', async () => runtime.stats.snapshot());
  fastify.get('/metrics', async (_req, reply) => reply.type(registry.contentType).send(await registry.metrics()));
}
