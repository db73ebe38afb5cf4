/**
 * The service: the one entry point that opens the database, migrates, restores the actors, connects to
 * every enabled endpoint, listens for HTTP, and shuts down cleanly (stop reading, flush, exit 0).
 */
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { mkdirSync } from 'node:fs';
import { pino, type Logger } from 'pino';
import { embeddedDataDir, isLoopback, readConfigFile, secretKeyFile, spillDir, type Config } from '../config.js';
import { openDatabase, type Database } from '../db/connection.js';
import { EndpointsRepo } from '../db/endpoints-repo.js';
import { migrate } from '../db/migrate.js';
import { SecretBox } from '../db/secret-box.js';
import { Store } from '../db/store.js';
import { app } from '../http/app.js';
import { openJournal, type JournalWriter } from '../ingest/journal.js';
import { DEFAULT_PERSISTER_SETTINGS, Persister } from '../persistence/persister.js';
import { DEFAULT_SUPERVISORS, Runtime } from '../runtime/runtime.js';
import { Stats } from '../runtime/stats.js';
import { EndpointRegistry } from './registry.js';
import { LeaseKeeper } from './lease-keeper.js';
import { LeaseRepo } from '../db/leases.js';
import { startDemoSimulator, type DemoSimulator } from '../sim/demo.js';

export interface Service {
  runtime: Runtime;
  http: FastifyInstance;
  registry: EndpointRegistry;
  /** With leases on (`config.leases`): the keeper dividing the endpoints with the other processes. */
  leases: LeaseKeeper | null;
  address: string;
  stop(): Promise<void>;
}

export async function openServiceDatabase(config: Config): Promise<Database> {
  mkdirSync(config.dataDir, { recursive: true });
  const db = config.databaseUrl
    ? await openDatabase({ url: config.databaseUrl, ...(config.databaseSchema ? { schema: config.databaseSchema } : {}) })
    : await openDatabase({ dataDir: embeddedDataDir(config) });
  await migrate(db.sql);
  return db;
}

/** Readiness: the connection is healthy and answers a trivial query within 2 s. */
async function databaseReachable(db: Database): Promise<boolean> {
  if (db.fatalError !== null) return false;
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('timeout')), 2_000);
    });
    await Promise.race([db.sql`SELECT 1`, timeout]);
    return true;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
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

  const journal: JournalWriter | undefined = config.journalPath ? await openJournal({ path: config.journalPath }) : undefined;
  const stats = new Stats();
  const persister = new Persister(
    store,
    stats,
    Date.now,
    { ...DEFAULT_PERSISTER_SETTINGS, logBatchSize: config.logBatchSize, logFlushMs: config.logFlushMs, stateFlushMs: config.stateFlushMs, memoryCapRows: config.memoryCapRows, closeTimeoutMs: config.shutdownFlushMs, spillDir: spillDir(config), logsRetentionDays: config.logsRetentionDays, trafficRetentionDays: config.trafficRetentionDays },
  );
  const runtime = new Runtime({
    stats,
    persister,
    journal,
    recentEventsPerEndpoint: config.eventRingSize,
    onMasterInfo: (endpointId, info) => {
      repo.setMasterInfo(endpointId, info).catch((error: unknown) => log.warn({ endpointId, error: String(error) }, 'master info not stored'));
    },
    endpointSettings: {
      probeIntervalMs: config.probeIntervalMs,
      reconcileIntervalMs: config.reconcileIntervalMs,
      infoRefreshMs: config.infoRefreshMs,
      backoffCapMs: config.backoffCapMs,
    },
    supervisors: DEFAULT_SUPERVISORS({ logBatchSize: config.logBatchSize, logFlushMs: config.logFlushMs, stateFlushMs: config.stateFlushMs }),
  });
  runtime.start();
  // Leases on: actors only for the endpoints this process holds (docs/database.md, "Several processes").
  const leaseRepo = config.leases ? new LeaseRepo(db, config.leaseOwner) : null;
  const registry = new EndpointRegistry({
    repo,
    store,
    runtime,
    flushPending: () => persister.drain(),
    leased: config.leases,
    ...(leaseRepo ? { leaseHolder: (id: number) => leaseRepo.holder(id), leaseReleaseWaitMs: config.leaseTtlMs + config.leaseRenewMs } : {}),
  });
  const leases = leaseRepo
    ? new LeaseKeeper({
        leases: leaseRepo,
        registry,
        flushPending: () => persister.drain(),
        ttlMs: config.leaseTtlMs,
        renewEveryMs: config.leaseRenewMs,
        log: log.child({ component: 'leases' }),
        onError: () => stats.add('dbErrors'),
      })
    : null;
  if (leases) registry.endpointsChanged = () => leases.poke();

  // Seed from the config file: add what is missing, update what changed (by name).
  if (config.configFile) await registry.seed(readConfigFile(config.configFile));
  let demo: DemoSimulator | null = null;
  if (config.demo) {
    demo = await startDemoSimulator();
    await registry.seed([{ name: 'demo', url: demo.apiBase, apiKey: demo.apiKey }]);
    log.info({ url: demo.apiBase }, 'demo NodePass simulator running');
  }

  let restored = false;
  const restore = await registry.restoreAll();
  if (restore.unreadableKeys.length > 0) {
    log.warn({ endpoints: restore.unreadableKeys }, 'API keys sealed with another secret key: these endpoints stay in authFailed until their key is entered again');
  }
  if (leases) {
    await leases.start();
    log.info({ owner: leases.owner, held: leases.status().held.length, share: leases.status().share }, 'endpoint leases on');
  }
  restored = true;

  // The service's logger, without per-request lines (they would carry URLs, and `?token=` on the SSE routes).
  let databaseCheck: Promise<boolean> | null = null;
  const http = Fastify({ loggerInstance: log.child({ component: 'http' }) as FastifyBaseLogger, disableRequestLogging: true });
  await http.register(app, {
    runtime,
    registry,
    store,
    accessToken: config.accessToken,
    corsOrigins: config.corsOrigins,
    readiness: async () => {
      // One check at a time: probes arriving while the database hangs share it instead of piling up queries.
      databaseCheck ??= databaseReachable(db).finally(() => (databaseCheck = null));
      return { database: await databaseCheck, actorsRestored: restored };
    },
  });
  const address = await http.listen({ host: config.host, port: config.port });
  log.info({ address, endpoints: runtime.endpoints().length }, 'TunnelPulse listening');

  return {
    runtime,
    http,
    registry,
    leases,
    address,
    async stop() {
      try {
        await http.close();
        // Leases first: stop their actors, write what they queued, release, so the others take over at once.
        // Bounded by the lease TTL: past it the leases are gone anyway, and the runtime's flush below spills what is left.
        await leases?.stop(Math.min(config.shutdownFlushMs, config.leaseTtlMs));
        await runtime.stop();
      } finally {
        // Even when the flush failed (its leftovers are in the spill files), close the journal and the database
        // cleanly: the embedded one checkpoints and releases its folder lock.
        await journal?.close();
        await demo?.close();
        await db.close();
      }
    },
  };
}
