/**
 * A scheduled job supervisor: runs `job` every period (aligned to the period's boundary plus an offset,
 * so the hourly rollup runs just after each hour closes), retries a failure with backoff, and counts runs
 * and failures. Used for the hourly traffic rollup and for retention.
 */
import { assign, fromPromise, setup } from 'xstate';

export interface ScheduledJobContext {
  name: string;
  periodMs: number;
  /** Delay after the period boundary (lets late events of the closing hour arrive). */
  offsetMs: number;
  retryBaseMs: number;
  retryCapMs: number;
  runs: number;
  failures: number;
  attempt: number;
  lastRunAt: number | null;
  lastError: string | null;
  /** What the last run reported (rows touched). */
  lastResult: number;
  /** Wait before the next run, as computed from the runtime's clock. */
  waitMs: number;
}

export type ScheduledJobEvent = { type: 'job.run_now' };

export interface ScheduledJobInput {
  name: string;
  periodMs: number;
  offsetMs?: number;
  retryBaseMs?: number;
  retryCapMs?: number;
}

export const scheduledJobMachine = setup({
  types: { context: {} as ScheduledJobContext, events: {} as ScheduledJobEvent, input: {} as ScheduledJobInput },
  actors: {
    /** The job; resolves with the number of rows it touched. Supplied by the runtime. */
    job: fromPromise<{ rows: number; at: number }, { name: string }>(async () => ({ rows: 0, at: 0 })),
    /** Time to the next run (period boundary + offset) from the runtime's clock. Supplied by the runtime. */
    untilNextRun: fromPromise<number, { periodMs: number; offsetMs: number }>(async ({ input }) => input.periodMs),
  },
  delays: {
    wait: ({ context }) => context.waitMs,
    retry: ({ context }) => Math.min(context.retryCapMs, context.retryBaseMs * 2 ** Math.max(0, context.attempt - 1)),
  },
  actions: {
    recordRun: assign(({ context, event }) => {
      const out = (event as unknown as { output: { rows: number; at: number } }).output;
      return { runs: context.runs + 1, attempt: 0, lastRunAt: out.at, lastError: null, lastResult: out.rows };
    }),
    recordFailure: assign(({ context, event }) => {
      const error = (event as unknown as { error: unknown }).error;
      return { failures: context.failures + 1, attempt: context.attempt + 1, lastError: error instanceof Error ? error.message : String(error) };
    }),
  },
}).createMachine({
  id: 'scheduledJob',
  context: ({ input }) => ({
    offsetMs: 0,
    retryBaseMs: 1_000,
    retryCapMs: 60_000,
    ...input,
    runs: 0,
    failures: 0,
    attempt: 0,
    lastRunAt: null,
    lastError: null,
    lastResult: 0,
    waitMs: input.periodMs,
  }),
  initial: 'scheduling',
  on: { 'job.run_now': { target: '.running' } },
  states: {
    scheduling: {
      invoke: {
        src: 'untilNextRun',
        input: ({ context }) => ({ periodMs: context.periodMs, offsetMs: context.offsetMs }),
        onDone: { target: 'waiting', actions: assign({ waitMs: ({ event }) => event.output }) },
        onError: { target: 'waiting', actions: assign({ waitMs: ({ context }) => context.periodMs }) },
      },
    },
    waiting: {
      after: { wait: { target: 'running' } },
    },
    running: {
      invoke: {
        src: 'job',
        input: ({ context }) => ({ name: context.name }),
        onDone: { target: 'scheduling', actions: 'recordRun' },
        onError: { target: 'retrying', actions: 'recordFailure' },
      },
    },
    retrying: { after: { retry: { target: 'running' } } },
  },
});
