/**
 * The HTTP app on a real Runtime, Persister, Store and database, wired as src/service/service.ts wires them, for
 * `app.inject` tests (no listening socket unless `listen()` is called).
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { randomBytes } from 'node:crypto';
import { EndpointsRepo } from '../../src/db/endpoints-repo.js';
import { SecretBox } from '../../src/db/secret-box.js';
import { Store } from '../../src/db/store.js';
import { app, type AppOptions } from '../../src/http/app.js';
import { DEFAULT_PERSISTER_SETTINGS, Persister } from '../../src/persistence/persister.js';
import { DEFAULT_SUPERVISORS, Runtime } from '../../src/runtime/runtime.js';
import { Stats } from '../../src/runtime/stats.js';
import { EndpointRegistry } from '../../src/service/registry.js';
import type { TestDatabase } from '../support/database.js';

/** One key per test process, so a second harness in a file opens the keys the first one sealed. */
const SECRETS = new SecretBox(randomBytes(32));

export interface Harness {
  http: FastifyInstance;
  runtime: Runtime;
  registry: EndpointRegistry;
  store: Store;
  persister: Persister;
  repo: EndpointsRepo;
  close(): Promise<void>;
}

export async function startHarness(testDb: TestDatabase, options: Partial<Omit<AppOptions, 'runtime' | 'registry' | 'store'>> = {}): Promise<Harness> {
  const store = new Store(testDb.db, { logDailyCap: 10_000 });
  const repo = new EndpointsRepo(testDb.db, SECRETS);
  const stats = new Stats();
  const settings = { logBatchSize: 10, logFlushMs: 100, stateFlushMs: 100 };
  const persister = new Persister(store, stats, Date.now, { ...DEFAULT_PERSISTER_SETTINGS, ...settings });
  const runtime = new Runtime({
    stats,
    persister,
    supervisors: DEFAULT_SUPERVISORS(settings),
    // Fast reconnects and probes keep the tests short; the production defaults are in endpoint.machine.ts.
    endpointSettings: { snapshotQuietMs: 200, backoffBaseMs: 100, backoffCapMs: 500 },
  });
  runtime.start();
  const registry = new EndpointRegistry({ repo, store, runtime, flushPending: () => persister.drain() });
  await registry.restoreAll();
  const http = Fastify({ logger: false });
  await http.register(app, {
    runtime,
    registry,
    store,
    accessToken: null,
    readiness: async () => ({ database: true, actorsRestored: true }),
    ...options,
  });
  await http.ready();
  return {
    http,
    runtime,
    registry,
    store,
    persister,
    repo,
    async close() {
      await http.close();
      await runtime.stop();
    },
  };
}

/** Polls until `check` returns a value that is not undefined/false, or fails after `timeoutMs`. */
export async function until<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
