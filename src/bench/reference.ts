/**
 * The reference pipeline the benchmark compares TunnelPulse with: the least a program can do with the same load
 * and still land it in the database. Plain `node:http` per master, our bounded SSE parser, `JSON.parse`, the
 * latest state per tunnel in a `Map`, and every flush one `unnest` insert of the log lines plus one `unnest`
 * upsert of the changed states. No validation, no actors, no identity or daily cap on log lines, no hour buckets.
 */
import { request, type ClientRequest } from 'node:http';
import type { Sql } from '../db/connection.js';
import { SseParser } from '../protocol/sse-parser.js';
import { LatencyHistogram } from '../runtime/stats.js';
import type { SimMaster } from './sim-fleet.js';

/** The latest state of a tunnel as parsed from the wire; kept for good, like TunnelPulse's actors. */
interface TunnelState {
  endpoint: number;
  instance: WireInstance;
  /** First receipt since the last flush (the oldest change not yet stored); null when stored. */
  since: number | null;
}

interface WireInstance {
  id: string;
  status: string;
  tcprx: number;
  tcptx: number;
  udprx: number;
  udptx: number;
}

interface PendingLog {
  endpoint: number;
  instanceId: string;
  line: string;
  since: number;
}

export async function createReferenceTables(sql: Sql): Promise<void> {
  await sql`CREATE TABLE IF NOT EXISTS bench_reference_logs (
    id bigserial PRIMARY KEY, endpoint integer NOT NULL, instance_id text NOT NULL, at timestamptz NOT NULL, line text NOT NULL)`;
  await sql`CREATE TABLE IF NOT EXISTS bench_reference_states (
    endpoint integer NOT NULL, instance_id text NOT NULL, status text NOT NULL,
    tcprx bigint NOT NULL, tcptx bigint NOT NULL, udprx bigint NOT NULL, udptx bigint NOT NULL, at timestamptz NOT NULL,
    PRIMARY KEY (endpoint, instance_id))`;
}

export class ReferencePipeline {
  received = 0;
  readonly receivedByType: Record<string, number> = {};
  parseErrors = 0;
  connections = 0;
  statements = 0;
  rows = 0;
  logRows = 0;
  /** Statements and rows per kind of write (the totals above are their sums), as TunnelPulse's per-writer counters. */
  readonly writes = { state: { statements: 0, rows: 0 }, log: { statements: 0, rows: 0 } };
  readonly latency = { state: new LatencyHistogram(), log: new LatencyHistogram() };
  /** Every tunnel's latest state (the in-memory view), and the keys changed since the last flush. */
  readonly states = new Map<string, TunnelState>();
  private dirty = new Set<string>();
  private logs: PendingLog[] = [];
  private readonly requests: ClientRequest[] = [];
  private open = 0;
  private flushing: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private flushError: Error | null = null;

  constructor(
    private readonly sql: Sql,
    private readonly settings = { flushMs: 1_000, batchRows: 1_000 },
  ) {}

  get pending(): number {
    return this.dirty.size + this.logs.length;
  }

  /** When the oldest entry not yet written was received (null: nothing waiting). */
  get oldestPendingSince(): number | null {
    let oldest = this.logs[0]?.since ?? null;
    for (const key of this.dirty) {
      const since = this.states.get(key)?.since;
      if (since != null && (oldest === null || since < oldest)) oldest = since;
    }
    return oldest;
  }

  get openStreams(): number {
    return this.open;
  }

  get error(): Error | null {
    return this.flushError;
  }

  /** `firstEndpoint` numbers `masters[0]`: a later call adds masters after those already connected. */
  connect(masters: readonly SimMaster[], firstEndpoint = 1): void {
    masters.forEach((master, index) => this.connectOne(master, firstEndpoint + index));
    this.timer ??= setInterval(() => this.flush(), this.settings.flushMs);
  }

  private connectOne(master: SimMaster, endpoint: number): void {
    const parser = new SseParser({ onEvent: (_name, data) => this.onEvent(endpoint, data) });
    const req = request(`${master.apiBase}/events`, { headers: { 'X-API-Key': master.apiKey, Accept: 'text/event-stream' }, agent: false });
    req.on('response', (res) => {
      this.open++;
      this.connections++;
      res.on('data', (chunk: Buffer) => parser.feed(chunk));
      res.on('close', () => this.open--);
    });
    req.on('error', () => undefined); // a stream cut by the simulator's exit: the counts tell
    req.end();
    this.requests.push(req);
  }

  private onEvent(endpoint: number, data: string): void {
    const now = Date.now();
    this.received++;
    let event: { type: string; instance?: WireInstance; logs?: string };
    try {
      event = JSON.parse(data) as typeof event;
    } catch {
      this.parseErrors++;
      return;
    }
    this.receivedByType[event.type] = (this.receivedByType[event.type] ?? 0) + 1;
    const inst = event.instance;
    if (!inst || inst.id === '********') return;
    if (event.type === 'log') {
      this.logs.push({ endpoint, instanceId: inst.id, line: event.logs ?? '', since: now });
      if (this.logs.length >= this.settings.batchRows) this.flush();
      return;
    }
    const key = `${endpoint}/${inst.id}`;
    const prior = this.states.get(key);
    this.states.set(key, { endpoint, instance: inst, since: prior?.since ?? now });
    this.dirty.add(key);
  }

  /** Starts a flush unless one is running (the next one picks up whatever arrived meanwhile). */
  flush(): Promise<void> {
    if (this.flushing) return this.flushing;
    if (this.pending === 0) return Promise.resolve();
    this.flushing = this.write().finally(() => (this.flushing = null));
    return this.flushing;
  }

  private async write(): Promise<void> {
    const logs = this.logs;
    this.logs = [];
    const keys = this.dirty;
    this.dirty = new Set();
    const states: Array<{ endpoint: number; instanceId: string; status: string; tcprx: number; tcptx: number; udprx: number; udptx: number; since: number }> = [];
    for (const key of keys) {
      const s = this.states.get(key)!;
      states.push({ endpoint: s.endpoint, instanceId: s.instance.id, status: s.instance.status, tcprx: s.instance.tcprx, tcptx: s.instance.tcptx, udprx: s.instance.udprx, udptx: s.instance.udptx, since: s.since ?? Date.now() });
      s.since = null;
    }
    try {
      if (logs.length > 0) {
        const result = await this.sql`
          INSERT INTO bench_reference_logs (endpoint, instance_id, at, line)
          SELECT * FROM unnest(${logs.map((l) => l.endpoint)}::integer[], ${logs.map((l) => l.instanceId)}::text[],
                               ${logs.map((l) => new Date(l.since).toISOString())}::timestamptz[], ${logs.map((l) => l.line)}::text[])`;
        this.statements++;
        this.rows += result.count;
        this.logRows += result.count;
        this.writes.log.statements++;
        this.writes.log.rows += result.count;
        const at = Date.now();
        for (const l of logs) this.latency.log.record(at - l.since);
      }
      if (states.length > 0) {
        const result = await this.sql`
          INSERT INTO bench_reference_states AS s (endpoint, instance_id, status, tcprx, tcptx, udprx, udptx, at)
          SELECT r.*, now() FROM unnest(${states.map((s) => s.endpoint)}::integer[], ${states.map((s) => s.instanceId)}::text[],
                               ${states.map((s) => s.status)}::text[], ${states.map((s) => s.tcprx)}::bigint[],
                               ${states.map((s) => s.tcptx)}::bigint[], ${states.map((s) => s.udprx)}::bigint[],
                               ${states.map((s) => s.udptx)}::bigint[]) AS r
          ON CONFLICT (endpoint, instance_id) DO UPDATE SET status = excluded.status, tcprx = excluded.tcprx,
            tcptx = excluded.tcptx, udprx = excluded.udprx, udptx = excluded.udptx, at = excluded.at`;
        this.statements++;
        this.rows += result.count;
        this.writes.state.statements++;
        this.writes.state.rows += result.count;
        const at = Date.now();
        for (const s of states) this.latency.state.record(at - s.since);
      }
    } catch (error) {
      // A benchmark does not retry: the figure would be meaningless. The run reports the error.
      this.flushError = error as Error;
    }
  }

  /** Stops reading and writes what is left. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    for (const req of this.requests) req.destroy();
    await this.flushing;
    await this.flush();
  }
}
