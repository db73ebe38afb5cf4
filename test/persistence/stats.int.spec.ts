/**
 * Every statistic the issue lists (item 7) exists and is fed by the real paths, not just declared:
 * a Runtime with its Persister on the test database, watching a simulated master over real sockets.
 *   processed events, memory hits, hit rate, last processed time, average and p99 processing time — the stream;
 *   database statements and rows — the supervisors' writes, in total and per writer (the per-writer figures add
 *     up to the totals; the config writer, state flusher and log batcher each wrote; the fallback is its own writer);
 *   queue depths, oldest age, spill size — live, while rows wait;
 *   memory errors and fallbacks — the memory-path failure effect, whose record is then written on its own;
 *   database errors — a write against a closed connection.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/connection.js';
import { migrate } from '../../src/db/migrate.js';
import { Store } from '../../src/db/store.js';
import { DEFAULT_PERSISTER_SETTINGS, Persister } from '../../src/persistence/persister.js';
import { DEFAULT_SUPERVISORS, Runtime } from '../../src/runtime/runtime.js';
import { DATABASE_WRITERS, Stats } from '../../src/runtime/stats.js';
import { startSimulator } from '../../src/sim/simulator.js';
import { useTestDatabase } from '../support/database.js';
import { createEndpointRow, logLine } from './harness.js';

const testDb = useTestDatabase();
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function waitFor(what: string, probe: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('statistics', () => {
  it('every listed figure is fed by the real paths', async () => {
    await testDb.reset();
    const endpointId = await createEndpointRow(testDb.sql, 'stats');
    const sim = await startSimulator({ instances: 2, reportIntervalMs: 100, logRate: 20, seed: 'stats-spec' });
    cleanups.push(() => sim.close());
    const spillDir = mkdtempSync(join(tmpdir(), 'tp-stats-'));
    cleanups.push(() => rmSync(spillDir, { recursive: true, force: true }));

    const stats = new Stats();
    const settings = { ...DEFAULT_PERSISTER_SETTINGS, logFlushMs: 300, stateFlushMs: 300, spillDir, memoryCapRows: 1_000 };
    const persister = new Persister(new Store(testDb.db), stats, Date.now, settings);
    const runtime = new Runtime({ stats, persister, supervisors: DEFAULT_SUPERVISORS(settings) });
    runtime.start();
    cleanups.push(() => runtime.stop().catch(() => {}));
    runtime.addEndpoint({ id: endpointId, name: 'stats', baseUrl: sim.master.apiBase, apiKey: sim.master.apiKey, insecureTls: false, enabled: true });

    const byWriter = () => stats.snapshot().databaseWrites.byWriter;
    await waitFor('events processed and written by each supervisor', () => {
      const s = stats.snapshot();
      const w = s.databaseWrites.byWriter;
      return s.processedEvents > 20 && w.configWriter.rows > 0 && w.stateFlusher.rows > 0 && w.logBatcher.rows > 0;
    });
    let s = stats.snapshot();
    expect(s.memoryHits).toBeGreaterThan(0);
    expect(s.memoryHits).toBeLessThanOrEqual(s.processedEvents);
    expect(s.hitRate).toBeGreaterThan(0);
    expect(s.lastProcessedAt).not.toBeNull();
    expect(s.averageProcessingUs).toBeGreaterThan(0);
    expect(s.p99ProcessingUs).toBeGreaterThan(0);
    expect(s.databaseWrites.statements).toBeGreaterThan(0);
    const sum = (key: 'statements' | 'rows', w = s.databaseWrites.byWriter) => DATABASE_WRITERS.reduce((n, name) => n + w[name][key], 0);
    expect(sum('statements')).toBe(s.databaseWrites.statements);
    expect(sum('rows')).toBe(s.databaseWrites.rows);
    // Nothing was written by the writers that have not run: no rollup hour closed, no retention, no fallback yet.
    expect(s.databaseWrites.byWriter.fallback).toEqual({ statements: 0, rows: 0 });
    expect(s.databaseWrites.byWriter.retention).toEqual({ statements: 0, rows: 0 });
    expect(Object.keys(s.queues).sort()).toEqual(['config', 'logs', 'state']);

    // Queue figures are live: 1,500 lines queued at once (cap 1,000) show depth, spill and (soon) an age.
    const queuedAt = Date.now();
    for (let seq = 1; seq <= 1_500; seq++) persister.tunnelEffects.queueLog(undefined, logLine(endpointId, 'x', seq, queuedAt));
    s = stats.snapshot();
    expect(s.queues['logs']!.depth).toBeGreaterThanOrEqual(1_400); // a batch may be out with the writer already
    expect(s.queues['logs']!.spilledRows).toBeGreaterThan(0);
    expect(s.queues['logs']!.spillBytes).toBeGreaterThan(0);
    const logStatementsBefore = byWriter().logBatcher.statements;
    await waitFor('the spilled lines to drain', () => stats.snapshot().queues['logs']!.spillBytes === 0);
    await waitFor('the queued lines to be written', () => stats.snapshot().queues['logs']!.depth === 0);
    // 1,500 lines in batches of at most `maxBatchRows` (1,000): at least 2 more statements, all the log batcher's.
    expect(byWriter().logBatcher.statements - logStatementsBefore).toBeGreaterThanOrEqual(Math.ceil(1_500 / settings.maxBatchRows));

    // The memory path failed for an event: counted, and its record persisted on its own (a fallback).
    const instanceId = sim.master.instanceIds()[0]!;
    const instance = runtime.tunnel(endpointId, instanceId)!;
    persister.tunnelEffects.memoryFailed(undefined, {
      endpointId,
      instanceId: 'fallback-1',
      error: 'test: the actor threw',
      event: { type: 'update', at: Date.now(), instance: { ...sim.master.instance(instanceId)!, id: 'fallback-1', alias: instance.alias } } as never,
    });
    await waitFor('the fallback row', async () => (await testDb.sql`SELECT 1 FROM tunnels WHERE instance_id = 'fallback-1'`).length === 1);
    s = stats.snapshot();
    expect(s.memoryErrors).toBeGreaterThanOrEqual(1);
    expect(s.fallbacks).toBeGreaterThanOrEqual(1);
    expect(s.databaseWrites.byWriter.fallback).toEqual({ statements: 1, rows: 1 });
    expect(sum('statements', s.databaseWrites.byWriter)).toBe(s.databaseWrites.statements);

    // A write that the database refuses is a database error (and the rows stay queued).
    // A schema of its own (never the server's public schema: it would outlive the run), closed before use.
    const url = process.env['TEST_DATABASE_URL'];
    const closedSchema = `t_closed_${randomBytes(6).toString('hex')}`;
    const closed = await openDatabase(url ? { url, schema: closedSchema, max: 1 } : { inMemory: true });
    await migrate(closed.sql);
    if (url) await closed.sql.unsafe(`DROP SCHEMA "${closedSchema}" CASCADE`);
    await closed.close();
    const broken = new Persister(new Store(closed), stats, Date.now, { ...settings, spillDir: undefined });
    broken.tunnelEffects.queueLog(undefined, logLine(endpointId, 'y', 1, Date.now()));
    const before = stats.snapshot().databaseErrors;
    await expect(broken.drain()).rejects.toThrow();
    expect(stats.snapshot().databaseErrors).toBe(before + 1);
    expect(broken.logQueue.size).toBe(1);

    // A fallback the database refuses as well is not retried on a private timer: it joins the config queue
    // (retried by the config writer, flushed or spilled at shutdown), counted once as a fallback.
    const fallbacksBefore = stats.snapshot().fallbacks;
    broken.tunnelEffects.memoryFailed(undefined, {
      endpointId,
      instanceId: 'fallback-2',
      error: 'test: the actor threw',
      event: { type: 'update', at: Date.now(), instance: { ...sim.master.instance(instanceId)!, id: 'fallback-2' } } as never,
    });
    await broken.settle();
    expect(broken.configQueue.size).toBe(1);
    expect(stats.snapshot().fallbacks).toBe(fallbacksBefore + 1);
    expect(stats.snapshot().databaseErrors).toBe(before + 2);
  }, 60_000);
});
