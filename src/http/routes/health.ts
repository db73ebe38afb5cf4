/** Liveness, readiness and the Prometheus metrics. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import client from 'prom-client';
import type { HttpDeps } from '../deps.js';
import { HealthResponse, ReadyResponse, errorResponses } from '../schemas.js';
import { stateName } from '../../runtime/change-feed.js';

export interface Readiness {
  database: boolean;
  actorsRestored: boolean;
}

const startedAt = Date.now();

export const healthRoutes: FastifyPluginAsyncTypebox<HttpDeps & { readiness: () => Promise<Readiness> }> = async (fastify, deps) => {
  const { runtime } = deps;

  fastify.get('/healthz', {
    schema: { tags: ['health'], summary: 'The process answers (no token needed)', response: { 200: HealthResponse } },
  }, async () => ({ status: 'ok' as const, uptimeSeconds: Math.round((Date.now() - startedAt) / 1000) }));

  fastify.get('/readyz', {
    schema: {
      tags: ['health'],
      summary: 'Ready when the database is reachable and the actors are restored (no token needed)',
      response: { 200: ReadyResponse, 503: ReadyResponse },
    },
  }, async (_request, reply) => {
    const checks = await deps.readiness();
    const ready = checks.database && checks.actorsRestored;
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not-ready', checks });
  });

  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry, prefix: 'tunnelpulse_' });
  const stat = () => runtime.stats.snapshot();
  const gauge = (name: string, help: string, read: () => number) =>
    new client.Gauge({ name, help, registers: [registry], collect() { this.set(read()); } });
  gauge('tunnelpulse_events_processed', 'Events processed by the actors', () => stat().processedEvents);
  gauge('tunnelpulse_events_rejected', 'Payloads rejected by validation', () => stat().rejectedEvents);
  gauge('tunnelpulse_memory_hit_rate', 'Events answered by the memory path / events processed', () => stat().hitRate);
  gauge('tunnelpulse_error_rate', '(memory errors + database errors) / events processed', () => stat().errorRate);
  gauge('tunnelpulse_processing_avg_us', 'Average processing time of an event, microseconds', () => stat().averageProcessingUs);
  gauge('tunnelpulse_processing_p99_us', 'p99 processing time of an event, microseconds (bucket bound)', () => stat().p99ProcessingUs);
  gauge('tunnelpulse_db_statements', 'Database statements written', () => stat().databaseWrites.statements);
  gauge('tunnelpulse_db_rows', 'Database rows written', () => stat().databaseWrites.rows);
  gauge('tunnelpulse_db_errors', 'Database write errors', () => stat().databaseErrors);
  gauge('tunnelpulse_memory_errors', 'Events the memory path failed on', () => stat().memoryErrors);
  gauge('tunnelpulse_fallbacks', 'Events persisted by the fallback path', () => stat().fallbacks);
  gauge('tunnelpulse_endpoints', 'Endpoints registered', () => runtime.endpoints().length);
  gauge('tunnelpulse_feed_subscribers', 'Live feed (GET /api/events) clients', () => runtime.changes.stats().subscribers);
  gauge('tunnelpulse_feed_events_published', 'Live feed events published', () => runtime.changes.stats().published);
  gauge('tunnelpulse_feed_slow_clients_cut', 'Live feed clients cut off for not reading fast enough', () => runtime.changes.stats().slowClientsCut);

  const queueGauge = (name: string, help: string, pick: (q: { depth: number; oldestAgeMs: number; spilledRows: number; spillBytes: number }) => number) =>
    new client.Gauge({
        name,
        help,
        registers: [registry],
        labelNames: ['queue'],
        collect() {
          this.reset();
          for (const [queue, q] of Object.entries(stat().queues)) this.set({ queue }, pick(q));
        },
      });
  queueGauge('tunnelpulse_queue_depth', 'Rows waiting in a persistence queue', (q) => q.depth);
  queueGauge('tunnelpulse_queue_oldest_age_ms', 'Age of the oldest row waiting, milliseconds', (q) => q.oldestAgeMs);
  queueGauge('tunnelpulse_queue_spilled_rows', 'Rows spilled to disk', (q) => q.spilledRows);
  queueGauge('tunnelpulse_queue_spill_bytes', 'Bytes of spill files', (q) => q.spillBytes);
  gauge('tunnelpulse_ingest_backlog_bytes', 'SSE input received and not yet processed, bytes', () => runtime.ingestStats()?.backlogBytes ?? 0);
  gauge('tunnelpulse_ingest_backlog_oldest_age_ms', 'Age of the oldest unprocessed SSE input, milliseconds', () => runtime.ingestStats()?.oldestAgeMs ?? 0);
  gauge('tunnelpulse_ingest_inline_chunks', 'SSE chunks processed at once because the ingest backlog was full', () => runtime.ingestStats()?.inlineChunks ?? 0);
  gauge('tunnelpulse_ingest_discarded_bytes', 'SSE input still queued when its stream ended on a callback error', () => runtime.ingestStats()?.discardedBytes ?? 0);

  new client.Gauge({
      name: 'tunnelpulse_endpoints_by_state',
      registers: [registry],
      help: 'Endpoints by actor state',
      labelNames: ['state'],
      collect() {
        this.reset();
        const counts: Record<string, number> = {};
        for (const e of runtime.endpoints()) {
          const name = stateName(runtime.endpointState(e.endpointId)?.value) || 'unknown';
          counts[name] = (counts[name] ?? 0) + 1;
        }
        for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
      },
    });
  new client.Gauge({
      name: 'tunnelpulse_tunnels_by_status',
      registers: [registry],
      help: 'Tunnels by status (deleted: tombstones)',
      labelNames: ['status'],
      collect() {
        this.reset();
        const counts: Record<string, number> = {};
        for (const e of runtime.endpoints()) {
          for (const t of runtime.tunnels(e.endpointId)) {
            const status = t.deleted ? 'deleted' : (t.status ?? 'pending');
            counts[status] = (counts[status] ?? 0) + 1;
          }
        }
        for (const [status, n] of Object.entries(counts)) this.set({ status }, n);
      },
    });

  fastify.get('/metrics', {
    schema: { tags: ['health'], summary: 'Prometheus text exposition', produces: ['text/plain'], response: { 200: Type.String(), ...errorResponses } },
  }, async (_request, reply) => reply.type(registry.contentType).send(await registry.metrics()));
};
