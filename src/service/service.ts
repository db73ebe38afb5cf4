/**
 * The service: the one entry point that opens the database, migrates, restores the actors, connects to
 * every enabled endpoint, listens for HTTP, and shuts down cleanly (stop reading, flush, exit 0).
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { mkdirSync } from 'node:fs';
import { pino, type Logger } from 'pino';
import { embeddedDataDir, isLoopback, readConfigFile, secretKeyFile, spillDir, type Config } from '../config.js';
import { openDatabase, type Database } from '../db/connection.js';
import { EndpointsRepo, type Endpoint } from '../db/endpoints-repo.js';
import { migrate } from '../db/migrate.js';
import { SecretBox } from '../db/secret-box.js';
import { Store } from '../db/store.js';
import { app } from '../http/app.js';
import { openJournal, type JournalWriter } from '../ingest/journal.js';
import { normaliseMasterUrl } from '../ingest/master-url.js';
import { DEFAULT_PERSISTER_SETTINGS, Persister } from '../persistence/persister.js';
import { tunnelContextFromStore } from '../persistence/restore.js';
import { DEFAULT_SUPERVISORS, Runtime, type EndpointDefinition } from '../runtime/runtime.js';
import { Stats } from '../runtime/stats.js';
import { startDemoSimulator, type DemoSimulator } from '../sim/demo.js';

export interface Service {
  runtime: Runtime;
  http: FastifyInstance;
  address: string;
  stop(): Promise<void>;
}

async function definitionOf(repo: EndpointsRepo, e: Endpoint): Promise<EndpointDefinition> {
  return { id: e.id, name: e.name, baseUrl: normaliseMasterUrl(e.url), apiKey: await repo.revealApiKey(e.id), insecureTls: e.insecureTls, enabled: e.enabled };
}

export async function openServiceDatabase(config: Config): Promise<Database> {
  mkdirSync(config.dataDir, { recursive: true });
  const db = config.databaseUrl ? await openDatabase({ url: config.databaseUrl }) : await openDatabase({ dataDir: embeddedDataDir(config) });
  await migrate(db.sql);
  return db;
}

export async function startService(config: Config, log: Logger = pino({ level: config.logLevel })): Promise<Service> {
  if (!isLoopback(config.host) && !config.accessToken) {
    throw new Error(`refusing to listen on ${config.host} without an access token (set TUNNELPULSE_TOKEN)`);
  }
  const db = await openServiceDatabase(config);
  log.info({ database: db.location }, 'database ready');
  const secrets = SecretBox.fromConfig({ key: config.secretKey ?? undefined, keyFile: secretKeyFile(config) });
  const repo = new EndpointsRepo(db, secrets);
  const store = new Store(db, { logDailyCap: config.logDailyCap });

  // Seed from the config file: add what is missing, update what changed (by name).
  if (config.configFile) {
    for (const seed of readConfigFile(config.configFile)) {
      const existing = await repo.getByName(seed.name);
      if (!existing) await repo.create(seed);
      else await repo.update(existing.id, { url: seed.url, apiKey: seed.apiKey, insecureTls: seed.insecureTls });
    }
  }

  let demo: DemoSimulator | null = null;
  if (config.demo) {
    demo = await startDemoSimulator();
    const existing = await repo.getByName('demo');
    if (existing) await repo.update(existing.id, { url: demo.apiBase, apiKey: demo.apiKey });
    else await repo.create({ name: 'demo', url: demo.apiBase, apiKey: demo.apiKey });
    log.info({ url: demo.apiBase }, 'demo NodePass simulator running');
  }

  const journal: JournalWriter | undefined = config.journalPath ? await openJournal({ path: config.journalPath }) : undefined;
  const stats = new Stats();
  const persister = new Persister(
    store,
    stats,
    Date.now,
    { ...DEFAULT_PERSISTER_SETTINGS, logBatchSize: config.logBatchSize, logFlushMs: config.logFlushMs, stateFlushMs: config.stateFlushMs, memoryCapRows: config.memoryCapRows, spillDir: spillDir(config), logsRetentionDays: config.logsRetentionDays, trafficRetentionDays: config.trafficRetentionDays },
  );
  const runtime = new Runtime({
    stats,
    persister,
    journal,
    supervisors: DEFAULT_SUPERVISORS({ logBatchSize: config.logBatchSize, logFlushMs: config.logFlushMs, stateFlushMs: config.stateFlushMs }),
  });
  runtime.start();

  let ready = false;
  for (const e of await repo.list()) {
    const stored = await store.loadTunnels(e.id);
    runtime.addEndpoint(await definitionOf(repo, e), { tunnels: stored.map(tunnelContextFromStore) });
  }
  ready = true;

  const http = Fastify({ logger: false });
  await http.register(app, { runtime, accessToken: config.accessToken, ready: async () => ready && db.fatalError === null });
  const address = await http.listen({ host: config.host, port: config.port });
  log.info({ address, endpoints: runtime.endpoints().length }, 'TunnelPulse listening');

  return {
    runtime,
    http,
    address,
    async stop() {
      await http.close();
      await runtime.stop();
      await journal?.close();
      await demo?.close();
      await db.close();
    },
  };
}
