/**
 * The benchmark's load: `tunnelpulse sim` child processes on loopback, each hosting a share of the masters.
 * Each child prints one `ready` line (URLs and keys), then a `stats` line every `statsEveryMs` (frames sent and
 * still queued), and a final `stopped` line after SIGTERM once its streams have closed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { SimReadyLine, SimStatsLine } from '../sim/command.js';

/** bin/tunnelpulse.js, seen from dist/src/bench/ (compiled) or src/bench/ (sources, under vitest). */
export const CLI_PATH = ['../../../bin/tunnelpulse.js', '../../bin/tunnelpulse.js']
  .map((rel) => fileURLToPath(new URL(rel, import.meta.url)))
  .find((path) => existsSync(path))!;

export interface LoadShape {
  /** Masters in total, spread over `processes`. */
  endpoints: number;
  tunnelsPerEndpoint: number;
  /** Offered events per second over the whole fleet (checkpoint updates plus log lines). */
  rate: number;
  /** Share of log lines in the offered events (0.2 in the issue). */
  logShare: number;
  processes: number;
  seed: string;
}

/** What one rate means for the simulator: a report interval and a log rate per instance. */
export function simulatorSettings(shape: LoadShape): { intervalMs: number; logRate: number; offeredUpdates: number; offeredLogs: number } {
  const tunnels = shape.endpoints * shape.tunnelsPerEndpoint;
  const updates = shape.rate * (1 - shape.logShare);
  const intervalMs = Math.max(10, Math.round((tunnels / Math.max(updates, 1e-9)) * 1000));
  const logRate = (shape.rate * shape.logShare) / tunnels;
  return { intervalMs, logRate, offeredUpdates: (tunnels * 1000) / intervalMs, offeredLogs: logRate * tunnels };
}

export interface SimMaster {
  name: string;
  apiBase: string;
  apiKey: string;
  process: number;
}

class SimChild {
  ready!: SimReadyLine;
  latest: SimStatsLine | null = null;
  stopped: SimStatsLine | null = null;
  private readonly exited: Promise<number | null>;
  private stderr = '';

  constructor(readonly child: ChildProcess) {
    // 'close', not 'exit': stdout is fully read by then, so the final `stopped` line has been seen.
    this.exited = new Promise((resolve) => child.once('close', (code) => resolve(code)));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.stderr = (this.stderr + d).slice(-4000)));
  }

  start(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`simulator not ready within ${timeoutMs} ms: ${this.stderr}`)), timeoutMs);
      void this.exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`simulator exited (${code}) before it was ready: ${this.stderr}`));
      });
      createInterface({ input: this.child.stdout! }).on('line', (line) => {
        let message: { type?: string };
        try {
          message = JSON.parse(line) as { type?: string };
        } catch {
          return;
        }
        if (message.type === 'ready') {
          this.ready = message as SimReadyLine;
          clearTimeout(timer);
          resolve();
        } else if (message.type === 'stats') this.latest = message as SimStatsLine;
        else if (message.type === 'stopped') this.stopped = message as SimStatsLine;
      });
    });
  }

  async stop(timeoutMs: number): Promise<SimStatsLine | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(timer);
    return this.stopped;
  }
}

/** Every simulator process still running, so an interrupted benchmark can stop them (see `stopAllSimulators`). */
const live = new Set<SimFleet>();

export async function stopAllSimulators(): Promise<void> {
  await Promise.all([...live].map((f) => f.stop()));
}

/** The simulator processes of one load step. */
export class SimFleet {
  private constructor(
    private readonly children: SimChild[],
    readonly settings: ReturnType<typeof simulatorSettings>,
    private readonly stopTimeoutMs: number,
  ) {}

  /** `idle`: tunnels that never report and log nothing (memory measurements); `rate` is ignored then. */
  static async start(shape: LoadShape, options: { statsEveryMs?: number; timeoutMs?: number; idle?: boolean; shutdownGraceMs?: number } = {}): Promise<SimFleet> {
    const settings = options.idle ? { intervalMs: 1_000_000_000, logRate: 0, offeredUpdates: 0, offeredLogs: 0 } : simulatorSettings(shape);
    const processes = Math.max(1, Math.min(shape.processes, shape.endpoints));
    const children: SimChild[] = [];
    for (let p = 0; p < processes; p++) {
      const masters = Math.floor(shape.endpoints / processes) + (p < shape.endpoints % processes ? 1 : 0);
      const args = [
        CLI_PATH, 'sim',
        '--masters', String(masters),
        '--instances', String(shape.tunnelsPerEndpoint),
        '--interval', String(settings.intervalMs),
        '--log-rate', String(settings.logRate),
        '--seed', `${shape.seed}/p${p}`,
        '--stats-every', String(options.statsEveryMs ?? 250),
        '--spread-logs',
        // A slow reader still gets every frame the simulator counted as sent, so the counts can be exact.
        '--shutdown-grace', String(options.shutdownGraceMs ?? 60_000),
      ];
      children.push(new SimChild(spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })));
    }
    const fleet = new SimFleet(children, settings, (options.shutdownGraceMs ?? 60_000) + 10_000);
    live.add(fleet);
    try {
      await Promise.all(children.map((c) => c.start(options.timeoutMs ?? 30_000)));
    } catch (error) {
      await fleet.stop();
      throw error;
    }
    return fleet;
  }

  get masters(): SimMaster[] {
    return this.children.flatMap((c, process) => c.ready.masters.map((m) => ({ name: `p${process}-${m.name}`, apiBase: m.apiBase, apiKey: m.apiKey, process })));
  }

  /** Frames written to sockets plus frames still queued in the simulators (from their latest stats lines). */
  produced(): { framesSent: number; queued: number; byType: Record<string, number> } {
    let framesSent = 0;
    let queued = 0;
    const byType: Record<string, number> = {};
    for (const c of this.children) {
      framesSent += c.latest?.framesSent ?? 0;
      queued += c.latest?.queued ?? 0;
      for (const [k, v] of Object.entries(c.latest?.eventsByType ?? {})) byType[k] = (byType[k] ?? 0) + v;
    }
    return { framesSent, queued, byType };
  }

  /** Waits for a stats line newer than `after` from every child (so `produced()` is fresh). */
  async freshStats(after: number, timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.children.some((c) => (c.latest?.at ?? 0) <= after)) {
      if (Date.now() > deadline) return;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** SIGTERM to every child; returns the summed final counts (null if a child died without them). */
  async stop(): Promise<{ framesSent: number; eventsByType: Record<string, number> } | null> {
    live.delete(this);
    const finals = await Promise.all(this.children.map((c) => c.stop(this.stopTimeoutMs)));
    if (finals.some((f) => f === null)) return null;
    const eventsByType: Record<string, number> = {};
    for (const f of finals) for (const [k, v] of Object.entries(f!.eventsByType)) eventsByType[k] = (eventsByType[k] ?? 0) + v;
    return { framesSent: finals.reduce((n, f) => n + f!.framesSent, 0), eventsByType };
  }
}
