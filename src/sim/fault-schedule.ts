/**
 * Periodic faults for demos and soak runs (`tunnelpulse sim --faults reset,garbage,restart`): every `everyMs`
 * one fault from the list hits one seeded-random master. Each fault undoes itself where that makes sense
 * (a stall or an HTTP failure lasts a few report intervals), so the fleet keeps coming back.
 */
import type { HostedMaster, SimulatorHandle } from './simulator.js';
import type { GarbageKind } from './master.js';
import { Prng } from './prng.js';

export const PERIODIC_FAULTS = [
  'reset',
  'garbage',
  'restart',
  'rotate',
  'drop',
  'stall',
  'half-open',
  'fail',
  'http500',
  'instance-restart',
] as const;
export type PeriodicFault = (typeof PERIODIC_FAULTS)[number];

export interface FaultNotice {
  fault: PeriodicFault;
  master: string;
  instanceId?: string;
  /** Set by `rotate`: the key to use from now on. */
  apiKey?: string;
}

export function parseFaultList(text: string): PeriodicFault[] {
  const names = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const name of names) {
    if (!(PERIODIC_FAULTS as readonly string[]).includes(name)) {
      throw new Error(`unknown fault "${name}" (known: ${PERIODIC_FAULTS.join(', ')})`);
    }
  }
  return names as PeriodicFault[];
}

const STREAM_GARBAGE: GarbageKind[] = ['not-json', 'wrong-shape', 'unknown-type', 'counter-overflow'];

/** Starts the schedule; the returned function stops it (and lifts any stall or HTTP failure it left on). */
export function startFaultSchedule(
  sim: SimulatorHandle,
  faults: readonly PeriodicFault[],
  options: { everyMs: number; seed?: string; onFault?: (notice: FaultNotice) => void },
): () => void {
  if (faults.length === 0) return () => undefined;
  const prng = new Prng(options.seed ?? 'faults');
  const undo = new Set<NodeJS.Timeout>();
  const later = (ms: number, run: () => void): void => {
    const timer = setTimeout(() => {
      undo.delete(timer);
      run();
    }, ms);
    timer.unref();
    undo.add(timer);
  };
  const recoverAfterMs = Math.max(1000, Math.round(options.everyMs / 3));

  const runningInstance = (master: HostedMaster): string | undefined => {
    const running = master.instanceIds().filter((id) => master.instance(id)?.status === 'running');
    return running.length === 0 ? undefined : prng.pick(running);
  };

  const hit = (): void => {
    const master = prng.pick(sim.masters);
    if (!master.isUp) return;
    const fault = prng.pick(faults);
    const notice: FaultNotice = { fault, master: master.name };
    switch (fault) {
      case 'reset':
      case 'fail':
      case 'instance-restart': {
        const id = runningInstance(master);
        if (id === undefined) return;
        notice.instanceId = id;
        if (fault === 'reset') master.resetCounters(id);
        else if (fault === 'fail') master.failInstance(id);
        else void master.restartInstance(id);
        break;
      }
      case 'garbage':
        master.injectGarbage(prng.pick(STREAM_GARBAGE));
        break;
      case 'restart':
        void master.restartMaster({ downtimeMs: recoverAfterMs });
        break;
      case 'rotate':
        notice.apiKey = master.rotateKey();
        break;
      case 'drop':
        master.dropConnections();
        break;
      case 'half-open':
        master.halfOpenStreams();
        break;
      case 'stall':
        master.stall();
        later(recoverAfterMs, () => master.unstall());
        break;
      case 'http500':
        master.setHttpFailure(500);
        later(recoverAfterMs, () => master.setHttpFailure(null));
        break;
    }
    options.onFault?.(notice);
  };

  const interval = setInterval(hit, options.everyMs);
  interval.unref();
  return () => {
    clearInterval(interval);
    for (const timer of undo) clearTimeout(timer);
    undo.clear();
    for (const master of sim.masters) {
      master.unstall();
      master.setHttpFailure(null);
    }
  };
}
