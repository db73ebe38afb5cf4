/**
 * TunnelPulse as the service wires it (src/service/service.ts): Stats, Persister over the real Store, Runtime with
 * the default supervisors, and optionally the Fastify app listening on loopback. One for the whole benchmark:
 * each load step points the endpoints at its own simulators (same seed, so the same tunnels: their actors are
 * reused) and measures differences of the counters.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import type { Database } from '../db/connection.js';
import { Store } from '../db/store.js';
import { app, type AppOptions } from '../http/app.js';
import { DEFAULT_PERSISTER_SETTINGS, Persister } from '../persistence/persister.js';
import { DEFAULT_SUPERVISORS, Runtime } from '../runtime/runtime.js';
import { Stats } from '../runtime/stats.js';
import type { SimMaster } from './sim-fleet.js';

export interface PipelineSettings {
  logBatchSize: number;
  logFlushMs: number;
  stateFlushMs: number;
  logDailyCap: number;
}

export const BENCH_PIPELINE_SETTINGS: PipelineSettings = { logBatchSize: 100, logFlushMs: 2_000, stateFlushMs: 2_000, logDailyCap: 10_000_000 };

export class TunnelPulsePipeline {
  readonly stats = new Stats();
  readonly persister: Persister;
  readonly runtime: Runtime;
  private readonly store: Store;
  http: FastifyInstance | null = null;
  logLinesQueued = 0;
  address = '';

  constructor(
    db: Database,
    /** Endpoint rows that exist in the database (foreign keys), one per master. */
    private readonly endpointIds: readonly number[],
    settings: PipelineSettings = BENCH_PIPELINE_SETTINGS,
  ) {
    const store = new Store(db, { logDailyCap: settings.logDailyCap });
    this.store = store;
    this.persister = new Persister(store, this.stats, Date.now, {
      ...DEFAULT_PERSISTER_SETTINGS,
      logBatchSize: settings.logBatchSize,
      logFlushMs: settings.logFlushMs,
      stateFlushMs: settings.stateFlushMs,
    });
    // Counts the log lines the tunnel actors hand to persistence (tells the actors' share of a loss from the queue's).
    const queueLog = this.persister.tunnelEffects.queueLog;
    this.persister.tunnelEffects.queueLog = (args, params) => {
      this.logLinesQueued++;
      queueLog(args, params);
    };
    this.runtime = new Runtime({ stats: this.stats, persister: this.persister, supervisors: DEFAULT_SUPERVISORS(settings) });
    this.runtime.start();
  }

  async listen(): Promise<string> {
    this.http = Fastify({ logger: false });
    await this.http.register(app, { runtime: this.runtime, store: this.store, accessToken: null, readiness: async () => ({ database: true, actorsRestored: true }) });
    this.address = await this.http.listen({ host: '127.0.0.1', port: 0 });
    return this.address;
  }

  private connected = new Set<number>();

  /** First call adds the endpoints; later calls point them at new simulators (they reconnect at once). */
  connect(masters: readonly SimMaster[]): void {
    if (masters.length > this.endpointIds.length) throw new Error('more masters than endpoint rows');
    masters.forEach((m, i) => {
      const def = { id: this.endpointIds[i]!, name: `bench-${i + 1}`, baseUrl: m.apiBase, apiKey: m.apiKey, insecureTls: false, enabled: true };
      if (this.connected.has(def.id)) this.runtime.updateEndpoint(def);
      else this.runtime.addEndpoint(def);
      this.connected.add(def.id);
    });
  }

  /** Events the endpoint actors counted, in total and by NodePass type (the API-key record's included). */
  received(): { total: number; byType: Record<string, number>; rejected: number; tunnels: number; connections: number } {
    let connections = 0;
    let total = 0;
    let rejected = 0;
    let tunnels = 0;
    const byType: Record<string, number> = {};
    for (const e of this.runtime.endpoints()) {
      total += e.events.total;
      connections += e.connections;
      rejected += e.events.rejected;
      tunnels += Object.keys(e.tunnels).length;
      for (const [k, v] of Object.entries(e.events.byType)) byType[k] = (byType[k] ?? 0) + v;
    }
    return { total, byType, rejected, tunnels, connections };
  }

  /** Log lines the tunnel actors took for duplicates (identity already seen) and did not queue. */
  duplicateLogsIgnored(): number {
    let n = 0;
    for (const e of this.runtime.endpoints()) for (const t of Object.values(e.tunnels)) n += t.getSnapshot().context.ignored.duplicateLog;
    return n;
  }

  /** Tunnel actors that stopped on an error (XState drops what is sent to them afterwards), with one reason. */
  failedTunnelActors(): { count: number; example: string | null } {
    let count = 0;
    let example: string | null = null;
    for (const e of this.runtime.endpoints()) {
      for (const t of Object.values(e.tunnels)) {
        const snap = t.getSnapshot() as { status: string; error?: unknown };
        if (snap.status !== 'error') continue;
        count++;
        example ??= snap.error instanceof Error ? `${snap.error.message} ${snap.error.stack?.split('\n').slice(1, 4).join(' ') ?? ''}` : String(snap.error);
      }
    }
    return { count, example };
  }

  /** Tunnels held as deleted (tombstones), and events the endpoints ignored for arriving after a tombstone. */
  tombstones(): { tunnels: number; eventsIgnored: number } {
    let tunnels = 0;
    let eventsIgnored = 0;
    for (const e of this.runtime.endpoints()) {
      eventsIgnored += e.ignoredAfterTombstone;
      for (const t of Object.values(e.tunnels)) if (t.getSnapshot().status === 'done') tunnels++;
    }
    return { tunnels, eventsIgnored };
  }

  get pending(): number {
    return this.persister.pendingRows;
  }

  /**
   * Stops reading, writes everything queued, closes HTTP. The actor system itself is not stopped: stopping
   * 10,000 tunnel actors took minutes (measured 1.6 s at 2,000 and 18 s at 4,000 tunnels, so quadratic; reported
   * in docs/performance.md), and the benchmark process exits right after.
   */
  async close(): Promise<void> {
    await this.http?.close();
    for (const id of this.connected) this.runtime.endpointRef(id)?.send({ type: 'endpoint.disable', at: Date.now() });
    await this.persister.close();
  }
}
