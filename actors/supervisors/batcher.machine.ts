/**
 * A batching supervisor: decides when a queue is written to the database, and what happens when a write
 * fails. The queue itself lives in the runtime (a coalescing map for tunnel states, a FIFO with a disk
 * spill for log lines, a FIFO for configuration changes); this machine only hears that work is pending and
 * invokes `writeBatch`, which takes a batch from the queue and writes it in one statement per table.
 *
 *   idle ──pending──▶ waiting ──interval / full──▶ writing ──done──▶ idle | waiting | writing
 *                                                     │ error
 *                                                     ▼
 *                                                  retrying ──backoff──▶ writing
 *
 * At most one write is in flight per queue; while one is, new work only grows the next batch. A failed
 * batch stays in the queue (the writer puts it back), is retried with capped exponential backoff, and
 * every failure is counted: nothing is dropped.
 */
import { assign, fromPromise, setup } from 'xstate';

export interface BatcherSettings {
  /** Rows that make a batch worth writing at once. */
  batchSize: number;
  /** Longest wait before a non-full batch is written (0: write as soon as possible, i.e. write-through). */
  intervalMs: number;
  retryBaseMs: number;
  retryCapMs: number;
}

export interface BatcherContext extends BatcherSettings {
  name: string;
  batches: number;
  rows: number;
  failures: number;
  /** Consecutive failures (drives the retry backoff). */
  attempt: number;
  lastError: string | null;
  lastWriteAt: number | null;
}

export interface WriteOutcome {
  /** Rows written by this batch. */
  rows: number;
  /** Rows still queued after it. */
  remaining: number;
  at: number;
}

export type BatcherEvent =
  /** Work was queued; `full` when the queue holds a whole batch. */
  | { type: 'batch.pending'; full: boolean }
  /** Write what is queued now (shutdown, tests). */
  | { type: 'batch.flush' };

export interface BatcherInput extends Partial<BatcherSettings> {
  name: string;
}

export const DEFAULT_BATCHER_SETTINGS: BatcherSettings = { batchSize: 100, intervalMs: 2_000, retryBaseMs: 500, retryCapMs: 30_000 };

export const batcherMachine = setup({
  types: {
    context: {} as BatcherContext,
    events: {} as BatcherEvent,
    input: {} as BatcherInput,
  },
  actors: {
    /** Takes a batch from the queue and writes it. Supplied by the runtime. */
    writeBatch: fromPromise<WriteOutcome, { name: string }>(async () => ({ rows: 0, remaining: 0, at: 0 })),
  },
  delays: {
    interval: ({ context }) => context.intervalMs,
    retry: ({ context }) => Math.min(context.retryCapMs, context.retryBaseMs * 2 ** Math.max(0, context.attempt - 1)),
  },
  guards: {
    isFull: ({ event }) => event.type === 'batch.pending' && event.full,
    writeThrough: ({ context }) => context.intervalMs <= 0,
    moreThanABatchLeft: ({ context, event }) =>
      'output' in event && (event.output as WriteOutcome).remaining >= context.batchSize,
    somethingLeft: ({ event }) => 'output' in event && (event.output as WriteOutcome).remaining > 0,
  },
  actions: {
    recordWrite: assign(({ context, event }) => {
      const out = (event as unknown as { output: WriteOutcome }).output;
      return { batches: context.batches + 1, rows: context.rows + out.rows, attempt: 0, lastError: null, lastWriteAt: out.at };
    }),
    recordFailure: assign(({ context, event }) => {
      const error = (event as unknown as { error: unknown }).error;
      return {
        failures: context.failures + 1,
        attempt: context.attempt + 1,
        lastError: error instanceof Error ? error.message : String(error),
      };
    }),
  },
}).createMachine({
  id: 'batcher',
  context: ({ input }) => ({
    ...DEFAULT_BATCHER_SETTINGS,
    ...input,
    batches: 0,
    rows: 0,
    failures: 0,
    attempt: 0,
    lastError: null,
    lastWriteAt: null,
  }),
  initial: 'idle',
  states: {
    idle: {
      on: {
        'batch.pending': [{ guard: 'isFull', target: 'writing' }, { guard: 'writeThrough', target: 'writing' }, { target: 'waiting' }],
        'batch.flush': { target: 'writing' },
      },
    },
    waiting: {
      after: { interval: { target: 'writing' } },
      on: {
        'batch.pending': { guard: 'isFull', target: 'writing' },
        'batch.flush': { target: 'writing' },
      },
    },
    writing: {
      invoke: {
        src: 'writeBatch',
        input: ({ context }) => ({ name: context.name }),
        onDone: [
          { guard: 'moreThanABatchLeft', target: 'writing', reenter: true, actions: 'recordWrite' },
          { guard: 'somethingLeft', target: 'waiting', actions: 'recordWrite' },
          { target: 'idle', actions: 'recordWrite' },
        ],
        onError: { target: 'retrying', actions: 'recordFailure' },
      },
    },
    /** The last write failed; the batch is still queued. */
    retrying: {
      after: { retry: { target: 'writing' } },
      on: { 'batch.flush': { target: 'writing' } },
    },
  },
});

export type BatcherMachine = typeof batcherMachine;
