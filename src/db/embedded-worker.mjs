// Hosts the embedded PostgreSQL (PGlite) off the main thread and serves it over a unix socket.
//
// PGlite runs its WASM backend on the thread that hosts it and blocks that thread for the whole of each query
// (STACK-NOTES: 100 inserts of 1000 rows kept a 1 ms timer from firing for 1.1 s). The service's main thread
// reads thousands of SSE sockets and must never stall, so PGlite lives here and the main thread talks to it with
// postgres.js over the socket, exactly as it talks to a real server: one SQL code path for both.
//
// Plain ESM JavaScript on purpose: it runs unchanged under vitest (from src/) and from the compiled dist/src/.
//
// Protocol with connection.ts (postMessage):
//   worker → main  { type: 'ready' }                       the socket accepts connections
//   worker → main  { type: 'failed', error: {message, stack, code} }  start-up or runtime failure (then exit 1)
//   main → worker  { type: 'close' }                       stop serving, close PGlite (flushes data), then exit
//   worker → main  { type: 'closed' }
import { parentPort, workerData } from 'node:worker_threads';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';

/** @type {{ dataDir: string | null, socketPath: string, maxConnections: number }} */
const { dataDir, socketPath, maxConnections } = workerData;

/** @type {PGlite | undefined} */
let db;
/** @type {PGLiteSocketServer | undefined} */
let server;
let closing = false;

function describe(error) {
  const err = error instanceof Error ? error : new Error(String(error));
  return { message: err.message, stack: err.stack, code: /** @type {any} */ (err).code };
}

function fail(error) {
  parentPort.postMessage({ type: 'failed', error: describe(error) });
  // Exit with a non-zero code so the main thread sees the worker is gone even if the message is lost.
  process.exit(1);
}

async function start() {
  // `dataDir` null → PGlite's in-memory filesystem (tests, throwaway runs).
  db = await PGlite.create(dataDir ? { dataDir } : {});
  server = new PGLiteSocketServer({ db, path: socketPath, maxConnections });
  server.addEventListener('error', (event) => {
    // A listen error before 'ready' rejects start(); after it, the server cannot serve anymore.
    if (!closing) fail(/** @type {CustomEvent} */ (event).detail);
  });
  await server.start();
  parentPort.postMessage({ type: 'ready' });
}

async function close() {
  if (closing) return;
  closing = true;
  try {
    await server?.stop();
    // PGlite.close() shuts the backend down cleanly (checkpoint), so the data folder is consistent on disk.
    await db?.close();
    parentPort.postMessage({ type: 'closed' });
    parentPort.close();
  } catch (error) {
    fail(error);
  }
}

parentPort.on('message', (message) => {
  if (message?.type === 'close') void close();
});
process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);

start().catch(fail);
