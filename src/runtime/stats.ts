/**
 * Service statistics (BRIEF part 5), held in one `@xstate/store` store.
 *
 * The hot path (every event) only bumps plain numbers in an accumulator; the accumulator is folded into
 * the store at most every `foldIntervalMs` and whenever someone reads. A store `trigger` per event would
 * allocate a new context per event; folding keeps the store the single source for readers at a fraction
 * of the cost. Processing times go into a fixed log-scale histogram (avg and p99 without keeping samples).
 */
import { createStore } from '@xstate/store';

/** Histogram buckets in microseconds: 1, 2, 5, 10, … up to 10 s. */
const BUCKETS_US = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 1_000_000, 10_000_000];

export interface QueueStats {
  depth: number;
  oldestAgeMs: number;
  spilledRows: number;
  spillBytes: number;
}

/**
 * Who wrote: the three persistence supervisors, the scheduled jobs, and the memory path's fallback (one record
 * written on its own). Per-writer figures make write amplification readable per kind of data: state flushes per
 * update event, log batches per log line (issue 7's "statements per 1,000 update events" is the state flusher's).
 */
export const DATABASE_WRITERS = ['configWriter', 'stateFlusher', 'logBatcher', 'hourlyRollup', 'retention', 'fallback'] as const;
export type DatabaseWriter = (typeof DATABASE_WRITERS)[number];

export interface WriteCounts {
  statements: number;
  rows: number;
}

const noWrites = (): Record<DatabaseWriter, WriteCounts> =>
  Object.fromEntries(DATABASE_WRITERS.map((w) => [w, { statements: 0, rows: 0 }])) as Record<DatabaseWriter, WriteCounts>;

export interface StatsContext {
  processedEvents: number;
  memoryHits: number;
  memoryErrors: number;
  rejectedEvents: number;
  dbStatements: number;
  dbRows: number;
  dbErrors: number;
  fallbacks: number;
  logRowsCut: number;
  lastProcessedAt: number | null;
  processingTimeTotalUs: number;
  processingHistogram: number[];
  queues: Record<string, QueueStats>;
  /** `dbStatements` and `dbRows` split by writer (what was counted through `Stats.wrote`). */
  writesByWriter: Record<DatabaseWriter, WriteCounts>;
}

const emptyStats = (): StatsContext => ({
  processedEvents: 0,
  memoryHits: 0,
  memoryErrors: 0,
  rejectedEvents: 0,
  dbStatements: 0,
  dbRows: 0,
  dbErrors: 0,
  fallbacks: 0,
  logRowsCut: 0,
  lastProcessedAt: null,
  processingTimeTotalUs: 0,
  processingHistogram: BUCKETS_US.map(() => 0),
  queues: {},
  writesByWriter: noWrites(),
});

type Counts = Omit<StatsContext, 'queues' | 'processingHistogram' | 'lastProcessedAt' | 'writesByWriter'>;

export function createStatsStore() {
  return createStore({
    context: emptyStats(),
    on: {
      fold: (context, event: { counts: Partial<Counts>; histogram: number[]; lastProcessedAt: number | null; writes: Partial<Record<DatabaseWriter, WriteCounts>> }) => {
        const next = { ...context };
        for (const [k, v] of Object.entries(event.counts) as Array<[keyof Counts, number]>) next[k] = context[k] + v;
        if (Object.keys(event.writes).length > 0) {
          next.writesByWriter = { ...context.writesByWriter };
          for (const [w, c] of Object.entries(event.writes) as Array<[DatabaseWriter, WriteCounts]>) {
            const before = context.writesByWriter[w];
            next.writesByWriter[w] = { statements: before.statements + c.statements, rows: before.rows + c.rows };
          }
        }
        next.processingHistogram = context.processingHistogram.map((n, i) => n + (event.histogram[i] ?? 0));
        if (event.lastProcessedAt !== null) next.lastProcessedAt = event.lastProcessedAt;
        return next;
      },
      queue: (context, event: { name: string; stats: QueueStats }) => ({
        ...context,
        queues: { ...context.queues, [event.name]: event.stats },
      }),
    },
  });
}

export type StatsStore = ReturnType<typeof createStatsStore>;

/**
 * Receipt→commit latency in milliseconds, log-scale buckets 5 % wide (so a p99 near the 3 s target reads as
 * 3.0–3.15 s, not "somewhere under 10 s" as the processing histogram's decades would). No samples are kept.
 */
export class LatencyHistogram {
  private static readonly LOG_GROWTH = Math.log(1.05);
  private buckets: number[] = [];
  count = 0;
  maxMs = 0;

  record(ms: number, n = 1): void {
    const i = ms <= 1 ? 0 : Math.ceil(Math.log(ms) / LatencyHistogram.LOG_GROWTH);
    this.buckets[i] = (this.buckets[i] ?? 0) + n;
    this.count += n;
    if (ms > this.maxMs) this.maxMs = ms;
  }

  /** Upper bound of the bucket holding the q-quantile (never above the largest value seen). */
  percentile(q: number): number {
    if (this.count === 0) return 0;
    let seen = 0;
    for (let i = 0; i < this.buckets.length; i++) {
      seen += this.buckets[i] ?? 0;
      if (seen >= this.count * q) return Math.min(this.maxMs, Math.round(1.05 ** i * 10) / 10);
    }
    return this.maxMs;
  }

  /** Starts over (a benchmark measures each load step on its own). */
  reset(): void {
    this.buckets = [];
    this.count = 0;
    this.maxMs = 0;
  }

  summary(): { count: number; p50Ms: number; p99Ms: number; maxMs: number } {
    return { count: this.count, p50Ms: this.percentile(0.5), p99Ms: this.percentile(0.99), maxMs: this.maxMs };
  }
}

export type CommitKind = 'config' | 'state' | 'log';

/** The hot-path side: cheap increments, folded into the store on demand. */
export class Stats {
  readonly store = createStatsStore();
  /** Receipt (queued by an actor) → committed row, per queue; recorded by the persister after each batch. */
  readonly commitLatency: Record<CommitKind, LatencyHistogram> = {
    config: new LatencyHistogram(),
    state: new LatencyHistogram(),
    log: new LatencyHistogram(),
  };
  private pending: Partial<Record<keyof Counts, number>> = {};
  private pendingWrites: Partial<Record<DatabaseWriter, WriteCounts>> = {};
  private histogram = BUCKETS_US.map(() => 0);
  private lastProcessedAt: number | null = null;
  private dirty = false;

  add(key: keyof Counts, n = 1): void {
    this.pending[key] = (this.pending[key] ?? 0) + n;
    this.dirty = true;
  }

  /** A write the database took: counted in the totals and for its writer. */
  wrote(writer: DatabaseWriter, statements: number, rows: number): void {
    this.add('dbStatements', statements);
    this.add('dbRows', rows);
    const counts = (this.pendingWrites[writer] ??= { statements: 0, rows: 0 });
    counts.statements += statements;
    counts.rows += rows;
  }

  /** One event through the memory path, with its processing time. */
  processed(at: number, durationUs: number, hit: boolean): void {
    this.pending.processedEvents = (this.pending.processedEvents ?? 0) + 1;
    if (hit) this.pending.memoryHits = (this.pending.memoryHits ?? 0) + 1;
    this.pending.processingTimeTotalUs = (this.pending.processingTimeTotalUs ?? 0) + durationUs;
    let i = 0;
    while (i < BUCKETS_US.length - 1 && durationUs > BUCKETS_US[i]!) i++;
    this.histogram[i]!++;
    this.lastProcessedAt = at;
    this.dirty = true;
  }

  /** A batch committed: each entry's time from being queued (`since`) to now. */
  committed(kind: CommitKind, batch: ReadonlyArray<{ since: number }>, now: number): void {
    const histogram = this.commitLatency[kind];
    for (const entry of batch) histogram.record(Math.max(0, now - entry.since));
  }

  /** Called at every snapshot, before reading: sources of live figures (queue depths, oldest age, spill size). */
  private readonly refreshers: Array<() => void> = [];

  onSnapshot(refresh: () => void): void {
    this.refreshers.push(refresh);
  }

  setQueue(name: string, stats: QueueStats): void {
    this.store.trigger.queue({ name, stats });
  }

  fold(): void {
    if (!this.dirty) return;
    this.store.trigger.fold({ counts: this.pending, histogram: this.histogram, lastProcessedAt: this.lastProcessedAt, writes: this.pendingWrites });
    this.pending = {};
    this.pendingWrites = {};
    this.histogram = BUCKETS_US.map(() => 0);
    this.lastProcessedAt = null;
    this.dirty = false;
  }

  /** The statistics as the API reports them (BRIEF part 5), with derived rates. */
  snapshot() {
    for (const refresh of this.refreshers) refresh();
    this.fold();
    const s = this.store.getSnapshot().context;
    const processed = s.processedEvents;
    return {
      processedEvents: processed,
      memoryHits: s.memoryHits,
      memoryErrors: s.memoryErrors,
      rejectedEvents: s.rejectedEvents,
      databaseWrites: { statements: s.dbStatements, rows: s.dbRows, byWriter: s.writesByWriter },
      databaseErrors: s.dbErrors,
      fallbacks: s.fallbacks,
      logRowsCut: s.logRowsCut,
      lastProcessedAt: s.lastProcessedAt === null ? null : new Date(s.lastProcessedAt).toISOString(),
      averageProcessingUs: processed ? s.processingTimeTotalUs / processed : 0,
      p99ProcessingUs: percentile(s.processingHistogram, 0.99),
      hitRate: processed ? s.memoryHits / processed : 0,
      errorRate: processed ? (s.memoryErrors + s.dbErrors) / processed : 0,
      queues: s.queues,
      commitLatency: {
        config: this.commitLatency.config.summary(),
        state: this.commitLatency.state.summary(),
        log: this.commitLatency.log.summary(),
      },
    };
  }
}

/** Upper bound of the bucket holding the q-quantile. */
function percentile(histogram: number[], q: number): number {
  const total = histogram.reduce((a, b) => a + b, 0);
  if (total === 0) return 0;
  let seen = 0;
  for (let i = 0; i < histogram.length; i++) {
    seen += histogram[i]!;
    if (seen >= total * q) return BUCKETS_US[i]!;
  }
  return BUCKETS_US[BUCKETS_US.length - 1]!;
}
