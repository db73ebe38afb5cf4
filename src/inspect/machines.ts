/**
 * Every machine the service runs, by diagram name, and which machine an actor id runs (the actor ids of
 * actors/model.ts `actorId` and the supervisors' system ids). The one list for docs/machines and /inspect.
 */
import type { AnyStateMachine } from 'xstate';
import { endpointMachine } from '../../actors/endpoint.machine.js';
import { fleetMachine } from '../../actors/fleet.machine.js';
import { batcherMachine } from '../../actors/supervisors/batcher.machine.js';
import { scheduledJobMachine } from '../../actors/supervisors/scheduled-job.machine.js';
import { tunnelMachine } from '../../actors/tunnel.machine.js';

export const MACHINES = {
  fleet: fleetMachine,
  endpoint: endpointMachine,
  tunnel: tunnelMachine,
  batcher: batcherMachine,
  'scheduled-job': scheduledJobMachine,
} satisfies Record<string, AnyStateMachine>;

export type MachineName = keyof typeof MACHINES;

export const BATCHER_SUPERVISORS = ['configWriter', 'stateFlusher', 'logBatcher'] as const;
export const SCHEDULED_SUPERVISORS = ['hourlyRollup', 'retention'] as const;

export function isMachineName(name: string): name is MachineName {
  return Object.hasOwn(MACHINES, name);
}

/** The machine an actor runs, from its id: `fleet`, `endpoint:<id>`, `tunnel:<e>/<i>`, a supervisor's name. */
export function machineOfActor(actorId: string): MachineName | null {
  if (actorId === 'fleet') return 'fleet';
  if (actorId.startsWith('endpoint:')) return 'endpoint';
  if (actorId.startsWith('tunnel:')) return 'tunnel';
  if ((BATCHER_SUPERVISORS as readonly string[]).includes(actorId)) return 'batcher';
  if ((SCHEDULED_SUPERVISORS as readonly string[]).includes(actorId)) return 'scheduled-job';
  return null;
}
