/**
 * `tunnelpulse bench`: the end-to-end benchmark (see bench.ts). Prints readable tables, or the report as one
 * JSON object with `--json`. `--quick` aims at a run under two minutes (113–175 s measured on the shared 2-core VM
 * at load 4–10: docs/performance.md).
 */
import { InvalidArgumentError, type Command } from 'commander';
import { loadConfig, type Config } from '../config.js';
import { runBench, type BenchOptions, type BenchReport, type Comparison } from './bench.js';

interface BenchCommandOptions {
  endpoints?: number;
  tunnels?: number;
  rates?: number[];
  stepSeconds?: number;
  processes: number;
  queryRate: number;
  queryRps: number;
  memory?: number[];
  logShare: number;
  seed: string;
  quick: boolean;
  json: boolean;
  everyRate: boolean;
  adaptive: boolean;
  warmUpSeconds?: number;
  cpuProfile?: string;
  heapProfile?: string;
}

/**
 * Quick: three rates, the middle one 0.7 × the top (the throughput target's question when the reference holds the
 * top). Full: a finer ladder, stepped until each pipeline falls behind or the simulators cannot produce more.
 */
export const QUICK_RATES = [5_000, 14_000, 20_000];
export const FULL_RATES = [5_000, 10_000, 15_000, 20_000, 25_000, 30_000, 35_000, 40_000, 50_000, 60_000, 80_000, 100_000, 120_000];

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

function intList(value: string): number[] {
  if (value.trim() === '' || value === 'none') return [];
  return value.split(',').map((v) => positiveInt(v.trim()));
}

function share(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || n >= 1) throw new InvalidArgumentError('expected a number from 0 to below 1');
  return n;
}

/** Full run and quick run defaults; explicit options win over both. */
export function benchOptionsFrom(opts: BenchCommandOptions, config: Pick<Config, 'databaseUrl' | 'logBatchSize' | 'logFlushMs' | 'stateFlushMs' | 'logDailyCap'>, progress?: (line: string) => void): BenchOptions {
  const databaseUrl = config.databaseUrl;
  const quick = opts.quick;
  return {
    endpoints: opts.endpoints ?? 10,
    tunnelsPerEndpoint: opts.tunnels ?? 1_000,
    rates: opts.rates ?? (quick ? QUICK_RATES : FULL_RATES),
    stepSeconds: opts.stepSeconds ?? (quick ? 5 : 15),
    warmUpBudgetSeconds: opts.warmUpSeconds ?? (quick ? 15 : 60),
    adaptiveStep: opts.adaptive,
    logShare: opts.logShare,
    processes: opts.processes,
    queryRate: opts.queryRate,
    queryRequestsPerSecond: opts.queryRps,
    // Quick: 10k only; 100k idle tunnels take minutes to build on a busy 2-core machine.
    memoryTunnels: opts.memory ?? (quick ? [10_000] : [10_000, 100_000]),
    memoryTunnelsPerEndpoint: 1_000,
    everyRate: opts.everyRate,
    databaseUrl,
    pipeline: { logBatchSize: config.logBatchSize, logFlushMs: config.logFlushMs, stateFlushMs: config.stateFlushMs, logDailyCap: config.logDailyCap },
    seed: opts.seed,
    ...(opts.cpuProfile ? { cpuProfileDir: opts.cpuProfile } : {}),
    ...(opts.heapProfile ? { heapProfileDir: opts.heapProfile } : {}),
    progress,
  };
}

export function registerBenchCommand(program: Command): Command {
  return program
    .command('bench')
    .description('End-to-end benchmark: simulator processes → TunnelPulse → database, beside a reference pipeline')
    .option('--endpoints <n>', 'simulated masters (default 10)', positiveInt)
    .option('--tunnels <n>', 'tunnels per master (default 1000)', positiveInt)
    .option('--rates <list>', `offered events/s, stepped up in order, or "none" (default ${FULL_RATES.join(',')}; quick ${QUICK_RATES.join(',')})`, intList)
    .option('--step-seconds <n>', 'measured window per rate (default 15; quick 5)', positiveInt)
    .option('--warm-up-seconds <n>', 'longest wait for a pipeline to catch up before the window (default 60; quick 15)', positiveInt)
    .option('--no-adaptive', "no extra TunnelPulse step at 0.7 × the reference's highest held rate after the ladder")
    .option('--processes <n>', 'simulator processes', positiveInt, 2)
    .option('--query-rate <n>', 'ingest rate at which the query target is read (the TunnelPulse step received nearest; every step is probed, those above this offer lightly)', positiveInt, 20_000)
    .option('--query-rps <n>', 'tunnel-state queries per second', positiveInt, 200)
    .option('--memory <list>', 'idle tunnels for the memory figures, or "none" (default 10000,100000; quick 10000)', intList)
    .option('--log-share <x>', 'share of log lines in the offered events', share, 0.2)
    .option('--seed <seed>', 'simulator seed', 'bench')
    .option('--every-rate', 'run every rate even after a pipeline fell behind at a lower one', false)
    .option('--quick', `a run of about two minutes (rates ${QUICK_RATES.join(', ')}, 5 s windows, 10,000 idle tunnels)`, false)
    .option('--json', 'print the report as one JSON object', false)
    .option('--cpu-profile <dir>', "write a CPU profile of each TunnelPulse window into <dir> (steady state only)")
    .option('--heap-profile <dir>', 'write a sampling heap profile of each TunnelPulse window into <dir>: what outlived the young generation (the garbage that costs GC pauses)')
    .action(async (opts: BenchCommandOptions) => {
      const config = loadConfig();
      const progress = (line: string) => void process.stderr.write(`${line}\n`);
      const report = await runBench(benchOptionsFrom(opts, config, progress));
      // Exits once written: the measured actor system is left running rather than stopped (see tunnelpulse-pipeline.ts).
      process.stdout.write(opts.json ? JSON.stringify(report) + '\n' : formatBenchReport(report), () => process.exit(0));
    });
}

const num = (n: number | null | undefined, digits = 0): string => (n == null ? '–' : n.toLocaleString('en-US', { maximumFractionDigits: digits }));
const ratio = (c: Comparison): string => (c.ratio == null ? '–' : `${c.ratio}×`);

function table(head: string[], rows: string[][]): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => '| ' + cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ') + ' |';
  return [line(head), '|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|', ...rows.map(line)];
}

/** p50 / p99 of the window's commits; "none committed" rather than 0 / 0 when the window saw no commit. */
const latencyCell = (l: { count: number; p50Ms: number; p99Ms: number }): string => (l.count === 0 ? 'none committed' : `${num(l.p50Ms)} / ${num(l.p99Ms)}`);

const warmUpCell = (r: BenchReport['runs'][number]): string => {
  const w = r.warmUp;
  if (w.outcome === 'caught-up') return num(w.seconds, 1);
  const label = w.outcome === 'steady-lag' ? 'lag' : w.outcome === 'falling-behind' ? 'behind' : 'budget';
  return `${num(w.seconds, 1)} (${label} ${num(w.behindAtStart)})`;
};

export function formatBenchReport(report: BenchReport): string {
  const m = report.meta;
  const out: string[] = [];
  out.push(`TunnelPulse bench ${m.date}  commit ${m.commit}  Node ${m.node}  ${m.cpus} CPUs  load ${m.loadAverage.join(' ')}`);
  out.push(`database: ${m.database}  load: ${m.endpoints} masters × ${m.tunnelsPerEndpoint} tunnels, ${Math.round(m.logShare * 100)} % log lines, ${m.stepSeconds} s windows  (took ${m.durationSeconds} s)`);
  out.push(`TunnelPulse settings: log batch ${m.pipeline.logBatchSize} rows / ${m.pipeline.logFlushMs} ms, state flush ${m.pipeline.stateFlushMs} ms`, '');
  const pipelineCell = (r: BenchReport['runs'][number]) => (r.step === 'adaptive' ? `${r.pipeline} (0.7×)` : r.pipeline);
  // Steps above the query target's offer are probed lightly (bench.ts `probeRate`): their rate is shown.
  const fullProbeRps = Math.max(0, ...report.runs.map((r) => r.query?.rps ?? 0));
  out.push(
    ...table(
      ['pipeline', 'offered/s', 'produced/s', 'received/s', 'warm-up s', 'backlog +', 'held', 'log p50/p99 ms', 'state p50/p99 ms', 'query p50/p99 ms', 'floor p99 ms', 'loop busy', 'busy µs/event', 'consistent'],
      report.runs.map((r) => [
        pipelineCell(r),
        num(r.offeredRate),
        `${num(r.produced)}${r.simulatorsShort ? ' (short)' : ''}`,
        num(r.throughput),
        warmUpCell(r),
        num(r.backlogGrowth),
        r.held ? 'yes' : 'no',
        latencyCell(r.latency.log),
        latencyCell(r.latency.state),
        r.query ? `${num(r.query.p50Ms, 1)} / ${num(r.query.p99Ms, 1)}${r.query.cut ? ' (cut)' : ''}${r.query.rps < fullProbeRps ? ` (${r.query.rps}/s)` : ''}` : '–',
        r.query?.floor ? num(r.query.floor.p99Ms, 1) : '–',
        `${Math.round(r.cost.loopUtilization * 100)} %`,
        num(r.cost.busyUsPerEvent, 1),
        r.consistent ? 'yes' : `NO (${r.totals.received}/${r.totals.framesSent} frames, ${r.totals.logRowsCommitted}/${r.totals.logEventsReceived} logs)`,
      ]),
    ),
    'warm-up: connect → window start (initial snapshot, then until received ≈ produced); when it ended otherwise, why, with the frames still behind at the start:',
    '  (lag): the backlog stopped shrinking, growing by < 5 % of the offer per second; (behind): growing faster; (budget): still shrinking at the wait\'s bound. Latencies: commits within the window.',
    '(short): the simulators produced < 90 % of the offer; query (cut): a request still unanswered at the window\'s end, counted with its wait so far; (N/s): a light probe (steps above the query target\'s offer);',
    '  floor: the same probe, same window, against an idle process that answers a reply of the same size (what the machine adds to any request under this load)',
    'loop busy: the main thread\'s event-loop utilisation in the window; busy µs/event: its busy time per event received (TunnelPulse\'s includes answering the query probe)',
    '',
  );
  // Writes per kind of data in each window: the state flusher's figure is the issue's statements-per-updates target.
  out.push(
    ...table(
      ['pipeline', 'offered/s', 'state stmts/1k upd', 'log stmts/1k logs', 'config stmts', 'rollup+retention stmts', 'all stmts/1k upd', 'rows/1k upd'],
      report.runs.map((r) => [
        pipelineCell(r),
        num(r.offeredRate),
        num(r.stateStatementsPer1000Updates, 2),
        num(r.logStatementsPer1000Logs, 2),
        num(r.window.writes.config.statements),
        num(r.window.writes.jobs.statements),
        num(r.statementsPer1000Updates, 2),
        num(r.rowsPer1000Updates, 1),
      ]),
    ),
    '',
  );
  const s = report.summary;
  const row = (name: string, c: Comparison, digits = 0): string[] => [name, num(c.tunnelpulse, digits), num(c.reference, digits), ratio(c)];
  out.push(
    ...table(['figure', 'TunnelPulse', 'reference', 'ratio'], [
      row('peak throughput (received), events/s', s.throughput),
      row('highest rate held (produced), events/s', s.highestHeldRate),
      row(`log p50 receipt→commit, ms (at ${num(s.comparedAtRate)}/s)`, s.logLatencyP50Ms),
      row('log p99 receipt→commit, ms', s.logLatencyP99Ms),
      row('state p50 receipt→commit, ms', s.stateLatencyP50Ms),
      row('state p99 receipt→commit, ms', s.stateLatencyP99Ms),
      row('state-flush statements per 1,000 updates', s.stateStatementsPer1000Updates, 2),
      row('log statements per 1,000 log lines', s.logStatementsPer1000Logs, 2),
      row('all statements per 1,000 updates', s.statementsPer1000Updates, 2),
      row('rows per 1,000 updates', s.rowsPer1000Updates, 1),
      row('main-thread busy µs per event', s.busyUsPerEvent, 1),
      row('events/s one main thread takes at that cost', s.capacityByCost),
      ...s.memoryBytesPerTunnel.map((mem) => row(`RSS per idle tunnel, bytes (${num(mem.tunnels)})`, mem)),
      [
        'tunnel-state query p50 / p99, ms',
        s.query ? `${s.query.p50Ms} / ${s.query.p99Ms} (${s.query.requests} req at ${num(s.query.duringThroughput)} events/s)${s.query.floor ? `; floor ${s.query.floor.p50Ms} / ${s.query.floor.p99Ms}` : ''}` : '–',
        '–',
        '–',
      ],
    ]),
    '',
  );
  out.push(`sustained throughput: ${s.sustained.explanation}`, '');
  for (const e of report.memoryErrors) out.push(`memory probe failed: ${e}`);
  if (report.memoryErrors.length) out.push('');
  out.push(...table(['target', 'wanted', 'measured', 'holds'], report.targets.map((t) => [t.name, t.target, t.value, t.holds === null ? 'n/a' : t.holds ? 'yes' : 'NO'])));
  out.push('', report.consistent ? 'counts consistent: every frame sent was received, every log line received was committed' : 'COUNTS INCONSISTENT: see the table above');
  return out.join('\n') + '\n';
}
