/**
 * The embedded default: PGlite in a worker thread behind a unix socket, postgres.js on this thread.
 * These tests always use the embedded database, whatever TEST_DATABASE_URL says.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../src/db/connection.js';
import { LOCK_FILE_NAME } from '../../src/db/data-folder-lock.js';
import { DataFolderInUseError, EmbeddedDatabaseError } from '../../src/db/errors.js';
import { migrate } from '../../src/db/migrate.js';
import { Store } from '../../src/db/store.js';
import { insertEndpoint, logLines, T0 } from './records.js';

const root = mkdtempSync(join(tmpdir(), 'tp-embedded-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let folders = 0;
const freshFolder = () => join(root, `data-${++folders}`);

const worker = (name: string) => new URL(`./fixtures/${name}`, import.meta.url);

describe('embedded database', () => {
  it('keeps its data across close and reopen, and leaves no lock or socket behind', async () => {
    const dataDir = freshFolder();
    const first = await openDatabase({ dataDir });
    expect(first.kind).toBe('embedded');
    await migrate(first.sql);
    const id = await insertEndpoint(first.sql, 'persisted');
    await new Store(first).insertLogs(logLines(id, 'aaaa0001', T0, 500));
    await first.close();
    expect(readdirSync(dataDir)).not.toContain(LOCK_FILE_NAME);
    expect(readdirSync(dataDir)).not.toContain('pglite.sock');

    const second = await openDatabase({ dataDir });
    try {
      expect((await migrate(second.sql)).applied).toEqual([]);
      const [row] = await second.sql`SELECT name FROM endpoints WHERE id = ${id}`;
      expect(row?.['name']).toBe('persisted');
      expect(await new Store(second).countLogs({ endpointId: id })).toBe(500);
    } finally {
      await second.close();
    }
  });

  it('refuses a second open of a folder that is in use, in this process or another', async () => {
    const dataDir = freshFolder();
    const db = await openDatabase({ dataDir });
    try {
      await expect(openDatabase({ dataDir })).rejects.toThrow(/already open in this process/);
    } finally {
      await db.close();
    }

    const other = spawn('sleep', ['30']);
    try {
      writeFileSync(
        join(dataDir, LOCK_FILE_NAME),
        JSON.stringify({ pid: other.pid, hostname: hostname(), startedAt: 'earlier' }),
      );
      const error = await openDatabase({ dataDir }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DataFolderInUseError);
      expect((error as Error).message).toContain(`process ${other.pid}`);
    } finally {
      other.kill();
    }
  });

  it('takes over a lock and a socket file left by a process that died', async () => {
    const dataDir = freshFolder();
    const initialised = await openDatabase({ dataDir });
    await initialised.close();
    // What a killed process leaves: its lock (its pid now gone) and its socket file.
    const gone = spawnSync('true');
    writeFileSync(join(dataDir, LOCK_FILE_NAME), JSON.stringify({ pid: gone.pid, hostname: hostname(), startedAt: 'x' }));
    writeFileSync(join(dataDir, 'pglite.sock'), 'stale');

    const db = await openDatabase({ dataDir });
    try {
      const [row] = await db.sql`SELECT 1 AS one`;
      expect(row?.['one']).toBe(1);
    } finally {
      await db.close();
    }
  });

  it('rejects with a clear error when the worker cannot start, and releases the folder', async () => {
    const dataDir = freshFolder();
    const error = await openDatabase({ dataDir, embeddedWorkerUrl: worker('fail-at-start-worker.mjs') }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EmbeddedDatabaseError);
    expect((error as Error).message).toMatch(/failed to start: simulated start-up failure/);
    expect(existsSync(join(dataDir, LOCK_FILE_NAME))).toBe(false);
  });

  it('reports a worker that dies in service, fails queries, and releases the folder', async () => {
    const dataDir = freshFolder();
    let reported: Error | undefined;
    const db: Database = await openDatabase({
      dataDir,
      embeddedWorkerUrl: worker('crash-after-ready-worker.mjs'),
      onFatalError: (error) => {
        reported = error;
      },
    });
    await expect.poll(() => reported, { timeout: 10_000 }).toBeInstanceOf(EmbeddedDatabaseError);
    expect(reported?.message).toMatch(/exited with code 1: simulated PGlite abort/);
    expect(db.fatalError).toBe(reported);
    await expect(db.sql`SELECT 1`).rejects.toThrow();
    expect(existsSync(join(dataDir, LOCK_FILE_NAME))).toBe(false);
    await db.close();
  });

  it('honours a schema in memory too: the tables land in it', async () => {
    const db = await openDatabase({ inMemory: true, schema: 'tenant_a' });
    try {
      await migrate(db.sql);
      const [row] = await db.sql<{ schema: string; tables: number }[]>`
        SELECT current_schema() AS schema,
               (SELECT count(*) FROM pg_tables WHERE schemaname = 'tenant_a') AS tables`;
      expect(row).toEqual({ schema: 'tenant_a', tables: 11 });
    } finally {
      await db.close();
    }
  });

  it('keeps the main event loop responsive while the database works through a big insert', async () => {
    const db = await openDatabase({ inMemory: true });
    try {
      await migrate(db.sql);
      const store = new Store(db, { logDailyCap: null });
      const endpointId = await insertEndpoint(db.sql, 'busy');

      // A 1 ms timer measures how late the main thread gets to run while PGlite works on the other one.
      let maxLagMs = 0;
      let last = performance.now();
      const probe = setInterval(() => {
        const now = performance.now();
        maxLagMs = Math.max(maxLagMs, now - last - 1);
        last = now;
      }, 1);

      const batches = 40;
      const started = performance.now();
      for (let i = 0; i < batches; i++) {
        await store.insertLogs(logLines(endpointId, `in${String(i).padStart(6, '0')}`, T0 + i * 1000, 1000));
      }
      const elapsedMs = performance.now() - started;
      clearInterval(probe);

      expect(await store.countLogs({ endpointId })).toBe(batches * 1000);
      console.info(
        `embedded: ${batches}×1000 log rows in ${elapsedMs.toFixed(0)} ms ` +
          `(${Math.round((batches * 1000) / (elapsedMs / 1000))} rows/s), max main-loop lag ${maxLagMs.toFixed(1)} ms`,
      );
      expect(maxLagMs).toBeLessThan(200);
    } finally {
      await db.close();
    }
  }, 120_000);
});
