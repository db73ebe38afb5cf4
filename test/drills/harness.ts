/**
 * Shared plumbing for the fault drills (`npm run drills`, vitest.drills.config.ts):
 *  - a fresh schema on the real PostgreSQL server for each drill (TEST_DATABASE_URL or DATABASE_URL);
 *  - the service's wiring (Store → Persister → Runtime with DEFAULT_SUPERVISORS), as src/service/service.ts
 *    does it, with endpoints registered through the real registry;
 *  - the seq= scan: every simulated log line carries ` seq=N`, so gaps and duplicates are found in tunnel_logs;
 *  - figures: one summary line per drill on stdout, and test-artifacts/drills.json for docs/reliability.md;
 *  - durations from the environment (short by default for CI, long per issue 8 when asked).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openDatabase, type Database, type Sql } from '../../src/db/connection.js';
import { EndpointsRepo } from '../../src/db/endpoints-repo.js';
import { migrate } from '../../src/db/migrate.js';
import { SecretBox } from '../../src/db/secret-box.js';
import { Store } from '../../src/db/store.js';
import { normaliseMasterUrl } from '../../src/ingest/master-url.js';
import { DEFAULT_PERSISTER_SETTINGS, Persister, type PersisterSettings } from '../../src/persistence/persister.js';
import { DEFAULT_SUPERVISORS, Runtime, type RuntimeOptions } from '../../src/runtime/runtime.js';
import { Stats } from '../../src/runtime/stats.js';
import type { SupervisorInputs } from '../../actors/fleet.machine.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const ARTIFACTS_DIR = join(ROOT, 'test-artifacts');
export const FIGURES_FILE = join(ARTIFACTS_DIR, 'drills.json');

// ---- parameters ---------------------------------------------------------------------------------------

/** A duration or count from the environment (`DRILL_…`), so the long versions of issue 8 are one variable away. */
export function param(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number, got "${raw}"`);
  return n;
}

/** `DRILL_LONG=1` switches every drill to the durations of issue 8. */
export const LONG = process.env['DRILL_LONG'] === '1';

// ---- database -------------------------------------------------------------------------------------------

export function serverUrl(): string {
  const url = process.env['TEST_DATABASE_URL'] || process.env['DATABASE_URL'];
  if (!url) throw new Error('the drills run against a real PostgreSQL server: set TEST_DATABASE_URL (or DATABASE_URL)');
  return url;
}

export interface DrillSchema {
  url: string;
  schema: string;
  /** A direct connection (not through any proxy) for setup, checks and locks. */
  admin: Database;
  close(): Promise<void>;
}

/** A fresh, migrated schema `d_<drill>_<random>`, dropped by `close()`. */
export async function openDrillSchema(drill: string): Promise<DrillSchema> {
  const url = serverUrl();
  const schema = `d_${drill.replace(/[^a-z0-9]/g, '')}_${randomBytes(4).toString('hex')}`;
  const admin = await openDatabase({ url, schema, max: 4 });
  await migrate(admin.sql);
  return {
    url,
    schema,
    admin,
    async close() {
      try {
        await admin.sql.unsafe(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      } finally {
        await admin.close();
      }
    },
  };
}

// ---- the service's wiring -----------------------------------------------------------------------------

export interface PipelineOptions {
  /** Where the pipeline's own connections go (the schema's server, or a proxy in front of it). */
  url?: string;
  schema?: string;
  /** Without `url`: the embedded database (PGlite in its worker) in this folder. */
  dataDir?: string;
  persister?: Partial<PersisterSettings>;
  endpointSettings?: RuntimeOptions['endpointSettings'];
  supervisors?: Partial<SupervisorInputs>;
  now?: () => number;
  /** Wrap the store (instrumentation: in-flight counts, batch sizes). */
  wrapStore?: (store: Store) => Store;
  logDailyCap?: number;
}

export interface Pipeline {
  db: Database;
  store: Store;
  stats: Stats;
  persister: Persister;
  runtime: Runtime;
  repo: EndpointsRepo;
  /** Registers an endpoint (registry row with its key sealed) and starts watching it. */
  addEndpoint(name: string, url: string, apiKey: string, options?: { insecureTls?: boolean }): Promise<number>;
  /** Stops reading, drains the queues, closes the database. */
  stop(): Promise<void>;
}

export async function startPipeline(options: PipelineOptions): Promise<Pipeline> {
  const db = options.url
    ? await openDatabase({ url: options.url, ...(options.schema ? { schema: options.schema } : {}), max: 4 })
    : await openDatabase({ dataDir: options.dataDir! });
  if (!options.url) await migrate(db.sql);
  const now = options.now ?? Date.now;
  const baseStore = new Store(db, { logDailyCap: options.logDailyCap ?? 100_000_000 });
  const store = options.wrapStore ? options.wrapStore(baseStore) : baseStore;
  const stats = new Stats();
  const settings: PersisterSettings = { ...DEFAULT_PERSISTER_SETTINGS, ...options.persister };
  const persister = new Persister(store, stats, now, settings);
  const runtime = new Runtime({
    now,
    stats,
    persister,
    endpointSettings: options.endpointSettings,
    supervisors: {
      ...DEFAULT_SUPERVISORS({ logBatchSize: settings.logBatchSize, logFlushMs: settings.logFlushMs, stateFlushMs: settings.stateFlushMs }),
      ...options.supervisors,
    },
  });
  runtime.start();
  const repo = new EndpointsRepo(db, new SecretBox(randomBytes(32)));
  let stopped = false;
  return {
    db,
    store,
    stats,
    persister,
    runtime,
    repo,
    async addEndpoint(name, url, apiKey, endpointOptions = {}) {
      const e = await repo.create({ name, url, apiKey, insecureTls: endpointOptions.insecureTls ?? false });
      runtime.addEndpoint({ id: e.id, name, baseUrl: normaliseMasterUrl(url), apiKey, insecureTls: e.insecureTls, enabled: true });
      return e.id;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      try {
        await runtime.stop();
      } finally {
        await db.close();
      }
    },
  };
}

// ---- waiting ------------------------------------------------------------------------------------------

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it returns true; fails with `what` after `timeoutMs`. Returns the time it took. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 50): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await check()) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** The state value of an endpoint actor as a dotted path (`enabled.online.live.streaming`). */
export function endpointStatePath(runtime: Runtime, id: number): string {
  const state = runtime.endpointState(id);
  if (!state) return 'absent';
  const walk = (v: unknown): string =>
    typeof v === 'string' ? v : Object.entries(v as Record<string, unknown>).map(([k, sub]) => `${k}.${walk(sub)}`).join(',');
  return walk(state.value);
}

/** True when every batching supervisor is idle and every queue empty: everything queued is committed. */
export function persistenceSettled(p: Pipeline): boolean {
  if (p.persister.pendingRows !== 0) return false;
  const supervisors = p.runtime.fleet.getSnapshot().context.supervisors as Record<string, { getSnapshot(): { value: unknown } } | undefined>;
  return ['configWriter', 'stateFlusher', 'logBatcher'].every((name) => supervisors[name]?.getSnapshot().value === 'idle');
}

export const isLive = (runtime: Runtime, id: number): boolean => endpointStatePath(runtime, id).includes('.live.');

// ---- the seq= scan ------------------------------------------------------------------------------------

export interface SequenceScan {
  /** Rows in tunnel_logs for the endpoint. */
  rows: number;
  /** Per instance: lowest and highest seq stored. */
  perInstance: Record<string, { min: number; max: number; count: number }>;
  /** Same seq stored twice (a duplicate row). */
  duplicates: number;
  /** Seqs missing between the lowest stored and `expectedLast` (or the highest stored). */
  missing: number;
  /** Rows without a seq= (not simulator lines). */
  unstamped: number;
}

/**
 * Scans tunnel_logs of one endpoint for gaps and duplicates. `expectedLast(instanceId)` is the last seq the
 * simulator stamped (so lines lost at the end count as missing too); the first expected seq is the lowest
 * stored, because lines emitted before the first connection were never on the wire.
 */
export async function scanSequences(sql: Sql, endpointId: number, expectedLast?: (instanceId: string) => number): Promise<SequenceScan> {
  const rows = await sql<{ instance_id: string; message: string }[]>`
    SELECT instance_id, message FROM tunnel_logs WHERE endpoint_id = ${endpointId}`;
  const seen = new Map<string, Map<number, number>>();
  let unstamped = 0;
  for (const row of rows) {
    const match = / seq=(\d+)$/.exec(row.message);
    if (!match) {
      unstamped++;
      continue;
    }
    const seq = Number(match[1]);
    const perInstance = seen.get(row.instance_id) ?? new Map<number, number>();
    perInstance.set(seq, (perInstance.get(seq) ?? 0) + 1);
    seen.set(row.instance_id, perInstance);
  }
  let duplicates = 0;
  let missing = 0;
  const perInstance: SequenceScan['perInstance'] = {};
  for (const [id, seqs] of seen) {
    const keys = [...seqs.keys()];
    const min = Math.min(...keys);
    const max = Math.max(...keys, expectedLast ? expectedLast(id) : 0);
    for (const n of seqs.values()) duplicates += n - 1;
    for (let s = min; s <= max; s++) if (!seqs.has(s)) missing++;
    perInstance[id] = { min, max, count: keys.length };
  }
  return { rows: rows.length, perInstance, duplicates, missing, unstamped };
}

// ---- process figures ----------------------------------------------------------------------------------

export const rssMb = (): number => Math.round((process.memoryUsage().rss / 1048576) * 10) / 10;

/** Heap plus buffers still reachable after a full collection, in MB (needs --expose-gc, set by the drills config). */
export function retainedMb(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) gc();
  const m = process.memoryUsage();
  return Math.round(((m.heapUsed + m.arrayBuffers) / 1048576) * 10) / 10;
}

export function openFds(): number {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return -1;
  }
}

/** Samples the event loop's lateness with a 10 ms timer; `stop()` returns the worst lag seen. */
export function watchEventLoop(intervalMs = 10): { stop(): number } {
  let worst = 0;
  let expected = performance.now() + intervalMs;
  const timer = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - expected);
    expected = now + intervalMs;
  }, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      return Math.round(worst);
    },
  };
}

/** Counts unhandled rejections and uncaught exceptions while a drill runs. */
export function watchUnhandled(): { count(): number; stop(): void } {
  let n = 0;
  const onIt = (): void => {
    n++;
  };
  process.on('unhandledRejection', onIt);
  process.on('uncaughtException', onIt);
  return {
    count: () => n,
    stop() {
      process.off('unhandledRejection', onIt);
      process.off('uncaughtException', onIt);
    },
  };
}

// ---- figures ------------------------------------------------------------------------------------------

export type Figures = Record<string, number | string | boolean | null>;

/** Prints the drill's summary line and merges its figures into test-artifacts/drills.json (long runs under their own key). */
export function reportFigures(drill: string, figures: Figures): void {
  const line = Object.entries(figures)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  console.log(`[drill ${drill}] ${line}`);
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  let all: Record<string, unknown> = {};
  try {
    all = JSON.parse(readFileSync(FIGURES_FILE, 'utf8')) as Record<string, unknown>;
  } catch {
    all = {};
  }
  all[LONG ? `${drill} (long)` : drill] = { ...figures, long: LONG, measuredAt: new Date().toISOString() };
  writeFileSync(FIGURES_FILE, JSON.stringify(all, null, 2) + '\n');
}
