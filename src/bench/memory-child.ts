/**
 * Child process of the benchmark (run with --expose-gc): resident memory per idle tunnel. Simulators (their own
 * processes) serve N tunnels that never report; the process connects, lets every tunnel arrive and its rows be
 * written, collects garbage and measures. Measured for TunnelPulse's actors and for the reference pipeline's `Map`
 * of parsed states, each in a fresh process so neither inherits the other's heap.
 *
 * The figure is a slope between two tunnel counts in the same process: the first half of the masters is connected
 * and measured, then the rest, and the growth between the two points is divided by the tunnels added. What does
 * not grow with the tunnels — code compiled on the way, connection pools, the young generation grown to its
 * maximum size by the building — is paid before the first point and cancels out (a single before/after
 * difference divided by N billed it to the tunnels). At each point garbage is collected with compaction, as V8's
 * memory reducer does on its own once an idle process has been idle a few seconds: without it the figure is the
 * high-water mark of building the tunnels (old-space pages left two-thirds empty by the build's garbage), which
 * V8 returns to the system by itself within a minute. That uncompacted figure, against the baseline before
 * connecting, is reported beside it (`uncompacted`) so the difference stays visible. docs/performance.md.
 *
 *   node --expose-gc memory-child.js '{"pipeline":"tunnelpulse","tunnels":10000,"endpoints":10,"databaseUrl":null}'
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { getHeapSpaceStatistics, setFlagsFromString, writeHeapSnapshot } from 'node:v8';
import { openDatabase, type Database } from '../db/connection.js';
import { EndpointsRepo } from '../db/endpoints-repo.js';
import { migrate } from '../db/migrate.js';
import { SecretBox } from '../db/secret-box.js';
import { ReferencePipeline, createReferenceTables } from './reference.js';
import { SimFleet } from './sim-fleet.js';
import { TunnelPulsePipeline } from './tunnelpulse-pipeline.js';
import { applyV8Tuning } from '../runtime/v8-tuning.js';

export interface MemoryProbeInput {
  pipeline: 'tunnelpulse' | 'reference';
  tunnels: number;
  endpoints: number;
  databaseUrl: string | null;
  processes: number;
  seed: string;
  /** Diagnosis: write a V8 heap snapshot here after the last measurement. */
  heapSnapshotPath?: string;
}

export interface MemoryProbeResult {
  pipeline: 'tunnelpulse' | 'reference';
  tunnels: number;
  /** Tunnels actually held in memory at the measurement. */
  held: number;
  /** Growth per tunnel between the two points (see the top of the file): the figure held against the target. */
  rssBytesPerTunnel: number;
  heapBytesPerTunnel: number;
  /** The two points: tunnels held and memory after a compacting collection. */
  points: Array<{ held: number; rssBytes: number; heapUsedBytes: number; heapTotalBytes: number; externalBytes: number; newSpaceBytes: number; rssAnonBytes: number | null; rssFileBytes: number | null }>;
  rssDeltaBytes: number;
  heapDeltaBytes: number;
  /**
   * The former method, for comparison: growth since the baseline before connecting, after ordinary (not
   * compacting) collections, divided by every tunnel held. Includes the build's high-water mark and fixed costs.
   */
  uncompacted: { rssBytesPerTunnel: number; heapBytesPerTunnel: number };
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

/**
 * Collects garbage and reads the memory. `compact`: every full collection compacts the old generation (V8's flag,
 * set only for these collections), releasing the pages the build's garbage left mostly empty — what the memory
 * reducer does by itself once the process is idle.
 */
async function settle(compact: boolean): Promise<NodeJS.MemoryUsage> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (compact) setFlagsFromString('--compact-on-every-full-gc');
  try {
    for (let i = 0; i < 3; i++) {
      gc?.();
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    if (compact) setFlagsFromString('--no-compact-on-every-full-gc');
  }
  return process.memoryUsage();
}

/** Resident size of V8's young generation (its semi-spaces grow and shrink with the allocation rate). */
function newSpaceBytes(): number {
  return getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.physical_space_size ?? 0;
}

/** Anonymous (heaps) and file-backed (code, mapped files) resident memory, where Linux tells. */
function residentSplit(): { rssAnonBytes: number | null; rssFileBytes: number | null } {
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const kb = (name: string) => {
      const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status);
      return m ? Number(m[1]) * 1024 : null;
    };
    return { rssAnonBytes: kb('RssAnon'), rssFileBytes: kb('RssFile') };
  } catch {
    return { rssAnonBytes: null, rssFileBytes: null };
  }
}

interface ProbedPipeline {
  /** Connects masters `[from, to)` of the fleet (earlier ones stay connected). */
  connect(from: number, to: number): void;
  held(): number;
  pending(): number;
  /** Writes what is queued now rather than at the next timer. */
  flush?(): Promise<void>;
  close(): Promise<void>;
}

export async function measureMemory(input: MemoryProbeInput): Promise<MemoryProbeResult> {
  const started = Date.now();
  const schema = input.databaseUrl ? `bench_mem_${randomBytes(5).toString('hex')}` : undefined;
  const db: Database = input.databaseUrl ? await openDatabase({ url: input.databaseUrl, schema, max: 4 }) : await openDatabase({ inMemory: true });
  const perMaster = Math.ceil(input.tunnels / input.endpoints);
  const fleet = await SimFleet.start(
    { endpoints: input.endpoints, tunnelsPerEndpoint: perMaster, rate: 0, logShare: 0, processes: input.processes, seed: input.seed },
    // Idle tunnels: no checkpoints (an interval of ~11 days), no log lines.
    { idle: true, timeoutMs: 120_000 },
  );
  const masters = fleet.masters;
  const total = masters.length * perMaster;
  if (masters.length < 2) throw new Error('the memory probe needs at least 2 masters (the figure is a slope between two tunnel counts)');
  try {
    await migrate(db.sql);
    let pipeline: ProbedPipeline;
    if (input.pipeline === 'tunnelpulse') {
      const repo = new EndpointsRepo(db, new SecretBox(randomBytes(32)));
      const ids: number[] = [];
      for (const m of masters) ids.push((await repo.create({ name: m.name, url: m.apiBase, apiKey: m.apiKey })).id);
      const tp = new TunnelPulsePipeline(db, ids);
      // Connecting a prefix again leaves the endpoints already added as they are (same definitions).
      pipeline = { connect: (_from, to) => tp.connect(masters.slice(0, to)), held: () => tp.received().tunnels, pending: () => tp.pending, close: () => tp.close() };
    } else {
      await createReferenceTables(db.sql);
      const reference = new ReferencePipeline(db.sql);
      pipeline = {
        connect: (from, to) => reference.connect(masters.slice(from, to), from + 1),
        held: () => reference.states.size,
        pending: () => reference.pending,
        flush: () => reference.flush(),
        close: () => reference.close(),
      };
    }
    const before = await settle(false);
    const points: MemoryProbeResult['points'] = [];
    const half = Math.floor(masters.length / 2);
    let uncompacted: NodeJS.MemoryUsage | null = null;
    for (const to of [half, masters.length]) {
      pipeline.connect(to === half ? 0 : half, to);
      await until('every tunnel', () => pipeline.held() >= to * perMaster, 900_000);
      await pipeline.flush?.();
      await until('every row written', () => pipeline.pending() === 0, 600_000);
      if (to === masters.length) uncompacted = await settle(false);
      const m = await settle(true);
      points.push({ held: pipeline.held(), rssBytes: m.rss, heapUsedBytes: m.heapUsed, heapTotalBytes: m.heapTotal, externalBytes: m.external, newSpaceBytes: newSpaceBytes(), ...residentSplit() });
    }
    if (input.heapSnapshotPath) writeHeapSnapshot(input.heapSnapshotPath);
    await pipeline.close();
    const [first, last] = [points[0]!, points[1]!];
    const added = Math.max(1, last.held - first.held);
    const rss = last.rssBytes - first.rssBytes;
    const heap = last.heapUsedBytes - first.heapUsedBytes;
    const held = last.held;
    return {
      pipeline: input.pipeline,
      tunnels: total,
      held,
      rssBytesPerTunnel: Math.round(rss / added),
      heapBytesPerTunnel: Math.round(heap / added),
      points,
      rssDeltaBytes: rss,
      heapDeltaBytes: heap,
      uncompacted: {
        rssBytesPerTunnel: Math.round((uncompacted!.rss - before.rss) / Math.max(1, held)),
        heapBytesPerTunnel: Math.round((uncompacted!.heapUsed - before.heapUsed) / Math.max(1, held)),
      },
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
  applyV8Tuning(); // as the service's command line does
  const result = await measureMemory(JSON.parse(process.argv[2]!) as MemoryProbeInput);
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(0);
}
