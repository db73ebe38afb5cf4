/**
 * `tunnelpulse sim`: runs simulated NodePass masters until SIGINT/SIGTERM. When ready it prints one JSON line
 * on stdout with every master's URL and API key, so a benchmark or another process can read it; later lines
 * report key rotations made by `--faults rotate`. Shutdown sends `shutdown` on every stream, as a real master does.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { parseFaultList, PERIODIC_FAULTS, startFaultSchedule, type FaultNotice } from './fault-schedule.js';
import { startSimulator, type SimulatorHandle } from './simulator.js';

export { startDemoSimulator, type DemoOptions, type DemoSimulator } from './demo.js';

export interface SimCommandOptions {
  host: string;
  port: number;
  masters: number;
  instances: number;
  interval: number;
  logRate: number;
  logLevel: 'debug' | 'info';
  apiKey?: string;
  seed?: string;
  drop: boolean;
  faults: string;
  faultEvery: number;
  /** Print a `stats` line every so many ms (0: never); the benchmark reads them to see the backlog. */
  statsEvery?: number;
  /** Log lines at seeded random phases per instance instead of all in the same tick. */
  spreadLogs?: boolean;
  /** On stop, how long streams may take to write what they hold before their sockets are closed (default 1000 ms). */
  shutdownGrace?: number;
}

/** What the command prints when it is ready: one line, parseable by other processes. */
export interface SimReadyLine {
  type: 'ready';
  origin: string;
  masters: Array<{ name: string; url: string; apiBase: string; apiKey: string; masterId: string }>;
}

/** Where the command writes and how it learns to stop; tests supply their own. */
export interface SimCommandIo {
  print(line: string): void;
  waitForStop(): Promise<void>;
}

const processIo: SimCommandIo = {
  print: (line) => void process.stdout.write(`${line}\n`),
  waitForStop: () =>
    new Promise((resolve) => {
      const stop = (): void => {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        resolve();
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    }),
};

function integer(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`expected an integer from ${min} to ${max}`);
    return n;
  };
}

function nonNegativeNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('expected a number ≥ 0');
  return n;
}

function apiKey(value: string): string {
  if (!/^[0-9a-f]{32}$/.test(value)) throw new InvalidArgumentError('expected 32 lowercase hex characters');
  return value;
}

function faultList(value: string): string {
  try {
    parseFaultList(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
  return value;
}

export function readyLine(sim: SimulatorHandle): SimReadyLine {
  return {
    type: 'ready',
    origin: sim.origin,
    masters: sim.masters.map((m) => ({ name: m.name, url: m.url, apiBase: m.apiBase, apiKey: m.apiKey, masterId: m.masterId })),
  };
}

/** Totals over every master and subscriber: what was emitted, written to sockets, and still queued. */
export interface SimStatsLine {
  type: 'stats' | 'stopped';
  at: number;
  eventsEmitted: number;
  eventsByType: Record<string, number>;
  framesSent: number;
  queued: number;
  dropped: number;
}

export function statsLine(sim: SimulatorHandle): SimStatsLine {
  const stats = sim.stats();
  const eventsByType: Record<string, number> = {};
  let queued = 0;
  for (const m of stats.masters) {
    for (const [type, n] of Object.entries(m.eventsByType)) eventsByType[type] = (eventsByType[type] ?? 0) + n;
    for (const s of m.subscribers) queued += s.queued;
  }
  return { type: 'stats', at: Date.now(), eventsEmitted: stats.eventsEmitted, eventsByType, framesSent: stats.framesSent, queued, dropped: stats.dropped };
}

/** Starts what the options describe; the caller decides how long it runs. */
export async function runSimulatorFromOptions(
  options: SimCommandOptions,
  onFault?: (notice: FaultNotice) => void,
): Promise<{ sim: SimulatorHandle; stop(): Promise<void> }> {
  const sim = await startSimulator({
    host: options.host,
    port: options.port,
    masters: options.masters,
    instances: options.instances,
    reportIntervalMs: options.interval,
    logRate: options.logRate,
    spreadLogs: options.spreadLogs ?? false,
    logLevel: options.logLevel,
    apiKey: options.apiKey,
    seed: options.seed,
    delivery: options.drop ? 'drop' : 'lossless',
  });
  const stopFaults = startFaultSchedule(sim, parseFaultList(options.faults), {
    everyMs: options.faultEvery,
    seed: `${options.seed ?? 'random'}/faults`,
    onFault,
  });
  return {
    sim,
    async stop() {
      stopFaults();
      // Like SIGTERM on a real master: `shutdown` on every stream, a moment for it to reach the clients, then close.
      for (const master of sim.masters) master.shutdown();
      await Promise.all(sim.masters.map((m) => m.whenStreamsClosed(options.shutdownGrace ?? 1000)));
      await sim.close();
    },
  };
}

export function registerSimCommand(program: Command, io: SimCommandIo = processIo): Command {
  return program
    .command('sim')
    .description('Run simulated NodePass masters (exact wire protocol) for demos, tests and benchmarks')
    .option('--host <address>', 'listen address (IPv6 literals such as ::1 work)', '127.0.0.1')
    .option('--port <n>', 'listen port, 0 for an ephemeral one', integer(0, 65535), 0)
    .option('--masters <n>', 'masters to host, under /m1/api, /m2/api… (one master: /api)', integer(1, 100_000), 1)
    .option('--instances <n>', 'instances per master (server/client pairs)', integer(0, 100_000), 2)
    .option('--interval <ms>', 'report interval (NP_REPORT_INTERVAL)', integer(10), 5000)
    .option('--log-rate <n>', 'log lines per second per running instance', nonNegativeNumber, 1)
    .addOption(new Option('--log-level <level>', 'the masters\' log level').choices(['debug', 'info']).default('info'))
    .option('--api-key <key>', 'API key for every master (default: one per master, from the seed)', apiKey)
    .option('--seed <seed>', 'seed for ids, keys, traffic and logs (default: random)')
    .option('--drop', 'per-subscriber buffer of 10 events, dropping on full, like NodePass', false)
    .option('--faults <list>', `periodic faults, comma-separated: ${PERIODIC_FAULTS.join(', ')}`, faultList, '')
    .option('--fault-every <ms>', 'time between periodic faults', integer(100), 15_000)
    .option('--spread-logs', 'start each instance\'s log lines at a random phase (steady load below one line per tick)', false)
    .option('--shutdown-grace <ms>', 'on stop, time for slow readers to receive what is queued before sockets close', integer(0), 1000)
    .option('--stats-every <ms>', 'print a stats line (frames sent and queued) this often; 0: never', integer(0), 0)
    .action(async (options: SimCommandOptions) => {
      const running = await runSimulatorFromOptions(options, (notice) => {
        if (notice.apiKey !== undefined) {
          io.print(JSON.stringify({ type: 'key-rotated', master: notice.master, apiKey: notice.apiKey }));
        }
      });
      io.print(JSON.stringify(readyLine(running.sim)));
      const statsTimer = options.statsEvery ? setInterval(() => io.print(JSON.stringify(statsLine(running.sim))), options.statsEvery) : null;
      await io.waitForStop();
      if (statsTimer) clearInterval(statsTimer);
      await running.stop();
      // After the streams closed: the final counts (a benchmark checks what it received against them).
      io.print(JSON.stringify({ ...statsLine(running.sim), type: 'stopped' }));
    });
}
