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
import { copyTrack, pickCounters, type CounterTrack } from '../../actors/traffic.js';
import type { DatabaseWriter, Stats } from '../runtime/stats.js';
import { FLUSH_CHUNK_ROWS, type Store, type TunnelConfigWrite, type WriteResult } from '../db/store.js';
import { CoalescingQueue, SpillingQueue, type CoalescedItem, type Deferred } from './queues.js';

/** What the persister needs from the database layer: src/db/store.ts. */
export type PersistenceStore = Pick<
  Store,
  'writeTunnelConfigs' | 'writeStatusChanges' | 'writeOfflineIntervals' | 'flushTunnelStates' | 'insertLogs' | 'rollupHours' | 'applyRetention'
> &
  Partial<Pick<Store, 'ping'>>;

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
  /** How long `close()` (shutdown) keeps trying to write everything before spilling the rest. */
  closeTimeoutMs: number;
  /**
   * While a supervisor's last write failed, the database is probed (`SELECT 1`) this often, real time, and the
   * failed supervisors are woken as soon as it answers, instead of sleeping out their retry backoff (up to 30 s).
   * Default 1,000; 0: no probe.
   */
  recoveryProbeMs?: number;
}

export const DEFAULT_PERSISTER_SETTINGS: PersisterSettings = {
  logBatchSize: 100,
  logFlushMs: 2_000,
  stateFlushMs: 2_000,
  maxBatchRows: 1_000,
  memoryCapRows: 200_000,
  logsRetentionDays: 7,
  trafficRetentionDays: 30,
  closeTimeoutMs: 30_000,
  recoveryProbeMs: 1_000,
};

type ConfigOp =
  | { kind: 'config'; record: TunnelConfigWrite }
  | { kind: 'status'; record: StatusChangeRecord }
  | { kind: 'offline'; record: OfflineRecord };

interface PendingState {
  state: TunnelStateRecord;
  hours: Record<string, Counters>;
}

/** The hours of a state that touched none: shared, never mutated (merges copy, `DirtyTunnel` notes into its own). */
const NO_HOURS: Record<string, Counters> = Object.freeze({}) as Record<string, Counters>;

/**
 * Tunnels taken and prepared per turn of a state flush before the event loop gets a turn (`setImmediate`): building
 * a record and its hour buckets measured ~0.4–0.7 µs a tunnel (10,000 tunnels), so a turn is ~0.2–0.4 ms, with
 * room for a busier machine under the ~1 ms an ingest slice takes.
 */
export const STATE_PREPARE_TURN_ROWS = 500;

const isEmpty = (record: Record<string, unknown>): boolean => {
  for (const _ in record) return false;
  return true;
};

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

/**
 * The state a configuration record carries while the tunnel has counted no traffic yet: above all at its creation,
 * when the first sample is the baseline every later delta is measured against. Written with the configuration (at
 * once, in the same statement), it survives a kill before the first state flush, and the restart counts the
 * traffic since that first sample instead of taking a new baseline. Once traffic was counted the state belongs to
 * the state flusher alone: its traffic total must be checkpointed together with the hour buckets.
 */
export function baselineOf(c: TunnelContext): TunnelStateRecord | null {
  const t = c.traffic;
  if (c.track.last === null || c.stateAt === 0 || t.tcprx + t.tcptx + t.udprx + t.udptx !== 0) return null;
  return toStateRecord(c);
}

export function toStateRecord(c: TunnelContext): TunnelStateRecord {
  return stateRecordOf(c, c.stateAt, c.logLines, c.track);
}

/**
 * The state record of a tunnel, given the three fields that can move without a state change (`logLines` by a log
 * line, `at` by an event that repeats the state, `track` by a sample that drops an all-zero pending offset): the
 * state queue passes them as they were at the tunnel's last state change. A snapshot: the counters, the traffic total
 * and the track's last sample, which the tunnel updates in place, are copied; every other value it points to is
 * replaced by the tunnel, never mutated.
 */
function stateRecordOf(c: TunnelContext, at: number, logLines: number, track: CounterTrack): TunnelStateRecord {
  return {
    endpointId: c.endpointId,
    instanceId: c.instanceId,
    at,
    status: c.status ?? 'stopped',
    mode: c.mode,
    ping: c.ping,
    pool: c.pool,
    tcps: c.tcps,
    udps: c.udps,
    counters: pickCounters(c.counters),
    traffic: pickCounters(c.traffic),
    resume: {
      track: copyTrack(track),
      logLines,
      anomalies: c.anomalies,
      statusChanges: c.statusChanges.length > 20 ? c.statusChanges.slice(-20) : c.statusChanges,
    },
  };
}

/**
 * A tunnel whose state changed since it was last taken by a flush: its entry in the state queue, whose record is
 * built from the live context only when a flush takes it. Every field of the record but `at`, `logLines` and
 * `track` changes only with a state change (actors/tunnel.machine.ts `observe`, `stateChanged`), which notes itself
 * here; those three are noted per update, so the record is exactly the state of the last update (what a record
 * refreshed per update held), at a cost of a few field writes and no allocation per update.
 *
 * Kept per context (`Persister.dirtyTunnels`) and reused flush after flush while the tunnel keeps changing; one that
 * changed only once since the last flush lets go of it when taken, so a quiet tunnel holds nothing.
 */
class DirtyTunnel implements Deferred<PendingState> {
  queued = false;
  readonly key: string;
  private updates = 0;
  private at = 0;
  private logLines = 0;
  private track: CounterTrack;
  /**
   * The buckets touched since last taken: the tunnel's own bucket objects, which it updates in place (only with a
   * state change, which notes itself here), so their values when built are those of the last update; copied then.
   */
  private hours: Record<string, Counters> | null = null;

  constructor(
    private readonly context: TunnelContext,
    private readonly owners: WeakMap<TunnelContext, DirtyTunnel>,
  ) {
    this.key = `${context.endpointId}/${context.instanceId}`;
    this.track = context.track;
  }

  /** Starts a new dirty period (the tunnel was not queued). */
  start(hours: Record<string, Counters>): void {
    this.updates = 0;
    this.at = this.context.stateAt;
    this.note(hours);
  }

  /** One more update: the hot path (no allocation but the first touched bucket's record). */
  note(hours: Record<string, Counters>): void {
    const c = this.context;
    if (c.stateAt >= this.at) {
      this.at = c.stateAt;
      this.logLines = c.logLines;
      this.track = c.track;
    }
    this.updates++;
    for (const hour in hours) (this.hours ??= {})[hour] = hours[hour]!;
  }

  build(): PendingState {
    const touched = this.hours;
    let hours = NO_HOURS;
    if (touched !== null) {
      hours = {};
      // An hour the tunnel dropped at once is noted as undefined (tunnel.machine.ts `observe`), and stays so.
      for (const hour in touched) hours[hour] = touched[hour] === undefined ? touched[hour]! : pickCounters(touched[hour]!);
    }
    const pending = { state: stateRecordOf(this.context, this.at, this.logLines, this.track), hours };
    this.hours = null;
    if (this.updates <= 1) this.owners.delete(this.context);
    this.updates = 0;
    return pending;
  }
}

/** Lets the event loop run (I/O, timers, other work) before the caller goes on. */
const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class Persister {
  readonly configQueue: SpillingQueue<ConfigOp>;
  readonly stateQueue = new CoalescingQueue<PendingState>((older, newer) => ({
    state: newer.state.at >= older.state.at ? newer.state : older.state,
    // Most merges touch no bucket or the same one: copy only when both sides have some (never mutated in place).
    hours: isEmpty(newer.hours) ? older.hours : isEmpty(older.hours) ? newer.hours : { ...older.hours, ...newer.hours },
  }));
  readonly logQueue: SpillingQueue<LogRecord>;
  /** The state queue's entry of each tunnel context that changed recently (see `DirtyTunnel`). */
  private readonly dirtyTunnels = new WeakMap<TunnelContext, DirtyTunnel>();
  /** Turns of state-flush preparation done (within a flush, each after a yield to the event loop but the first). */
  statePrepareTurns = 0;
  private readonly supervisors = new Map<SupervisorName, ActorRef<any, AnyEventObject>>();
  /** Supervisor writes under way (a batch taken from its queue, not yet written or put back). */
  private readonly inflight = new Set<Promise<number>>();
  private closing = false;
  /** Set when `close()` gave up and spilled: nothing may be taken from or put back into the queues any more. */
  private abandoned = false;
  /** Supervisors whose last write failed (they sit in their retry backoff): woken when the database answers again. */
  private readonly failing = new Set<SupervisorName>();
  private probing = false;
  /**
   * Set when a probe found the database unreachable. Only then are failed supervisors woken early: a write that
   * failed while the database answered (bad data) keeps its backoff rather than being retried every second.
   */
  private unreachableSeen = false;

  constructor(
    private readonly store: PersistenceStore,
    private readonly stats: Stats,
    private readonly now: () => number,
    readonly settings: PersisterSettings = DEFAULT_PERSISTER_SETTINGS,
  ) {
    const dir = settings.spillDir;
    this.configQueue = new SpillingQueue({ memoryCap: settings.memoryCapRows, spillPath: dir ? `${dir}/config.spill.jsonl` : undefined });
    this.logQueue = new SpillingQueue({ memoryCap: settings.memoryCapRows, spillPath: dir ? `${dir}/logs.spill.jsonl` : undefined });
    // Queue depths and ages are read live whenever statistics are read, not only after a write.
    stats.onSnapshot(() => this.publishQueueStats());
  }

  attachSupervisor(name: SupervisorName, ref: ActorRef<any, AnyEventObject>): void {
    this.supervisors.set(name, ref);
    // Work already queued (read back from a spill file left by the previous process) wakes the supervisor now:
    // otherwise it would wait for the next push to land on a notification boundary.
    const size = name === 'configWriter' ? this.configQueue.size : name === 'stateFlusher' ? this.stateQueue.size : this.logQueue.size;
    const batchSize = name === 'logBatcher' ? this.settings.logBatchSize : name === 'configWriter' ? 1 : Number.MAX_SAFE_INTEGER;
    if (size > 0) ref.send({ type: 'batch.pending', full: size >= batchSize });
  }

  private notify(name: SupervisorName, size: number, batchSize: number): void {
    // Only the transitions that matter reach the machine: first item (start the timer) and a full batch.
    if (size === 1 || size % batchSize === 0) this.supervisors.get(name)?.send({ type: 'batch.pending', full: size >= batchSize });
  }

  // ---- effects called by the actors -------------------------------------------------------------------

  readonly tunnelEffects = {
    persistConfig: (_: unknown, p: ConfigChangeParams) => {
      const record: TunnelConfigWrite = toConfigRecord(p.context, p.at);
      const baseline = baselineOf(p.context);
      if (baseline) record.baseline = baseline;
      this.configQueue.push({ kind: 'config', record }, this.now());
      this.notify('configWriter', this.configQueue.size, 1);
    },
    persistStatusChange: (_: unknown, p: StatusChangeParams) => {
      this.configQueue.push({ kind: 'status', record: { ...p } }, this.now());
      this.notify('configWriter', this.configQueue.size, 1);
    },
    queueState: (_: unknown, p: StateChangeParams) => {
      const c = p.context;
      let dirty = this.dirtyTunnels.get(c);
      let size: number;
      if (dirty !== undefined && dirty.queued) {
        // Most changes find the tunnel already queued: noted in place; its record is built when a flush takes it.
        dirty.note(p.hours);
        size = this.stateQueue.size;
      } else {
        if (dirty === undefined) this.dirtyTunnels.set(c, (dirty = new DirtyTunnel(c, this.dirtyTunnels)));
        dirty.start(p.hours);
        size = this.stateQueue.mark(dirty.key, dirty, this.now());
      }
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
  private async persistImmediately(p: MemoryFailureParams): Promise<void> {
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
    const tracked = this.tracked(this.counted('fallback', () => this.store.writeTunnelConfigs([record])));
    try {
      await tracked;
    } catch {
      // The database refused it too: hand it to the config writer's queue, which retries with backoff, spills
      // past its cap and is flushed (or spilled) at shutdown — rather than a private timer nobody drains.
      this.configQueue.push({ kind: 'config', record }, this.now());
      this.notify('configWriter', this.configQueue.size, 1);
    }
  }

  // ---- writers invoked by the supervisors ------------------------------------------------------------

  /** Writes one batch for a supervisor; on failure the batch goes back to the front of its queue. */
  async writeBatch(name: SupervisorName): Promise<{ rows: number; remaining: number; at: number }> {
    // Once closing, `close()` owns the queues: the supervisors go idle instead of racing it.
    if (this.closing) return { rows: 0, remaining: 0, at: this.now() };
    const write = name === 'configWriter' ? this.writeConfigBatch() : name === 'stateFlusher' ? this.writeStateBatch() : this.writeLogBatch();
    this.inflight.add(write);
    let rows: number;
    try {
      rows = await write;
    } catch (error) {
      this.failing.add(name);
      this.probeUntilRecovered();
      throw error;
    } finally {
      this.inflight.delete(write);
    }
    // The database took this write: the others need not sleep out their backoff.
    this.failing.delete(name);
    if (this.failing.size > 0 && this.unreachableSeen) this.wakeFailing();
    const remaining = name === 'configWriter' ? this.configQueue.size : name === 'stateFlusher' ? this.stateQueue.size : this.logQueue.size;
    this.publishQueueStats();
    return { rows, remaining, at: this.now() };
  }

  private async counted<R extends WriteResult>(writer: DatabaseWriter, write: () => Promise<R>): Promise<R> {
    try {
      const result = await write();
      this.stats.wrote(writer, result.statements, result.rows);
      return result;
    } catch (error) {
      this.stats.add('dbErrors');
      throw error;
    }
  }

  private async writeConfigBatch(): Promise<number> {
    const batch = this.configQueue.take(this.settings.maxBatchRows);
    if (batch.length === 0) return 0;
    const configs = batch.filter((b) => b.item.kind === 'config').map((b) => b.item.record as TunnelConfigWrite);
    const statuses = batch.filter((b) => b.item.kind === 'status').map((b) => b.item.record as StatusChangeRecord);
    const offline = batch.filter((b) => b.item.kind === 'offline').map((b) => b.item.record as OfflineRecord);
    try {
      let rows = 0;
      // Order matters: a tunnel's row before its status history.
      if (configs.length) rows += (await this.counted('configWriter', () => this.store.writeTunnelConfigs(configs))).rows;
      if (statuses.length) rows += (await this.counted('configWriter', () => this.store.writeStatusChanges(statuses))).rows;
      if (offline.length) rows += (await this.counted('configWriter', () => this.store.writeOfflineIntervals(offline))).rows;
      this.configQueue.done(batch);
      this.stats.committed('config', batch, this.now());
      return rows;
    } catch (error) {
      if (!this.abandoned) this.configQueue.putBack(batch);
      throw error;
    }
  }

  /**
   * One flush: the tunnels queued when it starts (up to `maxBatchRows × 10`), written in chunks of
   * `FLUSH_CHUNK_ROWS`, each chunk its own transaction (a tunnel's state and its hour buckets always together).
   * Taking and preparing 10,000 tunnels at once held the event loop for tens of ms: a chunk is prepared in turns of
   * `STATE_PREPARE_TURN_ROWS` tunnels (`takeStateChunk`). A failed chunk goes back to the queue and the flush stops
   * there (the chunks before it are committed); the supervisor retries the rest.
   */
  private async writeStateBatch(): Promise<number> {
    // Tunnels queued during the flush go to the end of the queue (insertion order): they wait for the next flush.
    let left = Math.min(this.stateQueue.size, this.settings.maxBatchRows * 10);
    let rows = 0;
    for (let chunk = 0; left > 0; chunk++) {
      // Every turn but the flush's first yields first: a store that answers at once must not join two turns.
      const { batch, states, buckets } = await this.takeStateChunk(Math.min(left, FLUSH_CHUNK_ROWS), chunk > 0);
      if (batch.length === 0) break;
      left -= batch.length;
      try {
        rows += (await this.counted('stateFlusher', () => this.store.flushTunnelStates(states, buckets))).rows;
        this.stats.committed('state', batch, this.now());
      } catch (error) {
        this.stateQueue.putBack(batch);
        throw error;
      }
    }
    return rows;
  }

  /**
   * Takes up to `rows` tunnels from the state queue and builds their records and hour buckets, a turn of
   * `STATE_PREPARE_TURN_ROWS` at a time with the event loop let run between turns. Each record is built whole in
   * one synchronous step (`DirtyTunnel.build`), so it is a consistent snapshot; a tunnel that changes during the
   * flush after it was taken is simply queued again for the next one.
   */
  private async takeStateChunk(rows: number, yieldFirst: boolean): Promise<{ batch: Array<CoalescedItem<PendingState>>; states: TunnelStateRecord[]; buckets: HourBucketRecord[] }> {
    const batch: Array<CoalescedItem<PendingState>> = [];
    const states: TunnelStateRecord[] = [];
    const buckets: HourBucketRecord[] = [];
    while (batch.length < rows) {
      if (batch.length > 0 || yieldFirst) await yieldToEventLoop();
      const turn = this.stateQueue.take(Math.min(STATE_PREPARE_TURN_ROWS, rows - batch.length));
      if (turn.length === 0) break;
      this.statePrepareTurns++;
      for (const item of turn) {
        batch.push(item);
        const { state, hours } = item.value;
        states.push(state);
        for (const hour in hours) buckets.push({ endpointId: state.endpointId, instanceId: state.instanceId, hour: Number(hour), traffic: hours[hour]! });
      }
    }
    return { batch, states, buckets };
  }

  private async writeLogBatch(): Promise<number> {
    const batch = this.logQueue.take(this.settings.maxBatchRows);
    if (batch.length === 0) return 0;
    try {
      const result = await this.counted('logBatcher', () => this.store.insertLogs(batch.map((b) => b.item)));
      if (result.cut > 0) this.stats.add('logRowsCut', result.cut);
      this.logQueue.done(batch);
      this.stats.committed('log', batch, this.now());
      return result.rows;
    } catch (error) {
      if (!this.abandoned) this.logQueue.putBack(batch);
      throw error;
    }
  }

  /**
   * After a long outage the supervisors' retry backoff has grown to its cap (30 s): without this, writing would
   * resume only when the next retry happens to fire. One probe loop at a time, only while some write has failed;
   * probes are not writes (not counted as statements or database errors).
   */
  private probeUntilRecovered(): void {
    const every = this.settings.recoveryProbeMs ?? DEFAULT_PERSISTER_SETTINGS.recoveryProbeMs!;
    const ping = this.store.ping?.bind(this.store);
    if (this.probing || every <= 0 || !ping) return;
    this.probing = true;
    void (async () => {
      try {
        while (this.failing.size > 0 && !this.closing) {
          await new Promise((r) => setTimeout(r, every).unref());
          if (this.failing.size === 0 || this.closing) return;
          // A probe that hangs (a connection postgres.js keeps retrying, a black-holed network) counts as
          // unreachable too; it is awaited rather than stacked, and its answer is the recovery.
          const slow = setTimeout(() => (this.unreachableSeen = true), every).unref();
          try {
            await ping();
          } catch {
            this.unreachableSeen = true;
            continue;
          } finally {
            clearTimeout(slow);
          }
          if (this.unreachableSeen) this.wakeFailing();
          return;
        }
      } finally {
        this.probing = false;
      }
    })();
  }

  /** Ends the retry wait of every supervisor whose last write failed (a new failure puts it back in backoff). */
  private wakeFailing(): void {
    this.unreachableSeen = false;
    const names = [...this.failing];
    this.failing.clear();
    for (const name of names) this.supervisors.get(name)?.send({ type: 'batch.flush' });
  }

  async rollup(): Promise<{ rows: number; at: number }> {
    const result = await this.tracked(this.counted('hourlyRollup', () => this.store.rollupHours('all-closed', this.now())));
    return { rows: result.rows, at: this.now() };
  }

  async retention(): Promise<{ rows: number; at: number }> {
    const result = await this.tracked(
      this.counted('retention', () =>
        this.store.applyRetention(this.now(), { logsDays: this.settings.logsRetentionDays, trafficDays: this.settings.trafficRetentionDays }),
      ),
    );
    return { rows: result.rows, at: this.now() };
  }

  private async tracked<R>(work: Promise<R>): Promise<R> {
    const settled = work.then(() => 0, () => 0);
    this.inflight.add(settled);
    try {
      return await work;
    } finally {
      this.inflight.delete(settled);
    }
  }

  /** True while a supervisor's write or job is under way. */
  get busy(): boolean {
    return this.inflight.size > 0;
  }

  /** Resolves once no supervisor write or job is under way (a replay on a stepped clock waits for its writes). */
  async settle(): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
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

  /**
   * Writes everything queued, in order (end of a replay, tests). Waits for supervisor writes under way first,
   * so a batch they hold is written (or put back and written here). Throws if the database refuses.
   */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.inflight]);
    while (!this.abandoned && this.configQueue.size > 0) await this.writeConfigBatch();
    while (!this.abandoned && this.stateQueue.size > 0) await this.writeStateBatch();
    while (!this.abandoned && this.logQueue.size > 0) await this.writeLogBatch();
    this.publishQueueStats();
  }

  /**
   * Shutdown: the supervisors stop writing, everything queued is written, retrying with backoff until
   * `deadline` (epoch ms, real time; default `closeTimeoutMs` from now). If the database is still refusing then, the log and configuration
   * queues go to their spill files (read back first on the next start) and this throws; the coalesced
   * states are not spilled: the next start deltas against the last stored counters, so traffic totals stay
   * exact (only the hour a late delta is attributed to can shift).
   */
  async close(deadline = Date.now() + this.settings.closeTimeoutMs): Promise<void> {
    this.closing = true;
    let timer: NodeJS.Timeout | undefined;
    // A database that stopped answering (a black-holed connection) would hang a write forever: the deadline
    // bounds the whole flush, and whatever is still unwritten then (queued or out with a hung write) is spilled.
    const expired = new Promise<'expired'>((resolve) => {
      timer = setTimeout(() => resolve('expired'), Math.max(0, deadline - Date.now()));
    });
    let lastError: unknown = null;
    const flush = async (): Promise<'flushed'> => {
      for (let attempt = 0; !this.abandoned; attempt++) {
        try {
          await this.drain();
          if (this.abandoned) break;
          return 'flushed';
        } catch (error) {
          lastError = error;
          await new Promise((r) => setTimeout(r, Math.min(5_000, 250 * 2 ** attempt)).unref());
        }
      }
      return 'flushed';
    };
    try {
      if ((await Promise.race([flush(), expired])) === 'flushed') return;
    } finally {
      clearTimeout(timer);
    }
    this.abandoned = true;
    this.configQueue.spillAll(this.now());
    this.logQueue.spillAll(this.now());
    this.publishQueueStats();
    throw new Error(`could not write everything before the shutdown deadline: ${lastError instanceof Error ? lastError.message : 'the database did not answer'}`);
  }
}

