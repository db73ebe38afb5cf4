/**
 * `replay --db`: the same replay as in memory (same actors, same stepped clock, same report), with the
 * persistence supervisors wired in, writing into a database:
 *  - the database is migrated first; each replayed endpoint is an `endpoints` row found or created by name
 *    (disabled, so a service sharing the database never tries to connect to it);
 *  - the config writer, state flusher, log batcher and hourly rollup run on the replay's clock: after each
 *    input item the replay waits for any write a supervisor started, so batches and timers happen at the
 *    recording's times, as they would have live. Retention does not run (it would prune by the recording's clock);
 *  - at the end everything queued is drained and every hour the replay touched is rolled up (closed if the
 *    replay's clock has passed it; endpoint and global totals recomputed either way).
 * Every write is replay-safe, so replaying the same input into the same database again changes nothing.
 */
import { endpointMachine } from '../../actors/endpoint.machine.js';
import { fleetMachine } from '../../actors/fleet.machine.js';
import { tunnelMachine } from '../../actors/tunnel.machine.js';
import type { Database } from '../db/connection.js';
import { EndpointsRepo } from '../db/endpoints-repo.js';
import { migrate } from '../db/migrate.js';
import type { SecretBox } from '../db/secret-box.js';
import { Store } from '../db/store.js';
import { DEFAULT_PERSISTER_SETTINGS, Persister, type PersisterSettings } from '../persistence/persister.js';
import { providedSupervisorMachines } from '../persistence/supervisors.js';
import { DEFAULT_SUPERVISORS } from '../runtime/runtime.js';
import { Stats } from '../runtime/stats.js';
import { loadStreams, startReplay, type ReplayOptions, type Stream } from './replay.js';
import type { ReplayReport } from './report.js';

export interface DatabaseReplayOptions extends ReplayOptions {
  db: Pick<Database, 'sql'>;
  /** Seals the (empty) API keys of the endpoint rows; use the service's key so the service can read them. */
  secrets: SecretBox;
  /** Batch sizes and intervals (defaults: the service's). No spill: a replay holds its queues in memory. */
  settings?: Partial<Omit<PersisterSettings, 'spillDir'>>;
  /** Per-instance daily log cap (default 10,000, as in the service); null: none. */
  logDailyCap?: number | null;
  /** Skip the migration (the caller migrated already). */
  skipMigrate?: boolean;
}

export interface DatabaseReplayResult {
  report: ReplayReport;
  /** The `endpoints` row of each replayed endpoint, in report order. */
  endpointIds: number[];
  /** The persistence statistics of the run (statements, rows, errors, log lines cut by the cap). */
  stats: ReturnType<Stats['snapshot']>;
}

/**
 * The URL of endpoint rows created by a replay: a valid master URL (the service normalises every row's URL at
 * start-up) under the reserved `.invalid` domain, so it can never reach anything even if someone enables it.
 */
export const REPLAY_ENDPOINT_URL = 'http://replay.invalid/api/v1';

async function endpointIdsFor(repo: EndpointsRepo, streams: Stream[]): Promise<number[]> {
  const ids: number[] = [];
  for (const s of streams) {
    const existing = await repo.getByName(s.name);
    ids.push(existing ? existing.id : (await repo.create({ name: s.name, url: REPLAY_ENDPOINT_URL, apiKey: '', enabled: false })).id);
  }
  return ids;
}

export async function replayStreamsIntoDatabase(streams: Stream[], options: DatabaseReplayOptions): Promise<DatabaseReplayResult> {
  if (!options.skipMigrate) await migrate(options.db.sql);
  const endpointIds = await endpointIdsFor(new EndpointsRepo(options.db, options.secrets), streams);
  const store = new Store(options.db, { logDailyCap: options.logDailyCap === undefined ? 10_000 : options.logDailyCap });
  const stats = new Stats();
  const settings: PersisterSettings = { ...DEFAULT_PERSISTER_SETTINGS, ...options.settings, spillDir: undefined };

  // The clock exists only once the run starts; the persister reads it through this indirection.
  let now = (): number => 0;
  const persister = new Persister(store, stats, () => now(), settings);
  const { batcher, scheduledJob } = providedSupervisorMachines(persister, () => now(), { retention: false });
  const run = startReplay(streams, {
    endpointIds,
    fleet: (endpoint: typeof endpointMachine) =>
      fleetMachine.provide({
        actors: {
          endpoint: endpoint.provide({
            actors: { tunnel: tunnelMachine.provide({ actions: persister.tunnelEffects }) },
            actions: { persistOffline: persister.endpointEffects.persistOffline },
          }),
          batcher,
          scheduledJob,
        },
      }),
    supervisors: DEFAULT_SUPERVISORS(settings),
  });
  now = () => run.clock.now();
  const refs = run.supervisorRefs();
  for (const name of ['configWriter', 'stateFlusher', 'logBatcher'] as const) {
    const ref = refs[name];
    if (ref) persister.attachSupervisor(name, ref as never);
  }

  try {
    // Let the scheduled jobs compute their first wait (a promise) before the clock moves.
    await settle(persister);
    while (run.step()) {
      if (persister.busy) await settle(persister);
    }
    await settle(persister);
    await persister.drain();
    const hours = await store.trafficHours(endpointIds);
    if (hours.length > 0) {
      const result = await store.rollupHours(hours, now());
      stats.wrote('hourlyRollup', result.statements, result.rows);
    }
    return { report: run.report(), endpointIds, stats: stats.snapshot() };
  } finally {
    run.stop();
  }
}

/** Waits for supervisor writes under way, then lets the machines take their results (promise callbacks). */
async function settle(persister: Persister): Promise<void> {
  do {
    await persister.settle();
    await new Promise((resolve) => setImmediate(resolve));
  } while (persister.busy);
}

export function replayFilesIntoDatabase(files: string[], options: DatabaseReplayOptions): Promise<DatabaseReplayResult> {
  return replayStreamsIntoDatabase(loadStreams(files, options.endpoint), options);
}
