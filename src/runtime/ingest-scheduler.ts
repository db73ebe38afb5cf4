/**
 * Deferred, time-boxed processing of what the SSE sockets deliver, so that ingest never holds the event loop for
 * long: an HTTP request or a database reply waits at most about one slice, not for every socket's chunk of a poll
 * phase (each 64 KB chunk is ~100 events, ~3 ms of actor work; one poll phase often holds dozens).
 *
 * Sockets are still read at once (NodePass drops events for a slow reader, so a stream is never paused: see
 * src/ingest/event-stream.ts). A chunk is only queued on its connection's lane; the scheduler then processes the
 * lanes round-robin, one piece (≤ `pieceBytes`, cut after a newline) at a time, in `setImmediate` slices of about
 * `sliceBudgetMs`, so I/O callbacks run between slices. Per connection the order is kept, and a lane's
 * `then(fn)` (the stream's end or error) runs only after everything queued before it was processed.
 *
 * The backlog is bounded in bytes (all lanes together): a chunk that would take it past `maxBacklogBytes` is
 * processed at once instead, with its lane's backlog before it (never dropped), and counted (`inlineChunks`): the
 * process is then saturated, and latency goes back to what it was without the scheduler.
 */

export interface IngestSchedulerOptions {
  /** Work per slice before yielding to the event loop (checked after each piece). Default 1 ms. */
  sliceBudgetMs?: number;
  /** Piece of a chunk processed at once: cut after the first newline at or past this many bytes. Default 64 KiB (~100 events: ~1.5–2 ms of work with batches routed in place). */
  pieceBytes?: number;
  /** Queued bytes of all connections beyond which chunks are processed inline. Default 8 MiB. */
  maxBacklogBytes?: number;
  /** Clock for the age of the oldest queued chunk (epoch ms). */
  now?: () => number;
}

export interface IngestStats {
  /** Bytes received and not yet processed, all connections. */
  backlogBytes: number;
  backlogChunks: number;
  /** Connections with something queued. */
  backlogConnections: number;
  /** Age of the oldest chunk still queued, ms (0: none). */
  oldestAgeMs: number;
  maxBacklogBytes: number;
  /** Chunks processed inline because the backlog was over its bound (the process could not keep up), and their bytes. */
  inlineChunks: number;
  inlineBytes: number;
  /** Slices run, and the longest one (ms, a piece may overrun the budget). */
  slices: number;
  longestSliceMs: number;
  /** Bytes still queued when their stream ended without them (a callback threw, or close() from inside processing). */
  discardedBytes: number;
}

export const DEFAULT_SLICE_BUDGET_MS = 1;
export const DEFAULT_PIECE_BYTES = 64 * 1024;
export const DEFAULT_MAX_BACKLOG_BYTES = 8 * 1024 * 1024;

const NEWLINE = 10;

type LaneItem = { chunk: Buffer; offset: number; at: number } | { then: () => void };

/**
 * An array used as a queue: taken from the front by an index (no `Array.shift` copying per item), each taken slot
 * cleared so its item can be collected, the array dropped when emptied and compacted once the taken part is more
 * than `compactAfter` items and half of it. Both queues of this module (a lane's input, the scheduler's ready lanes).
 */
class Fifo<T> {
  private items: T[] = [];
  private head = 0;

  constructor(private readonly compactAfter: number) {}

  get size(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  /** The next item, left in the queue. */
  first(): T | undefined {
    return this.items[this.head];
  }

  shift(): T | undefined {
    if (this.head === this.items.length) return undefined;
    const item = this.items[this.head]!;
    this.items[this.head++] = undefined as never;
    if (this.head === this.items.length) this.clear();
    else if (this.head > this.compactAfter && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  clear(): void {
    this.items = [];
    this.head = 0;
  }

  *[Symbol.iterator](): IterableIterator<T> {
    for (let i = this.head; i < this.items.length; i++) yield this.items[i]!;
  }
}

/** One connection's queue. `process` is handed each piece in order; it must not throw. */
export class IngestLane {
  private readonly items = new Fifo<LaneItem>(64);
  /** Queued bytes not yet processed. */
  bytes = 0;
  /** In the scheduler's ready queue. */
  ready = false;
  private processing = false;
  private disposed = false;

  constructor(
    private readonly scheduler: IngestScheduler,
    private readonly process: (piece: Buffer) => void,
  ) {}

  get hasWork(): boolean {
    return this.items.size > 0;
  }

  get oldestAt(): number | null {
    for (const item of this.items) if ('chunk' in item) return item.at;
    return null;
  }

  get queuedChunks(): number {
    let n = 0;
    for (const item of this.items) if ('chunk' in item) n++;
    return n;
  }

  /** A chunk from the socket: queued, or processed at once (with what this lane holds) when the backlog is full. */
  push(chunk: Buffer): void {
    if (this.disposed || chunk.length === 0) return;
    if (this.scheduler.overBound(chunk.length) && !this.processing) {
      this.scheduler.countInline(chunk.length);
      this.drainNow();
      this.processing = true;
      try {
        this.process(chunk);
      } finally {
        this.processing = false;
      }
      return;
    }
    this.items.push({ chunk, offset: 0, at: this.scheduler.now() });
    this.bytes += chunk.length;
    this.scheduler.queued(this, chunk.length);
  }

  /** Runs `fn` once everything queued before this call has been processed (at once if nothing is). */
  then(fn: () => void): void {
    if (this.disposed) return;
    if (!this.hasWork && !this.processing) {
      fn();
      return;
    }
    this.items.push({ then: fn });
    this.scheduler.queued(this, 0);
  }

  /**
   * Processes everything queued, now (the stream is being closed by its owner). From inside this lane's own
   * processing (the consumer closed the stream while handling one of its events) it cannot re-enter the parser,
   * so it does nothing: the caller ends the stream and the rest is discarded, as it was before this scheduler.
   */
  drainNow(): void {
    if (this.processing) return;
    while (this.hasWork && !this.disposed) this.step();
  }

  /** Processes one piece (or runs one `then`). */
  step(): void {
    if (this.processing || !this.hasWork) return;
    const item = this.items.first()!;
    if ('then' in item) {
      this.items.shift();
      item.then();
      return;
    }
    const { chunk, offset } = item;
    let end = chunk.length;
    const pieceBytes = this.scheduler.pieceBytes;
    if (end - offset > pieceBytes) {
      const nl = chunk.indexOf(NEWLINE, offset + pieceBytes - 1);
      if (nl !== -1) end = nl + 1;
    }
    if (end >= chunk.length) this.items.shift();
    else item.offset = end;
    const size = end - offset;
    this.bytes -= size;
    this.scheduler.processed(size);
    this.processing = true;
    try {
      this.process(offset === 0 && end === chunk.length ? chunk : chunk.subarray(offset, end));
    } finally {
      this.processing = false;
    }
  }

  /** The stream ended: anything still queued is discarded (counted) and later pushes are ignored. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const left = this.bytes;
    this.items.clear();
    this.bytes = 0;
    this.scheduler.forget(this, left);
  }

}

export class IngestScheduler {
  readonly sliceBudgetMs: number;
  readonly pieceBytes: number;
  readonly maxBacklogBytes: number;
  readonly now: () => number;
  private readonly readyLanes = new Fifo<IngestLane>(1024);
  private scheduled = false;
  private backlogBytes = 0;
  private readonly lanes = new Set<IngestLane>();
  private readonly counts = { inlineChunks: 0, inlineBytes: 0, slices: 0, longestSliceMs: 0, discardedBytes: 0 };
  private readonly runSlice = () => this.slice();

  constructor(options: IngestSchedulerOptions = {}) {
    this.sliceBudgetMs = options.sliceBudgetMs ?? DEFAULT_SLICE_BUDGET_MS;
    this.pieceBytes = Math.max(1, options.pieceBytes ?? DEFAULT_PIECE_BYTES);
    this.maxBacklogBytes = options.maxBacklogBytes ?? DEFAULT_MAX_BACKLOG_BYTES;
    this.now = options.now ?? Date.now;
  }

  /** A lane for one connection; `dispose()` it when the connection ends. */
  lane(process: (piece: Buffer) => void): IngestLane {
    const lane = new IngestLane(this, process);
    this.lanes.add(lane);
    return lane;
  }

  stats(): IngestStats {
    let chunks = 0;
    let connections = 0;
    let oldest: number | null = null;
    for (const lane of this.lanes) {
      if (!lane.hasWork) continue;
      connections++;
      chunks += lane.queuedChunks;
      const at = lane.oldestAt;
      if (at !== null && (oldest === null || at < oldest)) oldest = at;
    }
    return {
      backlogBytes: this.backlogBytes,
      backlogChunks: chunks,
      backlogConnections: connections,
      oldestAgeMs: oldest === null ? 0 : Math.max(0, this.now() - oldest),
      maxBacklogBytes: this.maxBacklogBytes,
      ...this.counts,
      longestSliceMs: Math.round(this.counts.longestSliceMs * 100) / 100,
    };
  }

  // ---- called by the lanes --------------------------------------------------------------------------------

  overBound(bytes: number): boolean {
    return this.backlogBytes + bytes > this.maxBacklogBytes;
  }

  countInline(bytes: number): void {
    this.counts.inlineChunks++;
    this.counts.inlineBytes += bytes;
  }

  queued(lane: IngestLane, bytes: number): void {
    this.backlogBytes += bytes;
    if (!lane.ready) {
      lane.ready = true;
      this.readyLanes.push(lane);
    }
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.runSlice);
    }
  }

  processed(bytes: number): void {
    this.backlogBytes -= bytes;
  }

  /** A lane was disposed with `bytes` still queued. */
  forget(lane: IngestLane, bytes: number): void {
    this.lanes.delete(lane);
    this.backlogBytes -= bytes;
    this.counts.discardedBytes += bytes;
  }

  // ---- the slice --------------------------------------------------------------------------------------------

  /** Round-robin over the lanes with work, one piece each, until the budget is spent; then yields. */
  private slice(): void {
    this.scheduled = false;
    const started = performance.now();
    let elapsed = 0;
    for (let lane = this.readyLanes.shift(); lane !== undefined; lane = this.readyLanes.shift()) {
      lane.ready = false;
      lane.step();
      if (lane.hasWork && !lane.ready) {
        lane.ready = true;
        this.readyLanes.push(lane);
      }
      elapsed = performance.now() - started;
      if (elapsed >= this.sliceBudgetMs) break;
    }
    this.counts.slices++;
    if (elapsed > this.counts.longestSliceMs) this.counts.longestSliceMs = elapsed;
    if (this.readyLanes.size > 0 && !this.scheduled) {
      this.scheduled = true;
      setImmediate(this.runSlice);
    }
  }
}
