/**
 * Drill 1: the database is unreachable for a while under load (a TCP proxy in front of PostgreSQL, cut in
 * `refuse` mode: open connections reset, new ones refused). The sockets to the masters keep being read (the
 * simulator runs NodePass's drop-on-full 10-event buffer, so a reader that stalls loses events: `dropped`
 * must stay 0), the queues stay under their memory cap (the rest spills to disk), the backlog drains after
 * recovery, and tunnel_logs holds every seq exactly once.
 *
 * DRILL_OUTAGE_MS (default 8 s; issue 8: 60 s, also with DRILL_LONG=1), DRILL_OUTAGE_RATE log lines/s per instance.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startSimulator, type SimulatorHandle } from '../../src/sim/simulator.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';
import {
  LONG,
  openDrillSchema,
  param,
  reportFigures,
  rssMb,
  scanSequences,
  sleep,
  startPipeline,
  waitFor,
  isLive,
  type DrillSchema,
  type Pipeline,
} from './harness.js';

const OUTAGE_MS = param('DRILL_OUTAGE_MS', LONG ? 60_000 : 8_000);
const MASTERS = param('DRILL_OUTAGE_MASTERS', 4);
const INSTANCES = param('DRILL_OUTAGE_INSTANCES', 4);
const RATE = param('DRILL_OUTAGE_RATE', 20);
const MEMORY_CAP = 2_000;

let schema: DrillSchema;
let proxy: TcpProxy;
let sim: SimulatorHandle;
let pipeline: Pipeline;
let spill: string;

beforeAll(async () => {
  schema = await openDrillSchema('outage');
  const target = new URL(schema.url);
  proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
  spill = mkdtempSync(join(tmpdir(), 'tp-drill-outage-'));
});

afterAll(async () => {
  await pipeline?.stop().catch(() => undefined);
  await sim?.close();
  await proxy?.close();
  await schema?.close();
  rmSync(spill, { recursive: true, force: true });
});

it(`keeps reading through a ${OUTAGE_MS / 1000} s database outage and stores every line exactly once`, async () => {
  sim = await startSimulator({
    masters: MASTERS,
    instances: INSTANCES,
    reportIntervalMs: 1_000,
    logRate: RATE,
    delivery: 'drop',
    lifecycleLogs: false,
    seed: 'drill-1',
  });
  pipeline = await startPipeline({
    url: proxy.url(schema.url),
    schema: schema.schema,
    persister: { logFlushMs: 250, stateFlushMs: 500, memoryCapRows: MEMORY_CAP, spillDir: spill },
  });
  const ids: number[] = [];
  for (const m of sim.masters) ids.push(await pipeline.addEndpoint(m.name, m.url, m.apiKey));
  await waitFor('every endpoint live', () => ids.every((id) => isLive(pipeline.runtime, id)), 20_000);
  await waitFor('log rows stored', async () => (await schema.admin.sql`SELECT count(*)::int AS n FROM tunnel_logs`)[0]!.n > 100, 20_000);

  const rssBefore = rssMb();
  const processedBefore = pipeline.stats.snapshot().processedEvents;
  proxy.cut('refuse');
  const cutAt = Date.now();
  let maxDepth = 0;
  let maxInMemory = 0;
  let maxSpilled = 0;
  let maxRss = rssBefore;
  while (Date.now() - cutAt < OUTAGE_MS) {
    await sleep(200);
    const logs = pipeline.persister.logQueue;
    maxDepth = Math.max(maxDepth, pipeline.persister.pendingRows);
    maxInMemory = Math.max(maxInMemory, logs.size - logs.spilledNow);
    maxSpilled = Math.max(maxSpilled, logs.spilledNow);
    maxRss = Math.max(maxRss, rssMb());
  }
  const processedDuring = pipeline.stats.snapshot().processedEvents - processedBefore;
  const droppedDuringOutage = sim.stats().dropped;
  const dbErrors = pipeline.stats.snapshot().databaseErrors;
  const refusedPerSecond = Math.round(proxy.stats.refused / (OUTAGE_MS / 1000));
  proxy.restore();
  const restoredAt = Date.now();
  await waitFor('the backlog to drain', () => pipeline.persister.pendingRows === 0, 120_000, 100);
  const drainMs = Date.now() - restoredAt;

  // Stop the producers, let the last frames arrive, then drain and count.
  for (const m of sim.masters) m.shutdown();
  await sleep(500);
  await pipeline.stop();

  const expectedEvents = RATE * INSTANCES * MASTERS * (OUTAGE_MS / 1000);
  let rows = 0;
  let duplicates = 0;
  let missing = 0;
  for (const [i, id] of ids.entries()) {
    const master = sim.masters[i]!;
    const scan = await scanSequences(schema.admin.sql, id, (instanceId) => master.logSequence(instanceId));
    rows += scan.rows;
    duplicates += scan.duplicates;
    missing += scan.missing;
    expect(Object.keys(scan.perInstance).length).toBe(INSTANCES);
  }
  const [dupCheck] = await schema.admin.sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM (SELECT 1 FROM tunnel_logs GROUP BY endpoint_id, instance_id, message HAVING count(*) > 1) d`;

  reportFigures('1-database-outage', {
    outageMs: OUTAGE_MS,
    endpoints: MASTERS,
    tunnels: MASTERS * INSTANCES,
    linesPerSecond: RATE * INSTANCES * MASTERS,
    eventsProcessedDuringOutage: processedDuring,
    droppedBySlowReading: droppedDuringOutage,
    dbErrorsCounted: dbErrors,
    dbConnectAttemptsPerSecond: refusedPerSecond,
    maxQueuedRows: maxDepth,
    maxLogRowsInMemory: maxInMemory,
    memoryCapRows: MEMORY_CAP,
    maxSpilledRows: maxSpilled,
    rssBeforeMb: rssBefore,
    rssMaxMb: maxRss,
    drainAfterRestoreMs: drainMs,
    logRows: rows,
    duplicates,
    missing,
  });

  expect(processedDuring).toBeGreaterThan(expectedEvents * 0.5); // the sockets kept being read
  expect(droppedDuringOutage).toBe(0);
  expect(dbErrors).toBeGreaterThan(0); // the outage was real
  expect(maxInMemory).toBeLessThanOrEqual(MEMORY_CAP);
  expect(duplicates).toBe(0);
  expect(dupCheck!.n).toBe(0);
  expect(missing).toBe(0);
});

