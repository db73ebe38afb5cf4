/**
 * The ingest side of the service, wired as `src/service/service.ts` wires it — the real Runtime, Persister,
 * Store and EndpointRegistry on a real database (test/support/database.ts) — minus HTTP, so an E2E test can
 * point it at the simulator over real sockets and look at the actors and the rows.
 */
import { randomBytes } from 'node:crypto';
import type { EndpointSettings } from '../../../actors/endpoint.machine.js';
import type { Counters } from '../../../actors/model.js';
import { EndpointsRepo, type Endpoint } from '../../../src/db/endpoints-repo.js';
import { SecretBox } from '../../../src/db/secret-box.js';
import { Store } from '../../../src/db/store.js';
import { DEFAULT_PERSISTER_SETTINGS, Persister } from '../../../src/persistence/persister.js';
import { DEFAULT_SUPERVISORS, Runtime } from '../../../src/runtime/runtime.js';
import { Stats } from '../../../src/runtime/stats.js';
import { EndpointRegistry } from '../../../src/service/registry.js';
import type { HostedMaster } from '../../../src/sim/simulator.js';
import type { TestDatabase } from '../../support/database.js';

/** Short timings so liveness and backoff show within a test; the rules are those of production. */
export const FAST_ENDPOINT_SETTINGS: Partial<EndpointSettings> = {
  snapshotQuietMs: 300,
  probeIntervalMs: 1_000,
  probeFailureLimit: 2,
  reconcileSettleMs: 400,
  reconcileIntervalMs: 60_000,
  infoRefreshMs: 60_000,
  healthyAfterMs: 5_000,
  backoffBaseMs: 100,
  backoffCapMs: 1_000,
};

export interface Ingest {
  runtime: Runtime;
  repo: EndpointsRepo;
  registry: EndpointRegistry;
  store: Store;
  persister: Persister;
  stats: Stats;
  add(name: string, url: string, apiKey: string, extra?: { insecureTls?: boolean }): Promise<Endpoint>;
  /** The endpoint's liveness state (`streaming`, `probing`, `confirming`), or its top state (`backoff`, `authFailed`…). */
  stateOf(endpointId: number): string;
  stop(): Promise<void>;
}

export function stateOf(runtime: Runtime, endpointId: number): string {
  const value = runtime.endpointState(endpointId)?.value as
    | { enabled?: string | { online?: string | { live?: { liveness?: string } } } }
    | 'disabled'
    | undefined;
  if (value === undefined) return 'absent';
  if (typeof value === 'string') return value;
  const enabled = value.enabled;
  if (typeof enabled === 'string') return enabled;
  const online = enabled?.online;
  if (typeof online === 'string') return online;
  return online?.live?.liveness ?? 'unknown';
}

/** One key for the whole test file, so a second `startIngest` (a restart) reads the keys the first sealed. */
const SECRET_KEY = randomBytes(32);

export async function startIngest(
  testDb: TestDatabase,
  settings: Partial<EndpointSettings> = FAST_ENDPOINT_SETTINGS,
  options: { masterRequestTimeoutMs?: number } = {},
): Promise<Ingest> {
  const repo = new EndpointsRepo(testDb.db, new SecretBox(SECRET_KEY));
  const store = new Store(testDb.db, { logDailyCap: 100_000 });
  const stats = new Stats();
  const flush = { logBatchSize: 100, logFlushMs: 200, stateFlushMs: 200 };
  const persister = new Persister(store, stats, Date.now, { ...DEFAULT_PERSISTER_SETTINGS, ...flush });
  const runtime = new Runtime({
    stats,
    persister,
    endpointSettings: settings,
    supervisors: DEFAULT_SUPERVISORS(flush),
    onMasterInfo: (endpointId, info) => void repo.setMasterInfo(endpointId, info).catch(() => undefined),
    masterRequestTimeoutMs: options.masterRequestTimeoutMs ?? 2_000,
  });
  runtime.start();
  const registry = new EndpointRegistry({ repo, store, runtime, flushPending: () => persister.drain() });
  let stopped = false;
  return {
    runtime,
    repo,
    registry,
    store,
    persister,
    stats,
    add: (name, url, apiKey, extra = {}) => registry.create({ name, url, apiKey, insecureTls: extra.insecureTls ?? false }),
    stateOf: (id) => stateOf(runtime, id),
    async stop() {
      if (stopped) return;
      stopped = true;
      await runtime.stop();
    },
  };
}

/** Polls `condition` until it holds or `timeoutMs` passes; the failure names what was awaited and the last value. */
export async function waitFor<T>(what: string, condition: () => T | Promise<T>, timeoutMs = 10_000, everyMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  for (;;) {
    last = await condition();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

export const sumCounters = (list: readonly Counters[]): Counters =>
  list.reduce((a, c) => ({ tcprx: a.tcprx + c.tcprx, tcptx: a.tcptx + c.tcptx, udprx: a.udprx + c.udprx, udptx: a.udptx + c.udptx }), {
    tcprx: 0,
    tcptx: 0,
    udprx: 0,
    udptx: 0,
  });

const COUNTERS = ['tcprx', 'tcptx', 'udprx', 'udptx'] as const;

/** Whether every tunnel of the endpoint holds exactly the master's status and counters for that instance. */
export function matchesMaster(ingest: Ingest, endpointId: number, master: HostedMaster): boolean {
  const ids = master.instanceIds();
  const tunnels = ingest.runtime.tunnels(endpointId).filter((t) => !t.deleted);
  if (tunnels.length !== ids.length) return false;
  return ids.every((id) => {
    const ours = ingest.runtime.tunnel(endpointId, id);
    const theirs = master.instance(id)!;
    return ours !== null && ours.status === theirs.status && COUNTERS.every((k) => ours.counters[k] === theirs[k]);
  });
}
