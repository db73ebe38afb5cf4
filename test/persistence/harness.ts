/**
 * The persistence side of the runtime on its own, against a real Store: a Persister, the five supervisor
 * machines (as the fleet owns them), and helpers that feed it the way tunnel actors do (through the effects
 * `persister.tunnelEffects.*`). With `clock` the supervisors' timers run on a stepped clock; without, in real time.
 */
import { createActor } from 'xstate';
import { fleetMachine, type SupervisorInputs } from '../../actors/fleet.machine.js';
import { hourOf } from '../../actors/traffic.js';
import { newTunnelContext, type TunnelContext } from '../../actors/tunnel.machine.js';
import type { Sql } from '../../src/db/connection.js';
import { Store } from '../../src/db/store.js';
import { DEFAULT_PERSISTER_SETTINGS, Persister, type PersisterSettings, type PersistenceStore } from '../../src/persistence/persister.js';
import { providedSupervisorMachines } from '../../src/persistence/supervisors.js';
import { DEFAULT_SUPERVISORS } from '../../src/runtime/runtime.js';
import { SteppedClock } from '../../src/runtime/stepped-clock.js';
import { Stats } from '../../src/runtime/stats.js';

export interface PersistenceHarness {
  persister: Persister;
  stats: Stats;
  now(): number;
  /** Stepped clock only: moves time forward in `stepMs` steps, letting every write started on the way finish. */
  advance(ms: number, stepMs?: number): Promise<void>;
  /** Waits until no supervisor write is under way and the machines have taken the results. */
  settle(): Promise<void>;
  supervisor(name: 'configWriter' | 'stateFlusher' | 'logBatcher' | 'hourlyRollup' | 'retention'): { value: unknown; context: Record<string, unknown> };
  stop(): void;
}

export function startPersistence(
  store: PersistenceStore,
  options: { clock?: SteppedClock; settings?: Partial<PersisterSettings>; retention?: boolean; supervisors?: Partial<SupervisorInputs> } = {},
): PersistenceHarness {
  const clock = options.clock;
  const now = clock ? () => clock.now() : Date.now;
  const stats = new Stats();
  const settings: PersisterSettings = { ...DEFAULT_PERSISTER_SETTINGS, ...options.settings };
  const persister = new Persister(store, stats, now, settings);
  const { batcher, scheduledJob } = providedSupervisorMachines(persister, now, { retention: options.retention ?? false });
  const fleet = fleetMachine.provide({ actors: { batcher, scheduledJob } });
  const root = createActor(fleet, { input: { supervisors: { ...DEFAULT_SUPERVISORS(settings), ...options.supervisors } }, ...(clock ? { clock } : {}) });
  root.start();
  const refs = root.getSnapshot().context.supervisors;
  for (const name of ['configWriter', 'stateFlusher', 'logBatcher'] as const) persister.attachSupervisor(name, refs[name] as never);

  const settle = async () => {
    do {
      await persister.settle();
      await new Promise((r) => setImmediate(r));
    } while (persister.busy);
  };
  return {
    persister,
    stats,
    now,
    settle,
    async advance(ms, stepMs = 100) {
      if (!clock) throw new Error('advance() needs a stepped clock');
      const target = clock.now() + ms;
      await settle();
      while (clock.now() < target) {
        clock.advanceTo(Math.min(target, clock.now() + stepMs));
        await settle();
      }
    },
    supervisor(name) {
      const snap = (root.getSnapshot().context.supervisors[name] as unknown as { getSnapshot(): { value: unknown; context: Record<string, unknown> } }).getSnapshot();
      return { value: snap.value, context: snap.context };
    },
    stop: () => root.stop(),
  };
}

/** An `endpoints` row to hang tunnels on (the tables reference it). */
export async function createEndpointRow(sql: Sql, name: string): Promise<number> {
  const [row] = await sql<{ id: number }[]>`INSERT INTO endpoints (name, url, api_key_enc) VALUES (${name}, 'http://127.0.0.1:1/api/v1', 'unused') RETURNING id`;
  return row!.id;
}

/** What a tunnel actor hands `queueLog` for one line; `seq` makes the line (and its hash) unique. */
export function logLine(endpointId: number, instanceId: string, seq: number, at: number) {
  const time = new Date(at).toISOString().replace('Z', `${String(seq % 1_000_000).padStart(6, '0')}Z`);
  return {
    endpointId,
    instanceId,
    at,
    time,
    hash: `h${seq}`,
    ordinal: 0,
    raw: `2026-01-01 00:00:00.000 INFO  traffic line seq=${seq}`,
  };
}

/**
 * What a tunnel actor hands `queueState` after a checkpoint: cumulative counters `total` (tcprx only, the
 * other counters derived), traffic = total since the tunnel was first seen, the hour bucket of `at`.
 */
export class FakeTunnel {
  readonly context: TunnelContext;
  constructor(endpointId: number, instanceId: string) {
    this.context = newTunnelContext({ endpointId, instanceId });
    this.context.status = 'running';
  }
  /** One checkpoint that moved `bytes` (tcprx) at `at`. Returns the effect's params. */
  update(bytes: number, at: number) {
    const c = this.context;
    c.counters = { tcprx: c.counters.tcprx + bytes, tcptx: c.counters.tcptx + 2 * bytes, udprx: c.counters.udprx + 1, udptx: c.counters.udptx };
    c.traffic = { tcprx: c.traffic.tcprx + bytes, tcptx: c.traffic.tcptx + 2 * bytes, udprx: c.traffic.udprx + 1, udptx: c.traffic.udptx };
    const hour = String(hourOf(at));
    const bucket = c.hours[hour] ?? { tcprx: 0, tcptx: 0, udprx: 0, udptx: 0 };
    // A new record: a fresh context shares one frozen empty record (tunnel.machine.ts).
    c.hours = { ...c.hours, [hour]: { tcprx: bucket.tcprx + bytes, tcptx: bucket.tcptx + 2 * bytes, udprx: bucket.udprx + 1, udptx: bucket.udptx } };
    c.stateAt = at;
    return { context: { ...c, counters: { ...c.counters }, traffic: { ...c.traffic } }, hours: { [hour]: { ...c.hours[hour]! } } };
  }
}

export const storeOf = (sql: Sql, logDailyCap: number | null = null) => new Store({ sql }, { logDailyCap });
