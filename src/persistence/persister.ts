/**
 * The persistence side of the runtime: the queues, the effects the actors call (`.provide()`d into the
 * tunnel and endpoint machines), and the writers the supervisor machines invoke.
 *
 *   tunnel/endpoint effects ──▶ config queue (FIFO, write-through)  ──▶ configWriter supervisor
 *                          ──▶ state queue (coalesced per tunnel)  ──▶ stateFlusher supervisor (+ hour buckets)
 *                          ──▶ log queue (FIFO, spills to disk)    ──▶ logBatcher supervisor (daily cap)
 *   hourlyRollup / retention supervisors run jobs on the store.
 *
 * A failed write puts its batch back at the front of its queue and rejects, so the supervisor retries it
 * with backoff; while the database is down the queues grow (the state queue is bounded by the number of
 * tunnels; the log and config queues spill to disk past their memory caps). Nothing is dropped.
 */
import type { ActorRef, AnyEventObject } from 'xstate';
import type { OfflineRecord, HourBucketRecord, LogRecord, StatusChangeRecord, TunnelConfigRecord, TunnelStateRecord } from '../../actors/records.js';
import type {
  ConfigChangeParams,
  LogLineParams,
  MemoryFailureParams,
  StateChangeParams,
  StatusChangeParams,
  TunnelContext,
} from '../../actors/tunnel.machine.js';
import { parseLogLine } from '../../actors/log-line.js';
import { staticFieldsOf, type Counters } from '../../actors/model.js';
import type { Stats } from '../runtime/stats.js';
import type { Store, WriteResult } from '../db/store.js';
import { CoalescingQueue, SpillingQueue } from './queues.js';

/** What the persister needs from the database layer: src/db/store.ts. */
export type PersistenceStore = Pick<
  Store,
  'writeTunnelConfigs' | 'writeStatusChanges' | 'writeOfflineIntervals' | 'flushTunnelStates' | 'insertLogs' | 'rollupHours' | 'applyRetention'
>;

export interface PersisterSettings {
  logBatchSize: number;
  logFlushMs: number;
  stateFlushMs: number;
  /** Largest batch written in one statement (a backlog drains in batches of this size). */
  maxBatchRows: number;
  /** Log lines and config changes held in memory before spilling to disk. */
  memoryCapRows: number;
  /** Folder for spill files; none: no spill (memory only). */
  spillDir?: string;
  logsRetentionDays: number;
  trafficRetentionDays: number;
}

export const DEFAULT_PERSISTER_SETTINGS: PersisterSettings = {
  logBatchSize: 100,
  logFlushMs: 2_000,
  stateFlushMs: 2_000,
  maxBatchRows: 1_000,
  memoryCapRows: 200_000,
  logsRetentionDays: 7,
  trafficRetentionDays: 30,
};

type ConfigOp =
  | { kind: 'config'; record: TunnelConfigRecord }
  | { kind: 'status'; record: StatusChangeRecord }
  | { kind: 'offline'; record: OfflineRecord };

interface PendingState {
  state: TunnelStateRecord;
  hours: Record<string, Counters>;
}

export type SupervisorName = 'configWriter' | 'stateFlusher' | 'logBatcher';

export function toConfigRecord(c: TunnelContext, at: number): TunnelConfigRecord {
  return {
    endpointId: c.endpointId,
    instanceId: c.instanceId,
    alias: c.alias,
    type: c.type,
    url: c.url,
    config: c.config,
    restart: c.restart,
    meta: c.meta,
    status: c.status ?? 'stopped',
    deleted: c.deleted,
    deletedAt: c.deletedAt,
    at,
  };
}

export function toStateRecord(c: TunnelContext): TunnelStateRecord {
  return {
    endpointId: c.endpointId,
    instanceId: c.instanceId,
    at: c.stateAt,
    status: c.status ?? 'stopped',
    mode: c.mode,
    ping: c.ping,
    pool: c.pool,
    tcps: c.tcps,
    udps: c.udps,
    counters: c.counters,
    traffic: c.traffic,
    resume: { track: c.track, logLines: c.logLines, anomalies: c.anomalies, statusChanges: c.statusChanges.slice(-20) },
  };
}

export class Persister {
  readonly configQueue: SpillingQueue<ConfigOp>;
  readonly stateQueue = new CoalescingQueue<PendingState>((older, newer) => ({
    state: newer.state.at >= older.state.at ? newer.state : older.state,
    hours: { ...older.hours, ...newer.hours },
  }));
  readonly logQueue: SpillingQueue<LogRecord>;
  private readonly supervisors = new Map<SupervisorName, ActorRef<any, AnyEventObject>>();

  constructor(
    private readonly store: PersistenceStore,
    private readonly stats: Stats,
    private readonly now: () => number,
    readonly settings: PersisterSettings = DEFAULT_PERSISTER_SETTINGS,
  ) {
    const dir = settings.spillDir;
    this.configQueue = new SpillingQueue({ memoryCap: settings.memoryCapRows, spillPath: dir ? `${dir}/config.spill.jsonl` : undefined });
    this.logQueue = new SpillingQueue({ memoryCap: settings.memoryCapRows, spillPath: dir ? `${dir}/logs.spill.jsonl` : undefined });
  }

  attachSupervisor(name: SupervisorName, ref: ActorRef<any, AnyEventObject>): void {
    this.supervisors.set(name, ref);
  }

  private notify(name: SupervisorName, size: number, batchSize: number): void {
    // Only the transitions that matter reach the machine: first item (start the timer) and a full batch.
    if (size === 1 || size % batchSize === 0) this.supervisors.get(name)?.send({ type: 'batch.pending', full: size >= batchSize });
  }

  // ---- effects called by the actors -------------------------------------------------------------------

  readonly tunnelEffects = {
    persistConfig: (_: unknown, p: ConfigChangeParams) => {
      this.configQueue.push({ kind: 'config', record: toConfigRecord(p.context, p.at) }, this.now());
      this.notify('configWriter', this.configQueue.size, 1);
    },
    persistStatusChange: (_: unknown, p: StatusChangeParams) => {
      this.configQueue.push({ kind: 'status', record: { ...p } }, this.now());
      this.notify('configWriter', this.configQueue.size, 1);
    },
    queueState: (_: unknown, p: StateChangeParams) => {
      const c = p.context;
      const size = this.stateQueue.put(`${c.endpointId}/${c.instanceId}`, { state: toStateRecord(c), hours: p.hours }, this.now());
      this.notify('stateFlusher', size, Number.MAX_SAFE_INTEGER);
    },
    queueLog: (_: unknown, p: LogLineParams) => {
      const { level, message } = parseLogLine(p.raw);
      this.logQueue.push(
        { endpointId: p.endpointId, instanceId: p.instanceId, at: p.at, time: p.time, lineHash: p.hash, ordinal: p.ordinal, level, message },
        this.now(),
      );
      this.notify('logBatcher', this.logQueue.size, this.settings.logBatchSize);
    },
    memoryFailed: (_: unknown, p: MemoryFailureParams) => {
      this.stats.add('memoryErrors');
      void this.persistImmediately(p);
    },
  };

  readonly endpointEffects = {
    persistOffline: (_: unknown, p: OfflineRecord) => {
      this.configQueue.push({ kind: 'offline', record: { ...p } }, this.now());
      this.notify('configWriter', this.configQueue.size, 1);
    },
  };

  /** Fallback for an event the memory path failed on: written on its own, at once, retried until it lands. */
  private async persistImmediately(p: MemoryFailureParams, attempt = 0): Promise<void> {
    this.stats.add('fallbacks');
    const inst = p.event.instance;
    const record: TunnelConfigRecord = {
      endpointId: p.endpointId,
      instanceId: p.instanceId,
      ...staticFieldsOf(inst),
      deleted: p.event.type === 'delete',
      deletedAt: p.event.type === 'delete' ? p.event.at : null,
      at: p.event.at,
    };
    try {
      await this.counted(() => this.store.writeTunnelConfigs([record]));
    } catch {
      const delay = Math.min(30_000, 500 * 2 ** attempt);
      setTimeout(() => void this.persistImmediately(p, attempt + 1), delay).unref();
    }
  }

  // ---- writers invoked by the supervisors ------------------------------------------------------------

  /** Writes one batch for a supervisor; on failure the batch goes back to the front of its queue. */
  async writeBatch(name: SupervisorName): Promise<{ rows: number; remaining: number; at: number }> {
    const rows =
      name === 'configWriter' ? await this.writeConfigBatch() : name === 'stateFlusher' ? await this.writeStateBatch() : await this.writeLogBatch();
    const remaining = name === 'configWriter' ? this.configQueue.size : name === 'stateFlusher' ? this.stateQueue.size : this.logQueue.size;
    this.publishQueueStats();
    return { rows, remaining, at: this.now() };
  }

  private async counted<R extends WriteResult>(write: () => Promise<R>): Promise<R> {
    try {
      const result = await write();
      this.stats.add('dbStatements', result.statements);
      this.stats.add('dbRows', result.rows);
      return result;
    } catch (error) {
      this.stats.add('dbErrors');
      throw error;
    }
  }

  private async writeConfigBatch(): Promise<number> {
    const batch = this.configQueue.take(this.settings.maxBatchRows);
    if (batch.length === 0) return 0;
    const configs = batch.filter((b) => b.item.kind === 'config').map((b) => b.item.record as TunnelConfigRecord);
    const statuses = batch.filter((b) => b.item.kind === 'status').map((b) => b.item.record as StatusChangeRecord);
    const offline = batch.filter((b) => b.item.kind === 'offline').map((b) => b.item.record as OfflineRecord);
    try {
      let rows = 0;
      // Order matters: a tunnel's row before its status history.
      if (configs.length) rows += (await this.counted(() => this.store.writeTunnelConfigs(configs))).rows;
      if (statuses.length) rows += (await this.counted(() => this.store.writeStatusChanges(statuses))).rows;
      if (offline.length) rows += (await this.counted(() => this.store.writeOfflineIntervals(offline))).rows;
      return rows;
    } catch (error) {
      this.configQueue.putBack(batch);
      throw error;
    }
  }

  private async writeStateBatch(): Promise<number> {
    const batch = this.stateQueue.take(this.settings.maxBatchRows * 10);
    if (batch.length === 0) return 0;
    const states = batch.map((b) => b.value.state);
    const buckets: HourBucketRecord[] = [];
    for (const b of batch) {
      for (const [hour, traffic] of Object.entries(b.value.hours)) {
        buckets.push({ endpointId: b.value.state.endpointId, instanceId: b.value.state.instanceId, hour: Number(hour), traffic });
      }
    }
    try {
      return (await this.counted(() => this.store.flushTunnelStates(states, buckets))).rows;
    } catch (error) {
      this.stateQueue.putBack(batch);
      throw error;
    }
  }

  private async writeLogBatch(): Promise<number> {
    const batch = this.logQueue.take(this.settings.maxBatchRows);
    if (batch.length === 0) return 0;
    try {
      const result = await this.counted(() => this.store.insertLogs(batch.map((b) => b.item)));
      if (result.cut > 0) this.stats.add('logRowsCut', result.cut);
      return result.rows;
    } catch (error) {
      this.logQueue.putBack(batch);
      throw error;
    }
  }

  async rollup(): Promise<{ rows: number; at: number }> {
    const result = await this.counted(() => this.store.rollupHours('all-closed', this.now()));
    return { rows: result.rows, at: this.now() };
  }

  async retention(): Promise<{ rows: number; at: number }> {
    const result = await this.counted(() =>
      this.store.applyRetention(this.now(), { logsDays: this.settings.logsRetentionDays, trafficDays: this.settings.trafficRetentionDays }),
    );
    return { rows: result.rows, at: this.now() };
  }

  get pendingRows(): number {
    return this.configQueue.size + this.stateQueue.size + this.logQueue.size;
  }

  publishQueueStats(): void {
    const now = this.now();
    const age = (since: number | null) => (since === null ? 0 : Math.max(0, now - since));
    this.stats.setQueue('config', { depth: this.configQueue.size, oldestAgeMs: age(this.configQueue.oldestSince()), spilledRows: this.configQueue.spilledNow, spillBytes: this.configQueue.spillBytes() });
    this.stats.setQueue('state', { depth: this.stateQueue.size, oldestAgeMs: age(this.stateQueue.oldestSince()), spilledRows: 0, spillBytes: 0 });
    this.stats.setQueue('logs', { depth: this.logQueue.size, oldestAgeMs: age(this.logQueue.oldestSince()), spilledRows: this.logQueue.spilledNow, spillBytes: this.logQueue.spillBytes() });
  }

  /** Writes everything queued, in order (shutdown, end of a replay). Throws if the database refuses. */
  async drain(): Promise<void> {
    while (this.configQueue.size > 0) await this.writeConfigBatch();
    while (this.stateQueue.size > 0) await this.writeStateBatch();
    while (this.logQueue.size > 0) await this.writeLogBatch();
    this.publishQueueStats();
  }
}

