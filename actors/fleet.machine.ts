/**
 * The fleet machine: the root of the actor system. It owns one endpoint actor per NodePass master
 * (root → endpoints → tunnels: no flat list of thousands of children, which XState spawns in quadratic
 * time) and, in the service, the persistence supervisors. It is the owner of last resort for errors: a
 * failing endpoint actor is restarted from its input within a budget and counted, and never takes the
 * system down.
 */
import { assign, enqueueActions, setup, type ActorRefFrom } from 'xstate';
import { endpointMachine, stopTunnels, type EndpointInput } from './endpoint.machine.js';
import { actorId } from './model.js';
import { batcherMachine, type BatcherInput } from './supervisors/batcher.machine.js';
import { scheduledJobMachine, type ScheduledJobInput } from './supervisors/scheduled-job.machine.js';

export type EndpointRef = ActorRefFrom<typeof endpointMachine>;
export type BatcherRef = ActorRefFrom<typeof batcherMachine>;
export type ScheduledJobRef = ActorRefFrom<typeof scheduledJobMachine>;

/** The persistence supervisors, each registered in the actor system under its name. */
export interface SupervisorInputs {
  configWriter: BatcherInput;
  stateFlusher: BatcherInput;
  logBatcher: BatcherInput;
  hourlyRollup: ScheduledJobInput;
  retention: ScheduledJobInput;
}

export interface FleetContext {
  endpoints: Record<string, EndpointRef>;
  supervisors: Partial<Record<keyof SupervisorInputs, BatcherRef | ScheduledJobRef>>;
  /** Inputs by endpoint id, to restart a failed endpoint actor. */
  inputs: Record<string, EndpointInput>;
  endpointRestarts: number;
  endpointFailures: number;
  restartBudget: number;
}

export type FleetEvent =
  | { type: 'fleet.add_endpoint'; input: EndpointInput }
  | { type: 'fleet.remove_endpoint'; endpointId: number };

export interface FleetInput {
  endpoints?: EndpointInput[];
  /** Absent: no persistence (replay into memory, tests). */
  supervisors?: SupervisorInputs;
  /** Endpoint actor restarts allowed over the life of the fleet, per endpoint. */
  restartBudget?: number;
}

const fleetSetup = setup({
  types: { context: {} as FleetContext, events: {} as FleetEvent, input: {} as FleetInput },
  actors: { endpoint: endpointMachine, batcher: batcherMachine, scheduledJob: scheduledJobMachine },
  actions: {
    endpointFailed: (_, _params: { endpointId: number; error: string; restarted: boolean }) => {},
  },
});

export const fleetMachine = fleetSetup
  .extend({
    actions: {
      addEndpoint: assign(({ context, event, spawn }) => {
        if (event.type !== 'fleet.add_endpoint') return {};
        const key = String(event.input.endpointId);
        if (context.endpoints[key]) return {};
        context.endpoints[key] = spawn('endpoint', { id: actorId.endpoint(event.input.endpointId), input: event.input }) as EndpointRef;
        context.inputs[key] = event.input;
        return { endpoints: context.endpoints, inputs: context.inputs };
      }),
      removeEndpoint: fleetSetup.createAction(
        enqueueActions(({ context, event, enqueue }) => {
          if (event.type !== 'fleet.remove_endpoint') return;
          const key = String(event.endpointId);
          const ref = context.endpoints[key];
          if (!ref) return;
          // Its tunnels are not XState children (endpoint.machine.ts, `createTunnel`): stopped here, first.
          enqueue(() => stopTunnels(ref));
          enqueue.stopChild(ref);
          const endpoints = { ...context.endpoints };
          const inputs = { ...context.inputs };
          delete endpoints[key];
          delete inputs[key];
          enqueue.assign({ endpoints, inputs });
        }),
      ),
      superviseEndpointError: fleetSetup.createAction(
        enqueueActions(({ context, event, enqueue }) => {
          const childId = (event as { type: string }).type.slice('xstate.error.actor.'.length);
          const key = childId.slice(childId.indexOf(':') + 1);
          const ref = context.endpoints[key];
          const input = context.inputs[key];
          const error = String((event as unknown as { error?: unknown }).error ?? 'unknown error');
          if (!ref || !input) return;
          const restart = context.endpointRestarts < context.restartBudget * Math.max(1, Object.keys(context.endpoints).length);
          enqueue({ type: 'endpointFailed', params: { endpointId: input.endpointId, error, restarted: restart } });
          enqueue.assign({ endpointFailures: context.endpointFailures + 1 });
          if (!restart) return;
          // Restart from the tunnels' last good contexts, so no counter baseline is lost.
          const tunnels = Object.values(ref.getSnapshot().context.tunnels).map((t) => t.getSnapshot().context);
          enqueue(() => stopTunnels(ref));
          enqueue.stopChild(ref);
          enqueue.assign(({ spawn }) => {
            context.endpoints[key] = spawn('endpoint', {
              id: actorId.endpoint(input.endpointId),
              input: { ...input, restoreTunnels: tunnels },
            }) as EndpointRef;
            return { endpoints: context.endpoints, endpointRestarts: context.endpointRestarts + 1 };
          });
        }),
      ),
    },
  })
  .createMachine({
    id: 'fleet',
    context: ({ input, spawn }) => {
      const endpoints: Record<string, EndpointRef> = {};
      const inputs: Record<string, EndpointInput> = {};
      for (const e of input.endpoints ?? []) {
        endpoints[String(e.endpointId)] = spawn('endpoint', { id: actorId.endpoint(e.endpointId), input: e }) as EndpointRef;
        inputs[String(e.endpointId)] = e;
      }
      const supervisors: FleetContext['supervisors'] = {};
      if (input.supervisors) {
        const s = input.supervisors;
        for (const name of ['configWriter', 'stateFlusher', 'logBatcher'] as const) {
          supervisors[name] = spawn('batcher', { id: name, systemId: name, input: s[name] }) as BatcherRef;
        }
        for (const name of ['hourlyRollup', 'retention'] as const) {
          supervisors[name] = spawn('scheduledJob', { id: name, systemId: name, input: s[name] }) as ScheduledJobRef;
        }
      }
      return { endpoints, supervisors, inputs, endpointRestarts: 0, endpointFailures: 0, restartBudget: input.restartBudget ?? 10 };
    },
    initial: 'running',
    states: { running: {} },
    on: {
      'fleet.add_endpoint': { actions: 'addEndpoint' },
      'fleet.remove_endpoint': { actions: 'removeEndpoint' },
      'xstate.error.actor.*': { actions: 'superviseEndpointError' },
    },
  });
