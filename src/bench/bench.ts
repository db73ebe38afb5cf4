/**
 * The end-to-end benchmark (issue 7). For each offered rate, the same load (simulator child processes on
 * loopback) is served twice with fresh simulators: once to the reference pipeline, once to TunnelPulse (the real
 * Runtime + Persister + Store). Each run: connect, wait for the initial snapshot, measure a steady window, then
 * stop the simulators (SIGTERM: `shutdown` and EOF, as a real master) and wait until everything they wrote has been
 * received and committed, which makes the counts exact. Memory per idle tunnel is measured in child processes.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { openDatabase, type Database } from '../db/connection.js';
import { EndpointsRepo } from '../db/endpoints-repo.js';
import { migrate } from '../db/migrate.js';
import { SecretBox } from '../db/secret-box.js';
import { ReferencePipeline, createReferenceTables } from './reference.js';
import type { MemoryProbeInput, MemoryProbeResult } from './memory-child.js';
import type { QueryProbeInput, QueryProbeResult } from './query-child.js';
import { startWindowProfile } from './window-profile.js';
import { SimFleet, stopAllSimulators, type LoadShape } from './sim-fleet.js';
import { BENCH_PIPELINE_SETTINGS, TunnelPulsePipeline, type PipelineSettings } from './tunnelpulse-pipeline.js';

export interface BenchOptions {
  endpoints: number;
  tunnelsPerEndpoint: number;
  /** Offered rates (events/s), stepped up in order until neither pipeline holds one. */
  rates: number[];
  stepSeconds: number;
  logShare: number;
  processes: number;
  /** Offered rate during which the tunnel-state query is measured (the step closest to it). */
  queryRate: number;
  queryRequestsPerSecond: number;
  /** Idle tunnels for the memory figures; empty: skip. */
  memoryTunnels: number[];
  memoryTunnelsPerEndpoint: number;
  /** Run every rate even after a pipeline failed to hold one (default: stop stepping that pipeline). */
  everyRate?: boolean;
  databaseUrl: string | null;
  /** TunnelPulse's batching knobs (from the configuration, as the service uses them). */
  pipeline?: PipelineSettings;
  seed: string;
  /** Folder for a CPU profile of each TunnelPulse window (none by default). */
  cpuProfileDir?: string;
  progress?: (line: string) => void;
}

export interface LatencySummary {
  count: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface RunResult {
  pipeline: 'tunnelpulse' | 'reference';
  offeredRate: number;
  windowSeconds: number;
  /** Events received per second in the window (wire → pipeline). */
  throughput: number;
  /** Frames per second the simulators produced in the window (below `offeredRate` when they could not keep up). */
  produced: number;
  /** Frames the simulators produced in the window minus frames received: > 0 means the pipeline fell behind. */
  backlogGrowth: number;
  /** Age of the oldest entry waiting for the database at the end of the window, ms. */
  oldestPendingMs: number;
  held: boolean;
  window: { events: number; updates: number; logs: number; statements: number; rows: number };
  statementsPer1000Updates: number;
  rowsPer1000Updates: number;
  statementsPer1000Events: number;
  latency: { log: LatencySummary; state: LatencySummary };
  /** Totals over the whole run (initial snapshot to EOF), for the consistency checks. */
  totals: { framesSent: number; received: number; logEventsReceived: number; logRowsCommitted: number; rejected: number; connections: number; duplicates: number; cut: number; memoryErrors: number; failedTunnelActors: number; logLinesQueued: number; tombstonedTunnels: number; ignoredAfterTombstone: number };
  consistent: boolean;
  drainSeconds: number;
  query?: QueryProbeResult;
  error?: string;
}

export interface BenchReport {
  meta: {
    date: string;
    node: string;
    cpus: number;
    loadAverage: number[];
    commit: string;
    database: 'server' | 'embedded';
    endpoints: number;
    tunnelsPerEndpoint: number;
    logShare: number;
    stepSeconds: number;
    durationSeconds: number;
    pipeline: PipelineSettings;
  };
  runs: RunResult[];
  memory: MemoryProbeResult[];
  /** Memory probes that failed (timed out, crashed): reported, not fatal. */
  memoryErrors: string[];
  summary: {
    throughput: Comparison;
    highestHeldRate: Comparison;
    comparedAtRate: number;
    logLatencyP50Ms: Comparison;
    logLatencyP99Ms: Comparison;
    stateLatencyP50Ms: Comparison;
    stateLatencyP99Ms: Comparison;
    statementsPer1000Updates: Comparison;
    rowsPer1000Updates: Comparison;
    memoryBytesPerTunnel: Array<{ tunnels: number } & Comparison>;
    query: (QueryProbeResult & { duringThroughput: number }) | null;
  };
  targets: Array<{ name: string; target: string; value: string; holds: boolean | null }>;
  consistent: boolean;
}

export interface Comparison {
  tunnelpulse: number | null;
  reference: number | null;
  /** tunnelpulse / reference. */
  ratio: number | null;
}

const compare = (tunnelpulse: number | null | undefined, reference: number | null | undefined): Comparison => ({
  tunnelpulse: tunnelpulse ?? null,
  reference: reference ?? null,
  ratio: tunnelpulse != null && reference != null && reference !== 0 ? Math.round((tunnelpulse / reference) * 100) / 100 : null,
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(predicate: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) return false;
    await sleep(25);
  }
  return true;
}

function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: fileURLToPath(new URL('.', import.meta.url)), encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

/** Runs a child script of this folder with node and parses the one JSON line it prints. */
function runChild<T>(script: string, input: unknown, nodeArgs: string[] = []): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...nodeArgs, fileURLToPath(new URL(script, import.meta.url)), JSON.stringify(input)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-4000)));
    child.once('exit', (code) => {
      const line = out.trim().split('\n').at(-1);
      if (code === 0 && line) {
        try {
          return resolve(JSON.parse(line) as T);
        } catch {
          /* fall through */
        }
      }
      reject(new Error(`${script} failed (exit ${code}): ${err || out}`));
    });
  });
}

interface BenchContext {
  db: Database;
  options: BenchOptions;
  /** The one TunnelPulse pipeline, reused by every step (see tunnelpulse-pipeline.ts). */
  tunnelpulse: TunnelPulsePipeline;
}

async function openBenchDatabase(options: BenchOptions): Promise<{ db: Database; schema: string | null }> {
  if (options.databaseUrl) {
    const schema = `bench_${randomBytes(5).toString('hex')}`;
    return { db: await openDatabase({ url: options.databaseUrl, schema, max: 10 }), schema };
  }
  return { db: await openDatabase({ inMemory: true }), schema: null };
}

const summary = (h: { summary(): LatencySummary }): LatencySummary => h.summary();

async function countRows(db: Database, table: 'tunnel_logs' | 'bench_reference_logs'): Promise<number> {
  const [row] = await db.sql.unsafe<{ n: number }[]>(`SELECT count(*)::int AS n FROM ${table}`);
  return row?.n ?? 0;
}

/** One pipeline on one load step. */
async function runStep(ctx: BenchContext, pipelineKind: 'tunnelpulse' | 'reference', rate: number, withQuery: boolean): Promise<RunResult> {
  const { options, db } = ctx;
  const say = options.progress ?? (() => undefined);
  const phaseStart = performance.now();
  const phase = (what: string) => say(`    ${what} at ${((performance.now() - phaseStart) / 1000).toFixed(1)} s`);
  const shape: LoadShape = {
    endpoints: options.endpoints,
    tunnelsPerEndpoint: options.tunnelsPerEndpoint,
    rate,
    logShare: options.logShare,
    processes: options.processes,
    seed: options.seed,
  };
  const fleet = await SimFleet.start(shape);
  const logTable = pipelineKind === 'tunnelpulse' ? 'tunnel_logs' : 'bench_reference_logs';
  const logRowsBefore = await countRows(db, logTable);
  const tp = pipelineKind === 'tunnelpulse' ? ctx.tunnelpulse : null;
  const ref = pipelineKind === 'reference' ? new ReferencePipeline(db.sql) : null;
  let error: string | undefined;
  // TunnelPulse's counters run over the whole benchmark: this step reads differences from here.
  const base = tp
    ? { ...tp.received(), byType: { ...tp.received().byType }, dbErrors: tp.stats.snapshot().databaseErrors, duplicates: tp.duplicateLogsIgnored(), cut: tp.stats.snapshot().logRowsCut, memoryErrors: tp.stats.snapshot().memoryErrors, queued: tp.logLinesQueued, ignored: tp.tombstones().eventsIgnored }
    : null;
  if (tp) for (const histogram of Object.values(tp.stats.commitLatency)) histogram.reset();
  const received = () => (tp ? tp.received().total - base!.total : ref!.received);
  const byType = (): Record<string, number> => {
    if (!tp) return ref!.receivedByType;
    const now = tp.received().byType;
    return Object.fromEntries(Object.entries(now).map(([k, v]) => [k, v - (base!.byType[k] ?? 0)]));
  };
  const writes = () => {
    if (tp) {
      const s = tp.stats.snapshot();
      return { statements: s.databaseWrites.statements, rows: s.databaseWrites.rows };
    }
    return { statements: ref!.statements, rows: ref!.rows };
  };
  const oldestPending = (): number => {
    const now = Date.now();
    if (tp) {
      const q = tp.persister;
      const since = [q.logQueue.oldestSince(), q.stateQueue.oldestSince(), q.configQueue.oldestSince()].filter((s): s is number => s !== null);
      return since.length ? now - Math.min(...since) : 0;
    }
    return ref!.oldestPendingSince === null ? 0 : now - ref!.oldestPendingSince;
  };
  try {
    if (tp && withQuery && !tp.http) await tp.listen();
    if (tp) tp.connect(fleet.masters);
    else ref!.connect(fleet.masters);
    // Warm-up: the initial snapshot (one frame per tunnel plus the API-key record per master) has arrived.
    const initial = fleet.masters.length * (options.tunnelsPerEndpoint + 1);
    if (!(await until(() => received() >= initial, 120_000))) throw new Error('the initial snapshot did not arrive within 120 s');
    phase('initial snapshot received');
    await sleep(Math.min(2_000, options.stepSeconds * 200));

    await fleet.freshStats(Date.now());
    const t0 = performance.now();
    const p0 = fleet.produced();
    const r0 = received();
    const b0 = { ...byType() };
    const w0 = writes();
    const profile = tp ? await startWindowProfile(options.cpuProfileDir) : null;
    let queryRun: Promise<QueryProbeResult> | null = null;
    if (tp && withQuery) {
      const paths = tp.runtime
        .endpoints()
        .flatMap((e) => Object.keys(e.tunnels).slice(0, 20).map((id) => `/api/endpoints/${e.endpointId}/tunnels/${id}`));
      const input: QueryProbeInput = { baseUrl: tp.address, paths, durationMs: Math.max(1_000, options.stepSeconds * 1000 - 500), rate: options.queryRequestsPerSecond };
      queryRun = runChild<QueryProbeResult>('./query-child.js', input);
    }
    await sleep(options.stepSeconds * 1000);
    await fleet.freshStats(Date.now());
    const t1 = performance.now();
    const p1 = fleet.produced();
    const r1 = received();
    const b1 = byType();
    const w1 = writes();
    const oldestPendingMs = oldestPending();
    await profile?.stop(`tunnelpulse-${rate}`);
    const query = queryRun ? await queryRun : undefined;
    phase('window measured');

    const seconds = (t1 - t0) / 1000;
    const events = r1 - r0;
    const updates = (b1['update'] ?? 0) - (b0['update'] ?? 0);
    const logs = (b1['log'] ?? 0) - (b0['log'] ?? 0);
    const statements = w1.statements - w0.statements;
    const rows = w1.rows - w0.rows;
    const produced = p1.framesSent + p1.queued - (p0.framesSent + p0.queued);
    const backlogGrowth = produced - events;
    const throughput = events / seconds;
    const flushMs = tp ? Math.max(tp.persister.settings.stateFlushMs, tp.persister.settings.logFlushMs) : 1_000;
    // Held: the pipeline kept up with what the simulators produced (they may produce less than offered on a busy
    // machine: `produced` says how much) and nothing waits for the database much longer than a flush period.
    const held = backlogGrowth <= Math.max(500, 0.05 * produced) && oldestPendingMs <= 2 * flushMs + 2_000;

    // End of the run: the simulators shut down (a `shutdown` frame, then EOF); everything they wrote is read and stored.
    const drainStarted = performance.now();
    const finals = await fleet.stop();
    const framesSent = finals?.framesSent ?? -1;
    // Bounded: a pipeline far behind is not waited for forever; its counts are then reported as not drained.
    const drainBudgetMs = Math.max(30_000, options.stepSeconds * 4_000);
    const allReceived = await until(() => received() >= framesSent, drainBudgetMs);
    phase(allReceived ? 'every frame received' : `NOT every frame received (${received()}/${framesSent})`);
    const allCommitted = await until(() => (tp ? tp.pending : ref!.pending) === 0, drainBudgetMs);
    // A batch a supervisor took from its queue may still be on its way to the database: wait for it too.
    if (tp && allCommitted) await tp.persister.drain();
    phase(allCommitted ? 'every row committed' : 'NOT every row committed');
    if (ref) await ref.close();
    if (!allReceived || !allCommitted) error = `not drained within ${drainBudgetMs / 1000} s`;
    const drainSeconds = (performance.now() - drainStarted) / 1000;
    if (ref?.error) error = ref.error.message;
    const dbErrors = tp ? tp.stats.snapshot().databaseErrors - base!.dbErrors : 0;
    if (dbErrors > 0) error = `${dbErrors} database errors`;

    const logEventsReceived = byType()['log'] ?? 0;
    const logRowsCommitted = (await countRows(db, logTable)) - logRowsBefore;
    const rejected = tp ? tp.received().rejected - base!.rejected : ref!.parseErrors;
    // More connections than masters: a stream was cut and reopened, and frames in flight were lost with it.
    const connections = tp ? tp.received().connections - base!.connections : ref!.connections;
    // Log lines TunnelPulse did not store on purpose: taken for duplicates by the actors, or cut by the daily cap.
    const logsNotStored = tp
      ? { duplicates: tp.duplicateLogsIgnored() - base!.duplicates, cut: tp.stats.snapshot().logRowsCut - base!.cut, memoryErrors: tp.stats.snapshot().memoryErrors - base!.memoryErrors, logLinesQueued: tp.logLinesQueued - base!.queued, tombstonedTunnels: tp.tombstones().tunnels, ignoredAfterTombstone: tp.tombstones().eventsIgnored - base!.ignored }
      : { duplicates: 0, cut: 0, memoryErrors: 0, logLinesQueued: logEventsReceived, tombstonedTunnels: 0, ignoredAfterTombstone: 0 };
    const failed = tp ? tp.failedTunnelActors() : { count: 0, example: null };
    if (failed.count > 0) error = `${failed.count} tunnel actors stopped on an error: ${failed.example}`;
    const totals = { framesSent, received: received(), logEventsReceived, logRowsCommitted, rejected, connections, ...logsNotStored, failedTunnelActors: failed.count };
    const latency = tp
      ? { log: summary(tp.stats.commitLatency.log), state: summary(tp.stats.commitLatency.state) }
      : { log: summary(ref!.latency.log), state: summary(ref!.latency.state) };
    return {
      pipeline: pipelineKind,
      offeredRate: rate,
      windowSeconds: Math.round(seconds * 100) / 100,
      throughput: Math.round(throughput),
      produced: Math.round(produced / seconds),
      backlogGrowth,
      oldestPendingMs,
      held: held && error === undefined,
      window: { events, updates, logs, statements, rows },
      statementsPer1000Updates: updates ? Math.round((statements / updates) * 1000 * 100) / 100 : 0,
      rowsPer1000Updates: updates ? Math.round((rows / updates) * 1000 * 10) / 10 : 0,
      statementsPer1000Events: events ? Math.round((statements / events) * 1000 * 100) / 100 : 0,
      latency,
      totals,
      consistent: framesSent === totals.received && logEventsReceived === logRowsCommitted && rejected === 0,
      drainSeconds: Math.round(drainSeconds * 10) / 10,
      query,
      error,
    };
  } catch (caught) {
    await fleet.stop();
    if (ref) await ref.close().catch(() => undefined);
    throw caught;
  }
}

export async function runBench(options: BenchOptions): Promise<BenchReport> {
  const started = Date.now();
  const say = options.progress ?? (() => undefined);
  const { db, schema } = await openBenchDatabase(options);
  // Interrupted (Ctrl-C): stop the simulator processes and drop the benchmark's schema before leaving.
  const interrupted = (signal: NodeJS.Signals) => {
    say(`${signal}: stopping the simulators and dropping the benchmark schema…`);
    void stopAllSimulators()
      .then(() => (schema ? db.sql.unsafe(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`) : undefined))
      .finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  const runs: RunResult[] = [];
  const memory: MemoryProbeResult[] = [];
  const memoryErrors: string[] = [];
  try {
    await migrate(db.sql);
    await createReferenceTables(db.sql);
    const repo = new EndpointsRepo(db, new SecretBox(randomBytes(32)));
    const endpointIds: number[] = [];
    for (let i = 0; i < options.endpoints; i++) endpointIds.push((await repo.create({ name: `bench-${i + 1}`, url: 'http://127.0.0.1:1/api', apiKey: '0'.repeat(32) })).id);
    const ctx: BenchContext = { db, options, tunnelpulse: new TunnelPulsePipeline(db, endpointIds, options.pipeline ?? BENCH_PIPELINE_SETTINGS) };

    const queryStep = options.rates.reduce((best, r) => (Math.abs(r - options.queryRate) < Math.abs(best - options.queryRate) ? r : best), options.rates[0] ?? 0);
    const stillHolding = { tunnelpulse: true, reference: true };
    for (const rate of options.rates) {
      for (const kind of ['reference', 'tunnelpulse'] as const) {
        // Past the first rate a pipeline failed to hold, higher ones tell nothing new (except the query step).
        if (!options.everyRate && !stillHolding[kind] && !(kind === 'tunnelpulse' && rate === queryStep)) continue;
        say(`${kind}: ${rate} events/s offered, ${options.endpoints}×${options.tunnelsPerEndpoint} tunnels, ${options.stepSeconds} s…`);
        const run = await runStep(ctx, kind, rate, kind === 'tunnelpulse' && rate === queryStep);
        runs.push(run);
        if (!run.held) stillHolding[kind] = false;
        say(`  ${run.throughput} events/s, backlog growth ${run.backlogGrowth}, held ${run.held}, log p99 ${run.latency.log.p99Ms} ms, consistent ${run.consistent}`);
      }
      if (!options.everyRate && !stillHolding.tunnelpulse && !stillHolding.reference && rate >= queryStep) break;
    }

    await ctx.tunnelpulse.close();

    for (const tunnels of options.memoryTunnels) {
      for (const pipeline of ['reference', 'tunnelpulse'] as const) {
        say(`memory: ${pipeline}, ${tunnels} idle tunnels…`);
        // 1,000 tunnels per master (within 1–100 masters), as in the load steps: a realistic fleet shape.
        const endpoints = Math.min(100, Math.max(1, Math.round(tunnels / options.memoryTunnelsPerEndpoint)));
        const input: MemoryProbeInput = { pipeline, tunnels, endpoints, databaseUrl: options.databaseUrl, processes: options.processes, seed: `${options.seed}/memory` };
        try {
          const result = await runChild<MemoryProbeResult>('./memory-child.js', input, ['--expose-gc']);
          memory.push(result);
          say(`  ${result.rssBytesPerTunnel} B RSS, ${result.heapBytesPerTunnel} B heap per tunnel (${result.seconds} s)`);
        } catch (error) {
          // Reported, not fatal: the other figures are still worth having.
          memoryErrors.push(`${pipeline} at ${tunnels} tunnels: ${(error as Error).message.slice(0, 500)}`);
          say(`  failed: ${(error as Error).message.slice(0, 200)}`);
        }
      }
    }
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
    await stopAllSimulators();
    if (schema) await db.sql.unsafe(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch((e: Error) => say(`could not drop schema ${schema}: ${e.message}`));
    await db.close();
  }
  return { ...buildReport(options, runs, memory, db.kind, (Date.now() - started) / 1000), memoryErrors };
}

function buildReport(options: BenchOptions, runs: RunResult[], memory: MemoryProbeResult[], database: 'server' | 'embedded', durationSeconds: number): Omit<BenchReport, 'memoryErrors'> {
  const of = (kind: RunResult['pipeline']) => runs.filter((r) => r.pipeline === kind);
  const bestHeld = (kind: RunResult['pipeline']) => of(kind).filter((r) => r.held).sort((a, b) => b.offeredRate - a.offeredRate)[0];
  const maxThroughput = (kind: RunResult['pipeline']) => Math.max(0, ...of(kind).map((r) => r.throughput));
  const tpHeld = bestHeld('tunnelpulse');
  const refHeld = bestHeld('reference');
  // Latency and writes are compared at one rate both ran: the highest TunnelPulse held, else the lowest.
  const comparedAtRate = tpHeld?.offeredRate ?? (runs.length ? Math.min(...runs.map((r) => r.offeredRate)) : 0);
  const at = (kind: RunResult['pipeline']) => of(kind).find((r) => r.offeredRate === comparedAtRate);
  const tp = at('tunnelpulse');
  const ref = at('reference');
  const queryRun = of('tunnelpulse').find((r) => r.query);
  const memoryBytesPerTunnel = [...new Set(memory.map((m) => m.tunnels))].map((tunnels) => ({
    tunnels,
    ...compare(memory.find((m) => m.tunnels === tunnels && m.pipeline === 'tunnelpulse')?.rssBytesPerTunnel, memory.find((m) => m.tunnels === tunnels && m.pipeline === 'reference')?.rssBytesPerTunnel),
  }));
  const summaryBlock: BenchReport['summary'] = {
    throughput: compare(maxThroughput('tunnelpulse'), maxThroughput('reference')),
    // What the simulators actually produced in the held window (on a busy machine they can fall short of the offer).
    highestHeldRate: compare(tpHeld?.produced ?? 0, refHeld?.produced ?? 0),
    comparedAtRate,
    logLatencyP50Ms: compare(tp?.latency.log.p50Ms, ref?.latency.log.p50Ms),
    logLatencyP99Ms: compare(tp?.latency.log.p99Ms, ref?.latency.log.p99Ms),
    stateLatencyP50Ms: compare(tp?.latency.state.p50Ms, ref?.latency.state.p50Ms),
    stateLatencyP99Ms: compare(tp?.latency.state.p99Ms, ref?.latency.state.p99Ms),
    statementsPer1000Updates: compare(tp?.statementsPer1000Updates, ref?.statementsPer1000Updates),
    rowsPer1000Updates: compare(tp?.rowsPer1000Updates, ref?.rowsPer1000Updates),
    memoryBytesPerTunnel,
    query: queryRun?.query ? { ...queryRun.query, duringThroughput: queryRun.throughput } : null,
  };
  const tunnels = options.endpoints * options.tunnelsPerEndpoint;
  const mem10k = memory.find((m) => m.pipeline === 'tunnelpulse' && m.tunnels === 10_000) ?? memory.filter((m) => m.pipeline === 'tunnelpulse').at(-1);
  const heldRatio = summaryBlock.highestHeldRate.ratio;
  const throughputRatio = summaryBlock.throughput.ratio;
  const targets: BenchReport['targets'] = [
    {
      name: 'throughput vs reference',
      target: '≥ 0.7×',
      value: `${throughputRatio ?? '–'}× (peak), ${heldRatio ?? '–'}× (highest rate held)`,
      holds: throughputRatio === null ? null : throughputRatio >= 0.7 && (heldRatio === null || heldRatio >= 0.7),
    },
    {
      name: `statements per 1,000 update events (${tunnels} tunnels)`,
      target: '≤ 2',
      value: String(tp?.statementsPer1000Updates ?? '–'),
      holds: tp ? (tunnels >= 10_000 ? tp.statementsPer1000Updates <= 2 : null) : null,
    },
    {
      name: 'RSS per idle tunnel actor',
      target: '≤ 4 KB',
      value: mem10k ? `${mem10k.rssBytesPerTunnel} B at ${mem10k.tunnels}` : '–',
      holds: mem10k ? mem10k.rssBytesPerTunnel <= 4096 : null,
    },
    {
      name: 'tunnel-state query p99 while ingesting',
      target: '≤ 5 ms at 20k events/s',
      value: summaryBlock.query ? `${summaryBlock.query.p99Ms} ms at ${summaryBlock.query.duringThroughput} events/s` : '–',
      holds: summaryBlock.query ? summaryBlock.query.p99Ms <= 5 && summaryBlock.query.duringThroughput >= 18_000 ? true : summaryBlock.query.p99Ms > 5 ? false : null : null,
    },
    {
      name: 'log p99 receipt→commit',
      target: '≤ 3 s',
      value: tp ? `${tp.latency.log.p99Ms} ms at ${comparedAtRate} events/s` : '–',
      holds: tp ? tp.latency.log.p99Ms <= 3_000 : null,
    },
  ];
  return {
    meta: {
      date: new Date().toISOString(),
      node: process.version,
      cpus: cpus().length,
      loadAverage: loadavg().map((n) => Math.round(n * 10) / 10),
      commit: gitCommit(),
      database,
      endpoints: options.endpoints,
      tunnelsPerEndpoint: options.tunnelsPerEndpoint,
      logShare: options.logShare,
      stepSeconds: options.stepSeconds,
      durationSeconds: Math.round(durationSeconds),
      pipeline: options.pipeline ?? BENCH_PIPELINE_SETTINGS,
    },
    runs,
    memory,
    summary: summaryBlock,
    targets,
    consistent: runs.every((r) => r.consistent),
  };
}
