/**
 * Child process of the benchmark (run with --expose-gc): resident memory per idle tunnel. Simulators (their own
 * processes) serve N tunnels that never report; the process connects, lets every tunnel arrive and its rows be
 * written, collects garbage and compares with the figures before. Measured for TunnelPulse's actors and for the
 * reference pipeline's `Map` of parsed states, each in a fresh process so neither inherits the other's heap.
 *
 *   node --expose-gc memory-child.js '{"pipeline":"tunnelpulse","tunnels":10000,"endpoints":10,"databaseUrl":null}'
 */
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { openDatabase, type Database } from '../db/connection.js';
import { EndpointsRepo } from '../db/endpoints-repo.js';
import { migrate } from '../db/migrate.js';
import { SecretBox } from '../db/secret-box.js';
import { ReferencePipeline, createReferenceTables } from './reference.js';
import { SimFleet } from './sim-fleet.js';
import { TunnelPulsePipeline } from './tunnelpulse-pipeline.js';

export interface MemoryProbeInput {
  pipeline: 'tunnelpulse' | 'reference';
  tunnels: number;
  endpoints: number;
  databaseUrl: string | null;
  processes: number;
  seed: string;
}

export interface MemoryProbeResult {
  pipeline: 'tunnelpulse' | 'reference';
  tunnels: number;
  /** Tunnels actually held in memory at the measurement. */
  held: number;
  rssBytesPerTunnel: number;
  heapBytesPerTunnel: number;
  rssDeltaBytes: number;
  heapDeltaBytes: number;
  gc: boolean;
  seconds: number;
}

async function until(what: string, predicate: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function settle(): Promise<NodeJS.MemoryUsage> {
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let i = 0; i < 3; i++) {
    gc?.();
    await new Promise((r) => setTimeout(r, 100));
  }
  return process.memoryUsage();
}

export async function measureMemory(input: MemoryProbeInput): Promise<MemoryProbeResult> {
  const started = Date.now();
  const schema = input.databaseUrl ? `bench_mem_${randomBytes(5).toString('hex')}` : undefined;
  const db: Database = input.databaseUrl ? await openDatabase({ url: input.databaseUrl, schema, max: 4 }) : await openDatabase({ inMemory: true });
  const fleet = await SimFleet.start(
    { endpoints: input.endpoints, tunnelsPerEndpoint: Math.ceil(input.tunnels / input.endpoints), rate: 0, logShare: 0, processes: input.processes, seed: input.seed },
    // Idle tunnels: no checkpoints (an interval of ~11 days), no log lines.
    { idle: true, timeoutMs: 120_000 },
  );
  const total = fleet.masters.length * Math.ceil(input.tunnels / input.endpoints);
  try {
    await migrate(db.sql);
    let held = 0;
    let before: NodeJS.MemoryUsage;
    let after: NodeJS.MemoryUsage;
    if (input.pipeline === 'tunnelpulse') {
      const repo = new EndpointsRepo(db, new SecretBox(randomBytes(32)));
      const ids: number[] = [];
      for (const m of fleet.masters) ids.push((await repo.create({ name: m.name, url: m.apiBase, apiKey: m.apiKey })).id);
      const pipeline = new TunnelPulsePipeline(db, ids);
      before = await settle();
      pipeline.connect(fleet.masters);
      await until("every tunnel", () => pipeline.received().tunnels >= total, 900_000);
      await until('every row written', () => pipeline.pending === 0, 600_000);
      after = await settle();
      held = pipeline.received().tunnels;
      await pipeline.close();
    } else {
      await createReferenceTables(db.sql);
      const reference = new ReferencePipeline(db.sql);
      before = await settle();
      reference.connect(fleet.masters);
      await until('every tunnel', () => reference.states.size >= total, 600_000);
      await reference.flush();
      await until('every row written', () => reference.pending === 0, 600_000);
      after = await settle();
      held = reference.states.size;
      await reference.close();
    }
    const rss = after.rss - before.rss;
    const heap = after.heapUsed - before.heapUsed;
    return {
      pipeline: input.pipeline,
      tunnels: total,
      held,
      rssBytesPerTunnel: Math.round(rss / Math.max(1, held)),
      heapBytesPerTunnel: Math.round(heap / Math.max(1, held)),
      rssDeltaBytes: rss,
      heapDeltaBytes: heap,
      gc: typeof (globalThis as { gc?: unknown }).gc === 'function',
      seconds: (Date.now() - started) / 1000,
    };
  } finally {
    await fleet.stop();
    if (schema) await db.sql.unsafe(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
    await db.close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await measureMemory(JSON.parse(process.argv[2]!) as MemoryProbeInput);
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(0);
}
