/**
 * The simulator the service's demo mode runs in-process: one master with a few tunnels, steady traffic and
 * logs, and now and then a counter reset (which, with NodePass's second-reset bug, sometimes jumps up).
 */
import { startFaultSchedule } from './fault-schedule.js';
import { startSimulator, type SimulatorHandle } from './simulator.js';

export interface DemoSimulator {
  /** The master URL to register (`http://127.0.0.1:<port>/api`). */
  url: string;
  /** `…/api/v1`. */
  apiBase: string;
  apiKey: string;
  masterId: string;
  simulator: SimulatorHandle;
  close(): Promise<void>;
}

export interface DemoOptions {
  host?: string;
  port?: number;
  seed?: string | number;
  reportIntervalMs?: number;
  /** How often a random running tunnel gets a `reset`, default 60 s; 0 for never. */
  resetEveryMs?: number;
}

export async function startDemoSimulator(options: DemoOptions = {}): Promise<DemoSimulator> {
  const simulator = await startSimulator({
    host: options.host ?? '127.0.0.1',
    port: options.port ?? 0,
    seed: options.seed ?? 'tunnelpulse-demo',
    instances: 4,
    alias: 'demo-master',
    reportIntervalMs: options.reportIntervalMs ?? 2000,
    logRate: 0.5,
  });
  const resetEveryMs = options.resetEveryMs ?? 60_000;
  const stopFaults = resetEveryMs > 0 ? startFaultSchedule(simulator, ['reset'], { everyMs: resetEveryMs, seed: 'demo' }) : () => undefined;
  const { master } = simulator;
  return {
    url: master.url,
    apiBase: master.apiBase,
    apiKey: master.apiKey,
    masterId: master.masterId,
    simulator,
    async close() {
      stopFaults();
      await simulator.close();
    },
  };
}
