/**
 * The end-to-end benchmark (issue 7). For each offered rate, the same load (simulator child processes on
 * loopback) is served twice with fresh simulators: once to the reference pipeline, once to TunnelPulse (the real
 * Runtime + Persister + Store). Each run: connect, wait for the initial snapshot, warm up until the pipeline has
 * caught up with what the simulators produced (bounded), measure a steady window, then stop the simulators
 * (SIGTERM: `shutdown` and EOF, as a real master) and wait until everything they wrote has been received and
 * committed, which makes the counts exact. After the ladder, TunnelPulse is offered 0.7 × the reference's highest
 * held rate if no step answered that already (the throughput target's question). Memory per idle tunnel is
 * measured in child processes.
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
import { spawnFloorServer, type FloorServer } from './floor-server.js';
import { startWindowHeapProfile, startWindowProfile } from './window-profile.js';
import { SimFleet, stopAllSimulators, type LoadShape } from './sim-fleet.js';
import type { DatabaseWriter, WriteCounts } from '../runtime/stats.js';
import { BENCH_PIPELINE_SETTINGS, TunnelPulsePipeline, type PipelineSettings } from './tunnelpulse-pipeline.js';

export interface BenchOptions {
  endpoints: number;
  tunnelsPerEndpoint: number;
  /** Offered rates (events/s), stepped up in order until neither pipeline holds one. */
  rates: number[];
  stepSeconds: number;
  logShare: number;
  processes: number;
  /**
   * Ingest rate at which the query target is read: the TunnelPulse step whose received rate is nearest, among those
   * probed at the full `queryRequestsPerSecond` (every step at or below this offer; the steps above get a light probe).
   */
  queryRate: number;
  queryRequestsPerSecond: number;
  /** Idle tunnels for the memory figures; empty: skip. */
  memoryTunnels: number[];
  memoryTunnelsPerEndpoint: number;
  /** Run every rate even after a pipeline failed to hold one (default: stop stepping that pipeline). */
  everyRate?: boolean;
  /** Longest warm-up after the initial snapshot, waiting for the pipeline to catch up (default 60 s). */
  warmUpBudgetSeconds?: number;
  /** After the ladder, offer TunnelPulse 0.7 × the reference's highest held rate if no step answered it (default on). */
  adaptiveStep?: boolean;
  databaseUrl: string | null;
  /** TunnelPulse's batching knobs (from the configuration, as the service uses them). */
  pipeline?: PipelineSettings;
  seed: string;
  /** Folder for a CPU profile of each TunnelPulse window (none by default). */
  cpuProfileDir?: string;
  /** Write a sampling heap profile of each TunnelPulse window (what outlived the young generation) into this folder. */
  heapProfileDir?: string;
  progress?: (line: string) => void;
}

export interface LatencySummary {
  count: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Statements and rows by kind of data: the supervisors' writers, the same split for the reference. */
export interface WritesByKind {
  /** State flushes (TunnelPulse's state flusher: tunnel states + hour buckets; the reference's state upsert). */
  state: WriteCounts;
  /** Log batches. */
  log: WriteCounts;
  /** Config writer (tunnel rows, status history, offline intervals) plus memory-path fallbacks; 0 for the reference. */
  config: WriteCounts;
  /** Scheduled jobs: hourly rollup and retention; 0 for the reference. */
  jobs: WriteCounts;
}

export interface WarmUp {
  /** Connect → window start, s. */
  seconds: number;
  /** Connect → initial snapshot received, s. */
  snapshotSeconds: number;
  /**
   * `caught-up`: received ≈ produced and nothing waits long for the database. `steady-lag`: the backlog stopped
   * shrinking but does not grow either (the pipeline keeps pace a few frames behind: a flush pausing the loop).
   * `falling-behind`: the backlog grows. `budget`: still shrinking at the bound of the wait.
   */
  outcome: 'caught-up' | 'steady-lag' | 'falling-behind' | 'budget';
  /** Frames produced but not yet received when the window started (< 0: the latest stats line was older). */
  behindAtStart: number;
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
  /** The simulators produced under 90 % of the offered rate: the machine, not the pipeline, set the load. */
  simulatorsShort: boolean;
  warmUp: WarmUp;
  window: {
    events: number;
    updates: number;
    logs: number;
    statements: number;
    rows: number;
    writes: WritesByKind;
    /** TunnelPulse only: the counters per writer, as `Stats` keeps them. */
    byWriter?: Record<DatabaseWriter, WriteCounts>;
  };
  /** All statements (every writer) per 1,000 update events. */
  statementsPer1000Updates: number;
  /** State-flush statements per 1,000 update events: the figure issue 7's target is about. */
  stateStatementsPer1000Updates: number;
  /** Log-batch statements per 1,000 log lines. */
  logStatementsPer1000Logs: number;
  rowsPer1000Updates: number;
  statementsPer1000Events: number;
  /** Receipt → commit of the entries committed during the window. */
  latency: { log: LatencySummary; state: LatencySummary };
  /** Totals over the whole run (initial snapshot to EOF), for the consistency checks. */
  totals: { framesSent: number; received: number; logEventsReceived: number; logRowsCommitted: number; rejected: number; connections: number; duplicates: number; cut: number; memoryErrors: number; failedTunnelActors: number; logLinesQueued: number; tombstonedTunnels: number; ignoredAfterTombstone: number };
  consistent: boolean;
  drainSeconds: number;
  /** Tunnel-state query latency during the window (TunnelPulse steps), and the probe's request rate. */
  query?: QueryProbeResult & { rps: number };
  /**
   * What the window cost this process (both pipelines run in it, one at a time): the main thread's busy share
   * (event-loop utilisation) and its busy time per event received, and the CPU of all its threads per event.
   * Unlike the held rate, this does not depend on the simulators producing enough: a single-threaded pipeline
   * whose loop is busy B µs per event cannot take more than ~1,000,000 / B events per second.
   */
  cost: { loopUtilization: number; busyUsPerEvent: number; cpuUsPerEvent: number };
  /** Why this step ran: a rung of the ladder, or the step added to answer the 0.7× question. */
  step: 'ladder' | 'adaptive';
  error?: string;
}

export interface HeldRate {
  offered: number;
  produced: number;
}

/** What the ladder tells about one pipeline's sustainable rate. */
export interface Capacity {
  /** Highest rate held (offered, and what the simulators produced in that window). */
  held: HeldRate | null;
  /** Lowest rate above `held` that was not held: the capacity lies between. */
  failedAt: HeldRate | null;
  /** Why no higher rate was tried: it fell behind, the simulators could not produce more, or the ladder ended. */
  limit: 'fell-behind' | 'simulators' | 'ladder-top';
}

export interface SustainedThroughput {
  tunnelpulse: Capacity;
  reference: Capacity;
  /** TunnelPulse's highest held produced rate / the reference's. */
  heldRatio: number | null;
  /** What the ladder proves about the ratio of sustainable rates (null: unbounded that side). */
  capacityRatio: { low: number | null; high: number | null };
  /** `bracketed`: both fell behind at a tried rate; otherwise which way heldRatio is only a bound. */
  kind: 'bracketed' | 'upper-bound' | 'lower-bound' | 'unbounded' | 'undetermined';
  /** 0.7 × the reference's highest held produced rate. */
  needed: number | null;
  /** Offered rate of the step added after the ladder for the question (null: none needed or possible). */
  adaptiveRate: number | null;
  /**
   * TunnelPulse held every rate up to the needed one it was offered, but the simulators produced less than needed
   * (under 90 % of the offer): the held ratio falls short for want of load, so the target is not decided.
   */
  undecidedBecauseSimulatorsShort: boolean;
  explanation: string;
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
    /** The ladder as asked for (the runs say which rungs ran), the warm-up bound and whether the 0.7× step was allowed. */
    rates: number[];
    warmUpBudgetSeconds: number;
    adaptiveStep: boolean;
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
    sustained: SustainedThroughput;
    comparedAtRate: number;
    logLatencyP50Ms: Comparison;
    logLatencyP99Ms: Comparison;
    stateLatencyP50Ms: Comparison;
    stateLatencyP99Ms: Comparison;
    statementsPer1000Updates: Comparison;
    stateStatementsPer1000Updates: Comparison;
    logStatementsPer1000Logs: Comparison;
    rowsPer1000Updates: Comparison;
    /** Main-thread busy µs per event at `comparedAtRate` (ratio > 1: TunnelPulse costs more). */
    busyUsPerEvent: Comparison;
    /** 1,000,000 / busy µs per event: the rate each main thread could take at that cost (ratio: TunnelPulse / reference). */
    capacityByCost: Comparison;
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
  /** The query probe's floor (floor-server.ts), started at the first TunnelPulse step with the size of a real reply. */
  floor: FloorServer | null;
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

const round = (n: number, digits: number): number => Math.round(n * 10 ** digits) / 10 ** digits;
const per1000 = (n: number, of: number, digits = 2): number => (of ? round((n / of) * 1000, digits) : 0);
const noWrites = (): WriteCounts => ({ statements: 0, rows: 0 });
const plus = (...counts: WriteCounts[]): WriteCounts => counts.reduce((a, c) => ({ statements: a.statements + c.statements, rows: a.rows + c.rows }), noWrites());
const minus = (a: WriteCounts, b: WriteCounts): WriteCounts => ({ statements: a.statements - b.statements, rows: a.rows - b.rows });

/** TunnelPulse's per-writer counters grouped as the report compares them with the reference. */
function byKind(w: Record<DatabaseWriter, WriteCounts>): WritesByKind {
  return { state: w.stateFlusher, log: w.logBatcher, config: plus(w.configWriter, w.fallback), jobs: plus(w.hourlyRollup, w.retention) };
}

const kindsMinus = (a: WritesByKind, b: WritesByKind): WritesByKind => ({
  state: minus(a.state, b.state),
  log: minus(a.log, b.log),
  config: minus(a.config, b.config),
  jobs: minus(a.jobs, b.jobs),
});

/** The share of the reference's highest held rate TunnelPulse must hold (issue 7). */
export const THROUGHPUT_TARGET_SHARE = 0.7;

/** One pipeline on one load step. */
/**
 * Queries per second of a step's probe: the full rate up to the query target's offer; above it a tenth (at least 10),
 * so that the probe, which the reference never gets, does not weigh on the throughput comparison — at 45,000 events/s
 * 200 requests/s cost TunnelPulse ~5 % of its CPU (the replies' socket writes, docs/performance.md).
 */
export function probeRate(offered: number, options: Pick<BenchOptions, 'queryRate' | 'queryRequestsPerSecond'>): number {
  return offered <= options.queryRate ? options.queryRequestsPerSecond : Math.max(10, Math.round(options.queryRequestsPerSecond / 10));
}

async function runStep(ctx: BenchContext, pipelineKind: 'tunnelpulse' | 'reference', rate: number, step: RunResult['step'] = 'ladder'): Promise<RunResult> {
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
  // Receipt→commit latency is read over the window only (steady state): every histogram starts over at its start.
  const latencyHistograms = () => (tp ? Object.values(tp.stats.commitLatency) : Object.values(ref!.latency));
  const received = () => (tp ? tp.received().total - base!.total : ref!.received);
  const byType = (): Record<string, number> => {
    if (!tp) return ref!.receivedByType;
    const now = tp.received().byType;
    return Object.fromEntries(Object.entries(now).map(([k, v]) => [k, v - (base!.byType[k] ?? 0)]));
  };
  const writes = (): { statements: number; rows: number; kinds: WritesByKind; byWriter?: Record<DatabaseWriter, WriteCounts> } => {
    if (tp) {
      const s = tp.stats.snapshot();
      const byWriter = structuredClone(s.databaseWrites.byWriter);
      return { statements: s.databaseWrites.statements, rows: s.databaseWrites.rows, kinds: byKind(byWriter), byWriter };
    }
    return { statements: ref!.statements, rows: ref!.rows, kinds: { state: { ...ref!.writes.state }, log: { ...ref!.writes.log }, config: noWrites(), jobs: noWrites() } };
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
  const flushMs = tp ? Math.max(tp.persister.settings.stateFlushMs, tp.persister.settings.logFlushMs) : 1_000;
  // Nothing waits for the database much longer than a flush period (the held criterion, and the warm-up's).
  const pendingLimitMs = 2 * flushMs + 2_000;
  try {
    if (tp && !tp.http) await tp.listen();
    const connectedAt = performance.now();
    if (tp) tp.connect(fleet.masters);
    else ref!.connect(fleet.masters);
    // The initial snapshot (one frame per tunnel plus the API-key record per master) has arrived.
    const initial = fleet.masters.length * (options.tunnelsPerEndpoint + 1);
    if (!(await until(() => received() >= initial, 120_000))) throw new Error('the initial snapshot did not arrive within 120 s');
    const snapshotSeconds = (performance.now() - connectedAt) / 1000;
    phase('initial snapshot received');

    // Warm-up: wait until the pipeline has caught up with what the simulators produced meanwhile (the snapshot's
    // processing leaves a backlog of checkpoints and log lines), so the window measures the steady state rather
    // than a catch-up. Bounded: it also ends when the backlog stops shrinking (see below) or at the budget.
    // Frames in flight within one stats period (250 ms) of the offer count as caught up.
    const caughtUpWithin = Math.max(500, rate * 0.25);
    const budgetMs = (options.warmUpBudgetSeconds ?? 60) * 1000;
    const catchUpStarted = performance.now();
    const samples: Array<{ at: number; behind: number }> = [];
    let outcome: WarmUp['outcome'];
    let inARow = 0;
    for (;;) {
      await fleet.freshStats(Date.now(), 2_000);
      const p = fleet.produced();
      const behind = p.framesSent + p.queued - received();
      const at = performance.now() - catchUpStarted;
      if (behind <= caughtUpWithin && oldestPending() <= pendingLimitMs) inARow++;
      else inARow = 0;
      // Twice in a row (two stats lines, ≥ 250 ms apart): not one lucky reading in a burst.
      if (inARow >= 2) {
        outcome = 'caught-up';
        break;
      }
      if (at > budgetMs) {
        outcome = 'budget';
        break;
      }
      samples.push({ at, behind });
      // No longer catching up: the backlog's low point of the last 2 s is not 10 % below that of 3–5 s ago (at that
      // pace the budget would run out). Low points, because the backlog swings with each flush's pause of the loop.
      // Then it either holds (a steady lag: the window measures keeping pace) or grows (the window measures that).
      const lowest = (from: number, to: number) => Math.min(...samples.filter((s) => s.at > from && s.at <= to).map((s) => s.behind));
      const [recent, earlier] = [lowest(at - 2_000, at), lowest(at - 5_000, at - 3_000)];
      if (at >= 6_000 && behind > caughtUpWithin && recent >= 0.9 * earlier) {
        // Growing by more than 5 % of the offer per second (over the 3 s between the two spans): falling behind.
        outcome = recent - earlier > 0.05 * rate * 3 ? 'falling-behind' : 'steady-lag';
        break;
      }
    }
    phase(`warm-up ended (${outcome})`);

    // The warm-up's last reading was a fresh stats line: the window starts from it.
    const t0 = performance.now();
    const p0 = fleet.produced();
    const r0 = received();
    const b0 = { ...byType() };
    const w0 = writes();
    for (const histogram of latencyHistograms()) histogram.reset();
    const warmUp: WarmUp = {
      seconds: round((t0 - connectedAt) / 1000, 1),
      snapshotSeconds: round(snapshotSeconds, 1),
      outcome,
      behindAtStart: p0.framesSent + p0.queued - r0,
    };
    const elu0 = performance.eventLoopUtilization();
    const cpu0 = process.cpuUsage();
    const profile = tp ? await startWindowProfile(options.cpuProfileDir) : null;
    const heapProfile = tp ? await startWindowHeapProfile(options.heapProfileDir) : null;
    let queryRun: Promise<QueryProbeResult> | null = null;
    const queryRps = probeRate(rate, options);
    if (tp) {
      const paths = tp.runtime
        .endpoints()
        .flatMap((e) => Object.keys(e.tunnels).slice(0, 20).map((id) => `/api/endpoints/${e.endpointId}/tunnels/${id}`));
      if (!ctx.floor) {
        const reply = await fetch(tp.address + paths[0]!);
        ctx.floor = await spawnFloorServer({ bodyBytes: (await reply.arrayBuffer()).byteLength });
      }
      const input: QueryProbeInput = { baseUrl: tp.address, paths, durationMs: options.stepSeconds * 1000, endAt: Date.now() + options.stepSeconds * 1000, rate: queryRps, floorUrl: ctx.floor.url };
      queryRun = runChild<QueryProbeResult>('./query-child.js', input);
    }
    await sleep(options.stepSeconds * 1000);
    await fleet.freshStats(Date.now());
    const t1 = performance.now();
    const elu = performance.eventLoopUtilization(elu0);
    const cpu = process.cpuUsage(cpu0);
    const p1 = fleet.produced();
    const r1 = received();
    const b1 = byType();
    const w1 = writes();
    const oldestPendingMs = oldestPending();
    // Commits in the window (entries queued just before it included): the drain's are not steady state.
    const latency = tp
      ? { log: summary(tp.stats.commitLatency.log), state: summary(tp.stats.commitLatency.state) }
      : { log: summary(ref!.latency.log), state: summary(ref!.latency.state) };
    await profile?.stop(`tunnelpulse-${rate}`);
    await heapProfile?.stop(`tunnelpulse-${rate}`);
    const query = queryRun ? { ...(await queryRun), rps: queryRps } : undefined;
    phase('window measured');

    const seconds = (t1 - t0) / 1000;
    const events = r1 - r0;
    const updates = (b1['update'] ?? 0) - (b0['update'] ?? 0);
    const logs = (b1['log'] ?? 0) - (b0['log'] ?? 0);
    const statements = w1.statements - w0.statements;
    const rows = w1.rows - w0.rows;
    const kinds = kindsMinus(w1.kinds, w0.kinds);
    const byWriter = w1.byWriter && w0.byWriter ? (Object.fromEntries(Object.entries(w1.byWriter).map(([k, v]) => [k, minus(v, w0.byWriter![k as DatabaseWriter])])) as Record<DatabaseWriter, WriteCounts>) : undefined;
    const produced = p1.framesSent + p1.queued - (p0.framesSent + p0.queued);
    const backlogGrowth = produced - events;
    const throughput = events / seconds;
    // Held: the pipeline kept up with what the simulators produced (they may produce less than offered on a busy
    // machine: `produced` says how much) and nothing waits for the database much longer than a flush period.
    const held = backlogGrowth <= Math.max(500, 0.05 * produced) && oldestPendingMs <= pendingLimitMs;

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
    return {
      pipeline: pipelineKind,
      offeredRate: rate,
      windowSeconds: round(seconds, 2),
      throughput: Math.round(throughput),
      produced: Math.round(produced / seconds),
      backlogGrowth,
      oldestPendingMs,
      held: held && error === undefined,
      simulatorsShort: produced / seconds < 0.9 * rate,
      warmUp,
      window: { events, updates, logs, statements, rows, writes: kinds, ...(byWriter ? { byWriter } : {}) },
      statementsPer1000Updates: per1000(statements, updates),
      stateStatementsPer1000Updates: per1000(kinds.state.statements, updates),
      logStatementsPer1000Logs: per1000(kinds.log.statements, logs),
      rowsPer1000Updates: per1000(rows, updates, 1),
      statementsPer1000Events: per1000(statements, events),
      latency,
      totals,
      consistent: framesSent === totals.received && logEventsReceived === logRowsCommitted && rejected === 0,
      drainSeconds: round(drainSeconds, 1),
      query,
      cost: {
        loopUtilization: round(elu.utilization, 3),
        busyUsPerEvent: events > 0 ? round((elu.active * 1000) / events, 2) : 0,
        cpuUsPerEvent: events > 0 ? round((cpu.user + cpu.system) / events, 2) : 0,
      },
      step,
      error,
    };
  } catch (caught) {
    await fleet.stop();
    if (ref) await ref.close().catch(() => undefined);
    throw caught;
  }
}

/** The offered rate that asks "does TunnelPulse hold 0.7 × the reference's highest held rate?", or null. */
export function adaptiveRate(runs: readonly RunResult[], everyRate = false): number | null {
  const refHeld = runs.filter((r) => r.pipeline === 'reference' && r.held).sort((a, b) => b.offeredRate - a.offeredRate)[0];
  if (!refHeld) return null;
  // The verdict compares produced rates (what each pipeline really took in): offered 5 % above the needed rate, as
  // the simulators' output varies by a few per cent from window to window.
  const needed = THROUGHPUT_TARGET_SHARE * refHeld.produced;
  const offered = Math.ceil((needed * 1.05) / 100) * 100;
  const tp = runs.filter((r) => r.pipeline === 'tunnelpulse');
  if (tp.some((r) => r.held && r.produced >= needed)) return null; // answered: yes
  if (tp.some((r) => r.offeredRate === offered)) return null; // answered: that very rate was tried
  if (!everyRate && tp.some((r) => !r.held && r.offeredRate <= offered)) return null; // fell behind lower already
  return offered;
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
  let simulatorsLimit = false;
  let adaptive: number | null = null;
  let ctx: BenchContext | null = null;
  try {
    await migrate(db.sql);
    await createReferenceTables(db.sql);
    const repo = new EndpointsRepo(db, new SecretBox(randomBytes(32)));
    const endpointIds: number[] = [];
    for (let i = 0; i < options.endpoints; i++) endpointIds.push((await repo.create({ name: `bench-${i + 1}`, url: 'http://127.0.0.1:1/api', apiKey: '0'.repeat(32) })).id);
    ctx = { db, options, tunnelpulse: new TunnelPulsePipeline(db, endpointIds, options.pipeline ?? BENCH_PIPELINE_SETTINGS), floor: null };

    const stillHolding = { tunnelpulse: true, reference: true };
    const report = (run: RunResult) =>
      say(`  ${run.throughput} events/s (produced ${run.produced}), warm-up ${run.warmUp.seconds} s (${run.warmUp.outcome}), backlog growth ${run.backlogGrowth}, held ${run.held}, log p99 ${run.latency.log.p99Ms} ms${run.query ? `, query p99 ${run.query.p99Ms} ms (floor ${run.query.floor?.p99Ms ?? '–'} ms)` : ''}, consistent ${run.consistent}`);
    for (const rate of options.rates) {
      for (const kind of ['reference', 'tunnelpulse'] as const) {
        // Past the first rate a pipeline failed to hold, higher ones tell nothing new: it received less at the higher
        // offer in every run so far, and the query probe runs at every step (`--every-rate` runs them all the same).
        if (!options.everyRate && !stillHolding[kind]) continue;
        say(`${kind}: ${rate} events/s offered, ${options.endpoints}×${options.tunnelsPerEndpoint} tunnels, ${options.stepSeconds} s…`);
        const run = await runStep(ctx, kind, rate);
        runs.push(run);
        if (!run.held) stillHolding[kind] = false;
        report(run);
      }
      // The reference held, but the simulators produced no more than at the rung below: higher offers would measure
      // the simulators, not the pipelines. The reference's limit is then above what this machine can offer.
      const refRuns = runs.filter((r) => r.pipeline === 'reference');
      const [below, here] = refRuns.slice(-2);
      if (!options.everyRate && here?.offeredRate === rate && here.held && below && here.simulatorsShort && here.produced <= below.produced * 1.05) {
        simulatorsLimit = true;
        say(`  the simulators produced ${here.produced}/s at ${rate} offered (${below.produced}/s at ${below.offeredRate}): stopping the ladder`);
        break;
      }
      if (!options.everyRate && !stillHolding.tunnelpulse && !stillHolding.reference) break;
    }

    adaptive = options.adaptiveStep === false ? null : adaptiveRate(runs, options.everyRate);
    if (adaptive !== null) {
      say(`tunnelpulse: ${adaptive} events/s offered (0.7 × the reference's highest held rate), ${options.stepSeconds} s…`);
      const run = await runStep(ctx, 'tunnelpulse', adaptive, 'adaptive');
      runs.push(run);
      report(run);
    }

    await ctx.tunnelpulse.close();

    for (const tunnels of options.memoryTunnels) {
      for (const pipeline of ['reference', 'tunnelpulse'] as const) {
        say(`memory: ${pipeline}, ${tunnels} idle tunnels…`);
        // 1,000 tunnels per master (within 2–100 masters), as in the load steps: a realistic fleet shape. At least
        // two: the probe's figure is a slope between the first half of the masters and all of them.
        const endpoints = Math.min(100, Math.max(2, Math.round(tunnels / options.memoryTunnelsPerEndpoint)));
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
    ctx?.floor?.stop();
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
    await stopAllSimulators();
    if (schema) await db.sql.unsafe(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch((e: Error) => say(`could not drop schema ${schema}: ${e.message}`));
    await db.close();
  }
  return { ...buildReport(options, runs, memory, db.kind, (Date.now() - started) / 1000, { simulatorsLimit, adaptive }), memoryErrors };
}

const heldRate = (r: RunResult | undefined): HeldRate | null => (r ? { offered: r.offeredRate, produced: r.produced } : null);
const fmt = (n: number): string => n.toLocaleString('en-US', { maximumFractionDigits: 0 });

/**
 * A pipeline's held step that carried the most (on equal production, the higher offer): a higher offer the simulators
 * fell short of may have produced less. The capacity and the report's "highest rate held" row both use it.
 */
export function bestHeldRun(runs: readonly RunResult[]): RunResult | undefined {
  return runs.filter((r) => r.held).sort((a, b) => b.produced - a.produced || b.offeredRate - a.offeredRate)[0];
}

function capacityOf(runs: readonly RunResult[], simulatorsLimit: boolean): Capacity {
  const held = bestHeldRun(runs);
  const failedAt = runs.filter((r) => !r.held && (!held || r.offeredRate > held.offeredRate)).sort((a, b) => a.offeredRate - b.offeredRate)[0];
  return { held: heldRate(held), failedAt: heldRate(failedAt), limit: failedAt ? 'fell-behind' : simulatorsLimit ? 'simulators' : 'ladder-top' };
}

/**
 * The throughput target's answer from the ladder. A pipeline that held X and fell behind at Y (both as produced)
 * can sustain somewhere in [X, Y); one that never fell behind, at least X. The ratio of the two capacities is
 * then bounded by X_tp / Y_ref below and Y_tp / X_ref above.
 */
export function sustainedThroughput(runs: readonly RunResult[], simulatorsLimit: boolean, adaptive: number | null): SustainedThroughput {
  const tp = capacityOf(runs.filter((r) => r.pipeline === 'tunnelpulse'), simulatorsLimit);
  const ref = capacityOf(runs.filter((r) => r.pipeline === 'reference'), simulatorsLimit);
  const ratio = (a: number | undefined, b: number | undefined): number | null => (a != null && b ? round(a / b, 2) : null);
  const heldRatio = tp.held && ref.held ? ratio(tp.held.produced, ref.held.produced) : ref.held ? 0 : null;
  // A pipeline that fell behind at a rate whose production was below its held step's (the simulators and the
  // pipeline share two cores: at a high offer the simulators starve it) is bounded by the held step, not by that.
  const ceiling = (c: Capacity): number | null => (c.failedAt ? Math.max(c.failedAt.produced, c.held?.produced ?? 0) : null);
  const refCeiling = ceiling(ref);
  const capacityRatio = { low: refCeiling !== null ? (ratio(tp.held?.produced ?? 0, refCeiling) ?? null) : null, high: ratio(ceiling(tp) ?? undefined, ref.held?.produced) };
  const kind: SustainedThroughput['kind'] = !ref.held
    ? 'undetermined'
    : tp.failedAt && ref.failedAt
      ? 'bracketed'
      : tp.failedAt
        ? 'upper-bound'
        : ref.failedAt
          ? 'lower-bound'
          : 'unbounded';
  const needed = ref.held ? Math.round(THROUGHPUT_TARGET_SHARE * ref.held.produced) : null;
  const describe = (name: string, c: Capacity): string =>
    !c.held
      ? `${name} held no rate${c.failedAt ? ` (fell behind at ${fmt(c.failedAt.offered)}/s)` : ''}`
      : `${name} held ${fmt(c.held.offered)}/s offered (${fmt(c.held.produced)} produced)` +
        (c.limit === 'fell-behind'
          ? `, fell behind at ${fmt(c.failedAt!.offered)}/s (${fmt(c.failedAt!.produced)} produced)`
          : c.limit === 'simulators'
            ? ', its limit not reached: the simulators could not produce more'
            : ', its limit not reached: top of the ladder');
  const bound =
    kind === 'bracketed'
      ? `both fell behind within the ladder: capacity ratio between ${capacityRatio.low} and ${capacityRatio.high}`
      : kind === 'upper-bound'
        ? `the reference's limit was not reached, so the held-rate ratio is an upper bound (capacity ratio below ${capacityRatio.high})`
        : kind === 'lower-bound'
          ? `TunnelPulse's limit was not reached, so the held-rate ratio is a lower bound (capacity ratio above ${capacityRatio.low})`
          : kind === 'unbounded'
            ? 'neither fell behind: the ratio compares the highest rate tried, not the limits'
            : 'the reference held no rate: no comparison';
  const tpRuns = runs.filter((r) => r.pipeline === 'tunnelpulse');
  const bestTpHeld = tpRuns.filter((r) => r.held).sort((a, b) => b.produced - a.produced)[0];
  const undecidedBecauseSimulatorsShort =
    needed !== null && heldRatio !== null && heldRatio < THROUGHPUT_TARGET_SHARE && !!bestTpHeld?.simulatorsShort && bestTpHeld.offeredRate * 0.95 >= needed && !tpRuns.some((r) => !r.held && r.offeredRate <= bestTpHeld.offeredRate);
  const short = undecidedBecauseSimulatorsShort
    ? ` The simulators produced ${fmt(bestTpHeld!.produced)}/s of the ${fmt(bestTpHeld!.offeredRate)}/s offered at TunnelPulse's highest held step, below the ${fmt(needed!)} needed: not decided.`
    : '';
  const explanation = `${describe('TunnelPulse', tp)}; ${describe('the reference', ref)}. ${bound}.${short}`;
  return { tunnelpulse: tp, reference: ref, heldRatio, capacityRatio, kind, needed, adaptiveRate: adaptive, undecidedBecauseSimulatorsShort, explanation };
}

/**
 * Whether the capacities, not just the rates tried, meet the target: yes only when the lower bound of the capacity
 * ratio reaches it, no only when the upper bound falls short, otherwise undecided (null) — e.g. a ladder whose top
 * the reference still held says nothing about how far below the reference TunnelPulse really is.
 */
export function throughputVerdict(s: SustainedThroughput): boolean | null {
  if (s.heldRatio === null || s.undecidedBecauseSimulatorsShort) return null;
  const { low, high } = s.capacityRatio;
  const lowHolds = low !== null && low >= THROUGHPUT_TARGET_SHARE;
  const highFails = high !== null && high < THROUGHPUT_TARGET_SHARE;
  switch (s.kind) {
    case 'bracketed':
      return lowHolds ? true : highFails ? false : null;
    case 'upper-bound':
      return highFails || s.tunnelpulse.held === null ? false : null;
    case 'lower-bound':
      return lowHolds ? true : null;
    default:
      return null;
  }
}

/** How far the ladder went, in the target's one line (the explanation says it in full). */
const LIMITS_FOUND: Record<SustainedThroughput['kind'], string> = {
  bracketed: 'both limits found',
  'upper-bound': "the reference's limit not reached: an upper bound",
  'lower-bound': "TunnelPulse's limit not reached: a lower bound",
  unbounded: 'neither limit reached',
  undetermined: 'no reference rate held',
};

/** The rate a pipeline's main thread could take at the cost per event it had in a run (null without events). */
function rateAtCost(run: RunResult | undefined): number | null {
  return run && run.cost.busyUsPerEvent > 0 ? Math.round(1_000_000 / run.cost.busyUsPerEvent) : null;
}

function buildReport(
  options: BenchOptions,
  runs: RunResult[],
  memory: MemoryProbeResult[],
  database: 'server' | 'embedded',
  durationSeconds: number,
  ladder: { simulatorsLimit: boolean; adaptive: number | null },
): Omit<BenchReport, 'memoryErrors'> {
  const of = (kind: RunResult['pipeline']) => runs.filter((r) => r.pipeline === kind);
  const bestHeld = (kind: RunResult['pipeline']) => bestHeldRun(of(kind));
  const maxThroughput = (kind: RunResult['pipeline']) => Math.max(0, ...of(kind).map((r) => r.throughput));
  const tpHeld = bestHeld('tunnelpulse');
  const refHeld = bestHeld('reference');
  // Latency and writes are compared at one rate both ran: the highest TunnelPulse held (of the ladder), else the lowest.
  const bothRan = (rate: number) => of('reference').some((r) => r.offeredRate === rate);
  const tpHeldOnLadder = of('tunnelpulse').filter((r) => r.held && bothRan(r.offeredRate)).sort((a, b) => b.offeredRate - a.offeredRate)[0];
  const ladderRates = runs.filter((r) => r.step === 'ladder').map((r) => r.offeredRate);
  const comparedAtRate = tpHeldOnLadder?.offeredRate ?? (ladderRates.length ? Math.min(...ladderRates) : 0);
  const at = (kind: RunResult['pipeline']) => of(kind).find((r) => r.offeredRate === comparedAtRate && r.step === 'ladder');
  const tp = at('tunnelpulse');
  const ref = at('reference');
  // The query target's step: the TunnelPulse step whose received rate is nearest the target's 20,000/s.
  const queryRun = of('tunnelpulse')
    .filter((r) => r.query?.rps === options.queryRequestsPerSecond)
    .sort((a, b) => Math.abs(a.throughput - options.queryRate) - Math.abs(b.throughput - options.queryRate))[0];
  const memoryBytesPerTunnel = [...new Set(memory.map((m) => m.tunnels))].map((tunnels) => ({
    tunnels,
    ...compare(memory.find((m) => m.tunnels === tunnels && m.pipeline === 'tunnelpulse')?.rssBytesPerTunnel, memory.find((m) => m.tunnels === tunnels && m.pipeline === 'reference')?.rssBytesPerTunnel),
  }));
  const sustained = sustainedThroughput(runs, ladder.simulatorsLimit, ladder.adaptive);
  const summaryBlock: BenchReport['summary'] = {
    throughput: compare(maxThroughput('tunnelpulse'), maxThroughput('reference')),
    // What the simulators actually produced in the held window (on a busy machine they can fall short of the offer).
    highestHeldRate: compare(tpHeld?.produced ?? 0, refHeld?.produced ?? 0),
    sustained,
    comparedAtRate,
    logLatencyP50Ms: compare(tp?.latency.log.p50Ms, ref?.latency.log.p50Ms),
    logLatencyP99Ms: compare(tp?.latency.log.p99Ms, ref?.latency.log.p99Ms),
    stateLatencyP50Ms: compare(tp?.latency.state.p50Ms, ref?.latency.state.p50Ms),
    stateLatencyP99Ms: compare(tp?.latency.state.p99Ms, ref?.latency.state.p99Ms),
    statementsPer1000Updates: compare(tp?.statementsPer1000Updates, ref?.statementsPer1000Updates),
    stateStatementsPer1000Updates: compare(tp?.stateStatementsPer1000Updates, ref?.stateStatementsPer1000Updates),
    logStatementsPer1000Logs: compare(tp?.logStatementsPer1000Logs, ref?.logStatementsPer1000Logs),
    rowsPer1000Updates: compare(tp?.rowsPer1000Updates, ref?.rowsPer1000Updates),
    busyUsPerEvent: compare(tp?.cost.busyUsPerEvent, ref?.cost.busyUsPerEvent),
    capacityByCost: compare(rateAtCost(tp), rateAtCost(ref)),
    memoryBytesPerTunnel,
    query: queryRun?.query ? { ...queryRun.query, duringThroughput: queryRun.throughput } : null,
  };
  const tunnels = options.endpoints * options.tunnelsPerEndpoint;
  // The largest count measured: the memory outside V8's heap varies by a few MB between runs, ±1 KB per tunnel at
  // 10,000 but ±0.1 KB at 100,000 (docs/performance.md).
  const memTarget = memory.filter((m) => m.pipeline === 'tunnelpulse').sort((a, b) => b.tunnels - a.tunnels)[0];
  const throughputRatio = summaryBlock.throughput.ratio;
  const s = sustained;
  const targets: BenchReport['targets'] = [
    {
      name: 'sustained throughput vs reference (highest rate held, produced)',
      target: '≥ 0.7×',
      value:
        s.heldRatio === null
          ? '–'
          : `${s.heldRatio}× (${fmt(s.tunnelpulse.held?.produced ?? 0)} of ${fmt(s.reference.held!.produced)}/s; needed ${fmt(s.needed!)}${s.adaptiveRate ? `, step ${fmt(s.adaptiveRate)}/s added` : ''}; ${LIMITS_FOUND[s.kind]}); peak received ${throughputRatio ?? '–'}×${summaryBlock.capacityByCost.ratio !== null ? `; by main-thread cost at ${fmt(comparedAtRate)}/s ${summaryBlock.capacityByCost.ratio}×` : ''}`,
      holds: throughputVerdict(s),
    },
    {
      name: `state-flush statements per 1,000 update events (${tunnels} tunnels)`,
      target: '≤ 2',
      value: tp ? `${tp.stateStatementsPer1000Updates} at ${fmt(comparedAtRate)}/s (all writers: ${tp.statementsPer1000Updates})` : '–',
      holds: tp ? (tunnels >= 10_000 ? tp.stateStatementsPer1000Updates <= 2 : null) : null,
    },
    {
      name: 'RSS per idle tunnel actor',
      target: '≤ 4 KB',
      value: memTarget ? `${memTarget.rssBytesPerTunnel} B at ${memTarget.tunnels}` : '–',
      holds: memTarget ? memTarget.rssBytesPerTunnel <= 4096 : null,
    },
    {
      name: 'tunnel-state query p99 while ingesting',
      target: '≤ 5 ms at 20k events/s',
      value: summaryBlock.query
        ? `${summaryBlock.query.p99Ms} ms at ${fmt(summaryBlock.query.duringThroughput)} events/s${summaryBlock.query.floor ? ` (floor: an idle process's reply ${summaryBlock.query.floor.p99Ms} ms)` : ''}`
        : '–',
      holds: summaryBlock.query ? (summaryBlock.query.p99Ms <= 5 && summaryBlock.query.duringThroughput >= 18_000 ? true : summaryBlock.query.p99Ms > 5 ? false : null) : null,
    },
    {
      name: 'log p99 receipt→commit',
      target: '≤ 3 s',
      value: tp ? `${tp.latency.log.p99Ms} ms at ${fmt(comparedAtRate)} events/s` : '–',
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
      rates: options.rates,
      warmUpBudgetSeconds: options.warmUpBudgetSeconds ?? 60,
      adaptiveStep: options.adaptiveStep !== false,
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
