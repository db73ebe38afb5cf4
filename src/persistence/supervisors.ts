/**
 * The persistence supervisor machines with their effects supplied by a `Persister`: the batchers' `writeBatch`
 * and the scheduled jobs' `job` / `untilNextRun`, on whatever clock `now` reads (real time in the service, the
 * stepped clock in `replay --db`).
 */
import { fromPromise } from 'xstate';
import { batcherMachine } from '../../actors/supervisors/batcher.machine.js';
import { scheduledJobMachine } from '../../actors/supervisors/scheduled-job.machine.js';
import type { Persister, SupervisorName } from './persister.js';

export interface SupervisorMachineOptions {
  /** Run retention (default true). A replay does not: pruning by the recording's clock would be surprising. */
  retention?: boolean;
}

export function providedSupervisorMachines(persister: Persister, now: () => number, options: SupervisorMachineOptions = {}) {
  const batcher = batcherMachine.provide({
    actors: { writeBatch: fromPromise(async ({ input }) => persister.writeBatch(input.name as SupervisorName)) },
  });
  const scheduledJob = scheduledJobMachine.provide({
    actors: {
      job: fromPromise(async ({ input }) => {
        if (input.name === 'hourlyRollup') return persister.rollup();
        return options.retention === false ? { rows: 0, at: now() } : persister.retention();
      }),
      untilNextRun: fromPromise(async ({ input }) => {
        const t = now();
        const next = Math.floor(t / input.periodMs) * input.periodMs + input.periodMs + input.offsetMs;
        return Math.max(1_000, next - t);
      }),
    },
  });
  return { batcher, scheduledJob };
}
