/**
 * Opens the database the service runs on: a PostgreSQL server when given a URL, otherwise the embedded default
 * (PGlite). Both are reached through postgres.js, so every query in the service has one code path.
 *
 * Embedded: PGlite blocks the thread that hosts it for the whole of each query, so it runs in a worker thread
 * (`embedded-worker.mjs`) behind `PGLiteSocketServer` on a unix socket, and postgres.js on the main thread connects
 * with `{ path }`. The main event loop, which reads every SSE stream, never waits on the database engine.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import postgres from 'postgres';
import { acquireDataFolderLock, type DataFolderLock } from './data-folder-lock.js';
import { EmbeddedDatabaseError } from './errors.js';
import { reconnectBackoff } from './reconnect-backoff.js';

export const DEFAULT_EMBEDDED_DATA_DIR = './data/pglite';

export type Sql = postgres.Sql;
export type TransactionSql = postgres.TransactionSql;

export interface Database {
  readonly sql: Sql;
  readonly kind: 'server' | 'embedded';
  /** Where the data lives, safe to log: the server URL without its password, the data folder, or `memory`. */
  readonly location: string;
  /** Set when the embedded worker died; queries fail from then on. Always null for a server. */
  readonly fatalError: Error | null;
  /** Ends every connection; for the embedded database also stops the worker and closes PGlite (flushing data). */
  close(): Promise<void>;
}

export interface DatabaseOptions {
  /** `postgres://…`: use that server. Absent: the embedded database. */
  url?: string;
  /** Server only: every connection's `search_path` is this schema, created if missing. */
  schema?: string;
  /** Server only: connection pool size (default 10). The embedded database always uses 1, see below. */
  max?: number;
  /** Embedded only: PGlite's data folder, persisted across restarts. Default `./data/pglite`. */
  dataDir?: string;
  /** Embedded only: keep everything in memory (tests, throwaway runs); `dataDir` is ignored. */
  inMemory?: boolean;
  /** Embedded only: how long PGlite may take to start (initdb on a fresh folder takes a few seconds). */
  startTimeoutMs?: number;
  /** Embedded only: called once if the worker hosting PGlite dies after start-up. */
  onFatalError?: (error: Error) => void;
  /** Embedded only, for tests that inject worker failures: the worker script to run instead of ours. */
  embeddedWorkerUrl?: URL;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Options every connection shares.
 * - int8 (bigserial ids, byte counters, count(*)) parses to a JS number instead of postgres.js' default string:
 *   the domain uses numbers throughout, and byte totals stay exact below 2^53 (9 PB).
 * - Notices ("relation already exists, skipping") are not errors and would only add noise.
 */
const sharedOptions = {
  onnotice: () => {},
  types: {
    int8: {
      to: 20,
      from: [20],
      serialize: (value: number | bigint) => String(value),
      parse: (value: string) => Number(value),
    },
  },
} satisfies postgres.Options<Record<string, postgres.PostgresType>>;

export async function openDatabase(options: DatabaseOptions = {}): Promise<Database> {
  if (options.schema !== undefined && !SCHEMA_NAME.test(options.schema)) {
    throw new Error(`invalid schema name ${JSON.stringify(options.schema)}: use lower-case letters, digits and _`);
  }
  return options.url ? openServerDatabase(options.url, options) : openEmbeddedDatabase(options);
}

async function openServerDatabase(url: string, options: DatabaseOptions): Promise<Database> {
  const schema = options.schema;
  // postgres.js reconnects without any delay while connections are accepted and closed at once (reconnect-backoff.ts).
  const backoff = reconnectBackoff();
  const sql = postgres(url, {
    ...sharedOptions,
    // `socket` is documented (README "Connection details") but missing from the type definitions.
    ...({ socket: backoff.socket } as object),
    max: options.max ?? 10,
    // A startup parameter, so it holds for every pooled connection and survives reconnects.
    ...(schema ? { connection: { search_path: schema } } : {}),
  }) as unknown as Sql;
  try {
    if (schema) await createSchemaIfMissing(sql, schema);
    else await sql`select 1`;
  } catch (error) {
    backoff.stop();
    await sql.end({ timeout: 0 });
    throw error;
  }
  return {
    sql,
    kind: 'server',
    location: redactUrl(url) + (schema ? ` (schema ${schema})` : ''),
    fatalError: null,
    close: () => {
      backoff.stop();
      return sql.end({ timeout: 5 });
    },
  };
}

async function createSchemaIfMissing(sql: Sql, schema: string): Promise<void> {
  try {
    await sql.unsafe(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
  } catch (error) {
    // Two processes creating it at once: one of them sees a duplicate in the catalog. Either way it exists now.
    const code = (error as { code?: string }).code;
    if (code !== '42P06' && code !== '23505') throw error;
  }
}

function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return 'postgres://(unparsable url)';
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Embedded

type WorkerMessage =
  | { type: 'ready' }
  | { type: 'closed' }
  | { type: 'failed'; error: { message: string; stack?: string; code?: string } };

/**
 * Unix socket paths are limited to ~104 bytes (macOS) / 108 (Linux). A deep data folder would not fit, so the
 * socket then goes to the temp folder under a name derived from the data folder.
 */
const MAX_SOCKET_PATH_BYTES = 100;

function chooseSocketPath(dataDir: string | null): string {
  if (dataDir) {
    const inFolder = join(dataDir, 'pglite.sock');
    if (Buffer.byteLength(inFolder) <= MAX_SOCKET_PATH_BYTES) return inFolder;
    const digest = createHash('sha256').update(dataDir).digest('hex').slice(0, 16);
    return join(tmpdir(), `tunnelpulse-${digest}.sock`);
  }
  return join(tmpdir(), `tunnelpulse-mem-${process.pid}-${randomBytes(6).toString('hex')}.sock`);
}

async function openEmbeddedDatabase(options: DatabaseOptions): Promise<Database> {
  const dataDir = options.inMemory ? null : resolve(options.dataDir ?? DEFAULT_EMBEDDED_DATA_DIR);
  const location = dataDir ?? 'memory';
  let lock: DataFolderLock | null = null;
  if (dataDir) {
    mkdirSync(dataDir, { recursive: true });
    lock = acquireDataFolderLock(dataDir);
  }
  const socketPath = chooseSocketPath(dataDir);
  // We hold the folder's lock, so a socket file already there was left by a process that died: nobody serves it,
  // and listen() would fail with EADDRINUSE on it.
  rmSync(socketPath, { force: true });

  const worker = new Worker(options.embeddedWorkerUrl ?? new URL('./embedded-worker.mjs', import.meta.url), {
    workerData: {
      dataDir,
      socketPath,
      // The server side allows one spare connection so a postgres.js reconnect never races the removal of the
      // old one (the server drops a closed handler only on its next tick). postgres.js itself uses one.
      maxConnections: 2,
    },
  });
  const cleanUpFiles = () => {
    rmSync(socketPath, { force: true });
    lock?.release();
  };

  let lastWorkerError: Error | null = null;
  const monitor = (message: WorkerMessage) => {
    if (message.type === 'failed') lastWorkerError = reviveError(message.error);
  };
  worker.on('message', monitor);
  worker.on('error', (error) => {
    lastWorkerError = error;
  });

  try {
    await waitForWorker(worker, 'ready', options.startTimeoutMs ?? 60_000);
  } catch (error) {
    await worker.terminate();
    cleanUpFiles();
    throw new EmbeddedDatabaseError(
      `the embedded PostgreSQL (${location}) failed to start: ${(lastWorkerError ?? (error as Error)).message}`,
      { cause: lastWorkerError ?? error },
    );
  }

  const sql = postgres({
    ...sharedOptions,
    path: socketPath,
    // PGlite is a single backend session. pglite-socket 0.2 accepts several connections but funnels them into that
    // one session message by message: no parallelism is gained, session state (search_path, prepared statements)
    // is shared, and messages of two connections can interleave when a large query arrives in several socket
    // chunks. One connection keeps the protocol exchange strictly sequential. See docs/database.md.
    max: 1,
    // Recycling a local socket buys nothing, and a dropped connection is where the races above live.
    max_lifetime: null,
    idle_timeout: 0,
  }) as unknown as Sql;

  let closing = false;
  let fatalError: Error | null = null;
  worker.on('exit', (code) => {
    if (closing) return;
    fatalError = new EmbeddedDatabaseError(
      `the embedded PostgreSQL worker (${location}) exited with code ${code}` +
        (lastWorkerError ? `: ${lastWorkerError.message}` : ''),
      { cause: lastWorkerError ?? undefined },
    );
    cleanUpFiles();
    // Fail queued and future queries at once instead of letting them wait on a socket nobody serves.
    void sql.end({ timeout: 0 });
    options.onFatalError?.(fatalError);
  });

  try {
    if (options.schema) {
      await sql.unsafe(`CREATE SCHEMA IF NOT EXISTS "${options.schema}"`);
      // Session-wide in PGlite's single session, which outlives any one socket connection.
      await sql.unsafe(`SET search_path TO "${options.schema}"`);
    }
    await sql`select 1`;
  } catch (error) {
    closing = true;
    await sql.end({ timeout: 0 });
    await worker.terminate();
    cleanUpFiles();
    throw error;
  }

  return {
    sql,
    kind: 'embedded',
    location,
    get fatalError() {
      return fatalError;
    },
    async close() {
      if (closing) return;
      closing = true;
      await sql.end({ timeout: 5 });
      if (!fatalError) {
        worker.postMessage({ type: 'close' });
        try {
          await waitForWorker(worker, 'closed', 30_000);
        } catch {
          // The worker could not close PGlite cleanly; PGlite runs with fsync off and its WAL replays on the
          // next start, exactly as after a killed process.
        }
        await worker.terminate();
      }
      cleanUpFiles();
    },
  };
}

/** Resolves on the awaited message; rejects if the worker reports a failure, exits, or takes too long. */
function waitForWorker(worker: Worker, awaited: 'ready' | 'closed', timeoutMs: number): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => finish(new Error(`no '${awaited}' from the worker within ${timeoutMs} ms`)), timeoutMs);
    const onMessage = (message: WorkerMessage) => {
      if (message.type === awaited) finish();
      else if (message.type === 'failed') finish(reviveError(message.error));
    };
    const onError = (error: Error) => finish(error);
    const onExit = (code: number) => finish(new Error(`the worker exited with code ${code}`));
    function finish(error?: Error) {
      clearTimeout(timer);
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
      if (error) reject(error);
      else resolvePromise();
    }
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
  });
}

function reviveError(described: { message: string; stack?: string; code?: string }): Error {
  const error = new Error(described.message) as Error & { code?: string };
  if (described.stack) error.stack = described.stack;
  if (described.code) error.code = described.code;
  return error;
}
