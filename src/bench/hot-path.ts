/**
 * In-process micro-benchmark of the per-event hot path: SSE bytes → `SseParser` → `NodePassPayloadParser` →
 * endpoint actor → tunnel actor → the persister's effects into its in-memory queues (the real `Persister`,
 * with no database behind it: nothing is written, the queues are emptied between batches as the supervisors
 * would). Beside it, on the same input, a reference pipeline: the same parser and `JSON.parse`, a plain
 * `Map` of tunnel states with reset-safe deltas, and plain arrays as batches. It also measures the memory of
 * idle tunnel actors (each has seen its `initial` snapshot and sits).
 *
 * Run `node dist/src/bench/hot-path.js [--events N] [--tunnels M] [--idle 10000,100000] [--json]`, or call
 * `runHotPathBench(options)` (the `tunnelpulse bench` command does). Speed belongs here, never in unit tests.
 */
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createActor, fromCallback, type Actor } from 'xstate';
import { endpointMachine, type EndpointEvent, type EndpointInput } from '../../actors/endpoint.machine.js';
import { fleetMachine } from '../../actors/fleet.machine.js';
import { tunnelMachine } from '../../actors/tunnel.machine.js';
import type { ParsedEvent } from '../../actors/model.js';
import { Persister, type PersistenceStore } from '../persistence/persister.js';
import { NodePassPayloadParser } from '../protocol/payload-parser.js';
import { SseParser } from '../protocol/sse-parser.js';
import { SteppedClock } from '../runtime/stepped-clock.js';
import { EventDelivery } from '../runtime/delivery.js';
import { Stats } from '../runtime/stats.js';

export interface HotPathBenchOptions {
  /** Events fed through the pipeline (after the initial snapshot). */
  events?: number;
  /** Tunnels the events are spread over. */
  tunnels?: number;
  /** Tunnels per endpoint (one SSE connection each). */
  tunnelsPerEndpoint?: number;
  /** Share of `log` events among them (the rest are `update`s that move counters). */
  logShare?: number;
  /** Idle-tunnel counts to measure memory for (0 or empty: skip). */
  idleTunnels?: number[];
  /** Events generated and fed per batch; the queues are emptied between batches (the supervisors' job). */
  batchSize?: number;
  /** Runs of each pipeline; the best is reported (the machine is shared and noisy). */
  rounds?: number;
  /**
   * Events per socket chunk: the runtime hands a chunk's instance events to the endpoint as one batch
   * (src/runtime/delivery.ts). 1 (or `batching: false`): one event at a time.
   */
  chunkEvents?: number;
  batching?: boolean;
  /** Progress lines. */
  log?: (line: string) => void;
}

export interface PipelineFigure {
  events: number;
  /** Wall-clock time of the feeding. */
  ms: number;
  eventsPerSecond: number;
  /** CPU time of the process over the feeding (steadier than wall time on a shared machine). */
  cpuMs: number;
  eventsPerCpuSecond: number;
  /** Garbage-collection pauses during the feeding. */
  gcMs: number;
}

export interface IdleFigure {
  tunnels: number;
  /** Growth per tunnel between half and all of the tunnels, after compacting collections (see `measureIdle`). */
  heapBytesPerTunnel: number;
  rssBytesPerTunnel: number;
  /** The former figure, for comparison: RSS growth since before building, ordinary collections, over every tunnel. */
  uncompactedRssBytesPerTunnel: number;
  spawnMs: number;
}

export interface HotPathBenchResult {
  node: string;
  tunnels: number;
  events: number;
  logShare: number;
  chunkEvents: number;
  batching: boolean;
  actors: PipelineFigure;
  reference: PipelineFigure;
  /** actors ÷ reference. */
  ratio: number;
  /** What reached the persister's queues during the actor run (proof that the effects ran). */
  queued: { states: number; logs: number; configs: number };
  idle: IdleFigure[];
}

const BASE_MS = Date.parse('2026-11-26T09:00:00.000Z');
const URL_TAIL = '?log=debug&max=16&mode=1';
const CONFIG_TAIL = '?block=0&dial=auto&dns=5m0s&log=debug&max=16&mode=1&notcp=0&noudp=0&proxy=0&rate=0&read=0s&slot=65536&type=0';

const instanceIdOf = (t: number): string => (0x10000000 + t).toString(16);
const goTime = (ms: number, nanos: number): string => new Date(ms).toISOString().replace('Z', `${String(nanos).padStart(6, '0')}Z`);

/** One NodePass `instance` event as the master writes it (PROTOCOL §5), framed as SSE. */
function sseEvent(type: string, ms: number, seq: number, tunnel: number, counters: number, logs: string): string {
  const id = instanceIdOf(tunnel);
  const port = 20000 + (tunnel % 40000);
  const instance = {
    id,
    alias: `tunnel-${tunnel}`,
    type: 'server',
    status: 'running',
    url: `server://127.0.0.1:${port}/127.0.0.1:${port + 1}${URL_TAIL}`,
    config: `server://127.0.0.1:${port}/127.0.0.1:${port + 1}${CONFIG_TAIL}`,
    restart: true,
    meta: { peer: { sid: '', type: '', alias: '' }, tags: {} },
    mode: 1,
    ping: 3,
    pool: 4,
    tcps: 2,
    udps: 0,
    tcprx: counters,
    tcptx: counters * 2,
    udprx: 0,
    udptx: 0,
  };
  const data = JSON.stringify({ type, time: goTime(ms, seq % 1_000_000), instance, logs });
  return `event: instance\ndata: ${data}\n\n`;
}

function logLine(ms: number, seq: number): string {
  const clock = new Date(ms).toISOString().replace('T', ' ').replace('Z', '');
  return `${clock}  \u001b[32mINFO\u001b[0m  TCP connection ${seq} from 127.0.0.1:${40000 + (seq % 20000)} closed`;
}

/** Feeds SSE text for the synthetic fleet, in batches of generated events (generation is not timed). */
class Workload {
  private readonly counters: Float64Array;
  seq = 0;

  constructor(
    readonly tunnels: number,
    readonly tunnelsPerEndpoint: number,
    readonly logShare: number,
  ) {
    this.counters = new Float64Array(tunnels);
  }

  get endpoints(): number {
    return Math.ceil(this.tunnels / this.tunnelsPerEndpoint);
  }

  /** The `initial` snapshot of every endpoint, as SSE text per endpoint. */
  initial(): string[] {
    const out: string[] = [];
    for (let e = 0; e < this.endpoints; e++) {
      let text = 'retry: 3000\n\n';
      const end = Math.min(this.tunnels, (e + 1) * this.tunnelsPerEndpoint);
      for (let t = e * this.tunnelsPerEndpoint; t < end; t++) text += sseEvent('initial', BASE_MS, t, t, 0, '');
      out.push(text);
    }
    return out;
  }

  /** The next `n` events, round-robin over the tunnels, as SSE text per endpoint (in arrival order). */
  next(n: number): string[][] {
    const perEndpoint: string[][] = Array.from({ length: this.endpoints }, () => []);
    for (let i = 0; i < n; i++) {
      const seq = this.seq++;
      const t = seq % this.tunnels;
      const ms = BASE_MS + 1_000 + seq; // strictly newer each time: nothing is stale
      const isLog = (seq * 2654435761) % 1000 < this.logShare * 1000;
      const text = isLog
        ? sseEvent('log', ms, seq, t, this.counters[t]!, logLine(ms, seq))
        : sseEvent('update', ms, seq, t, (this.counters[t]! += 1_000 + (seq % 7)), '');
      perEndpoint[Math.floor(t / this.tunnelsPerEndpoint)]!.push(text);
    }
    return perEndpoint;
  }
}

/** A store that is never reached: the bench never writes (the queues are emptied instead). */
const unreachableStore = new Proxy({} as PersistenceStore, {
  get: () => () => Promise.reject(new Error('the hot-path bench has no database')),
});

interface ActorPipeline extends Pipeline {
  queued: { states: number; logs: number; configs: number };
  stop(): void;
  root: Actor<typeof fleetMachine>;
}

/** The real fleet → endpoint → tunnel actors with the persister's effects, fed through the real parser. */
function startActorPipeline(endpoints: number, clock: SteppedClock, chunkEvents = 64, batching = true): ActorPipeline {
  const stats = new Stats();
  const persister = new Persister(unreachableStore, stats, () => clock.now());
  const tunnel = tunnelMachine.provide({ actions: persister.tunnelEffects });
  const endpoint = endpointMachine.provide({
    actors: { tunnel, eventStream: fromCallback(() => () => {}) },
    actions: { persistOffline: persister.endpointEffects.persistOffline },
  });
  const fleet = fleetMachine.provide({ actors: { endpoint } });
  const inputs: EndpointInput[] = Array.from({ length: endpoints }, (_, i) => ({ endpointId: i + 1, name: `bench-${i + 1}` }));
  const root = createActor(fleet, { input: { endpoints: inputs }, clock });
  root.subscribe({ error: (error) => { throw error; } });
  root.start();
  const refs = inputs.map((input) => root.getSnapshot().context.endpoints[String(input.endpointId)]!);
  const now = () => clock.now();
  const deliveries = refs.map((ref) => new EventDelivery(stats, now, (event: EndpointEvent) => ref.send(event), batching));
  const parsers = refs.map((ref, i) => {
    const delivery = deliveries[i]!;
    const payloads = new NodePassPayloadParser();
    return new SseParser({
      onEvent: (name, data) => delivery.deliver(payloads.parse(data, name)),
      onRetry: () => ref.send({ type: 'stream.opened', at: clock.now() }),
    });
  });
  // The end of a socket chunk, where the runtime's delivery hands its batch over (a microtask there).
  const fed = refs.map(() => 0);
  const queued = { states: 0, logs: 0, configs: 0 };
  return {
    root,
    queued,
    feed: (i, text) => {
      parsers[i]!.feed(text);
      if (++fed[i]! % chunkEvents === 0) deliveries[i]!.flush();
    },
    endBatch: () => deliveries.forEach((d) => d.flush()),
    drainQueues: () => {
      queued.states += persister.stateQueue.take(Number.MAX_SAFE_INTEGER).length;
      // Taken and "written": the FIFO queues hold a taken batch until told it was written.
      const logs = persister.logQueue.take(Number.MAX_SAFE_INTEGER);
      persister.logQueue.done(logs);
      queued.logs += logs.length;
      const configs = persister.configQueue.take(Number.MAX_SAFE_INTEGER);
      persister.configQueue.done(configs);
      queued.configs += configs.length;
    },
    stop: () => root.stop(),
  };
}

interface ReferenceTunnel {
  status: string;
  stateAt: number;
  last: [number, number, number, number] | null;
  traffic: [number, number, number, number];
  logLines: number;
}

/** The reference: parser + JSON.parse + a Map of plain states with reset-safe deltas + arrays as batches. */
function startReferencePipeline(endpoints: number) {
  const tunnels = new Map<string, ReferenceTunnel>();
  let stateBatch = new Map<string, ReferenceTunnel>();
  let logBatch: Array<{ id: string; time: string; logs: string }> = [];
  const queued = { states: 0, logs: 0, configs: 0 };
  const parsers = Array.from({ length: endpoints }, (_, e) =>
    new SseParser({
      onEvent: (_name, data) => {
        const raw = JSON.parse(data) as { type: string; time: string; instance: Record<string, any>; logs: string };
        const inst = raw.instance;
        const key = `${e + 1}/${inst['id']}`;
        let t = tunnels.get(key);
        if (!t) tunnels.set(key, (t = { status: inst['status'], stateAt: 0, last: null, traffic: [0, 0, 0, 0], logLines: 0 }));
        if (raw.type === 'log') {
          t.logLines++;
          logBatch.push({ id: key, time: raw.time, logs: raw.logs });
        }
        const at = Date.parse(raw.time);
        if (at < t.stateAt) return;
        const now: [number, number, number, number] = [inst['tcprx'], inst['tcptx'], inst['udprx'], inst['udptx']];
        if (t.last) for (let k = 0; k < 4; k++) t.traffic[k]! += now[k]! >= t.last[k]! ? now[k]! - t.last[k]! : now[k]!;
        t.last = now;
        t.stateAt = at;
        t.status = inst['status'];
        stateBatch.set(key, t);
      },
    }),
  );
  return {
    tunnels,
    queued,
    feed: (i: number, text: string) => parsers[i]!.feed(text),
    endBatch: () => {},
    drainQueues: () => {
      queued.states += stateBatch.size;
      queued.logs += logBatch.length;
      stateBatch = new Map();
      logBatch = [];
    },
  };
}

function collectGarbage(compact = false): void {
  // `compact`: every full collection compacts the old generation, as V8's memory reducer does once an idle
  // process has been idle a few seconds (src/bench/memory-child.ts explains why the idle figures want it).
  if (compact) setFlagsFromString('--compact-on-every-full-gc');
  try {
    const g = (globalThis as { gc?: () => void }).gc;
    if (g) return void (g(), g());
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    gc();
    gc();
  } finally {
    if (compact) setFlagsFromString('--no-compact-on-every-full-gc');
  }
}

/**
 * Collections with pauses between them, then the memory: V8 gives freed pages back to the system from a background
 * thread, so RSS read right after a collection still counts some of them.
 */
async function settle(compact: boolean): Promise<NodeJS.MemoryUsage> {
  for (let i = 0; i < 3; i++) {
    collectGarbage(compact);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return process.memoryUsage();
}

interface Pipeline {
  feed(endpoint: number, text: string): void;
  /** End of the timed batch: anything still gathered is handed over (inside the timed window). */
  endBatch(): void;
  drainQueues(): void;
}

/** Feeds the workload's batches through a pipeline; only the feeding is timed. */
async function timeRun(pipeline: Pipeline, workload: Workload, events: number, batchSize: number, clock: SteppedClock | null): Promise<PipelineFigure> {
  let ms = 0;
  let cpuUs = 0;
  // GC pauses are reported asynchronously: keep the timed windows and the entries, and match them at the end.
  const windows: Array<[number, number]> = [];
  const pauses: Array<[number, number]> = [];
  const gcObserver = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) pauses.push([entry.startTime, entry.duration]);
  });
  gcObserver.observe({ entryTypes: ['gc'] });
  let done = 0;
  while (done < events) {
    const n = Math.min(batchSize, events - done);
    const batch = workload.next(n);
    if (clock) clock.advanceTo(BASE_MS + 1_000 + workload.seq);
    // The generator's garbage is collected before the clock starts, so it is not billed to the pipeline.
    collectGarbage();
    const cpuStarted = process.cpuUsage();
    const started = performance.now();
    for (let e = 0; e < batch.length; e++) for (const text of batch[e]!) pipeline.feed(e, text);
    pipeline.endBatch();
    const ended = performance.now();
    ms += ended - started;
    windows.push([started, ended]);
    const cpu = process.cpuUsage(cpuStarted);
    cpuUs += cpu.user + cpu.system;
    pipeline.drainQueues();
    done += n;
  }
  await new Promise((resolve) => setTimeout(resolve, 20));
  gcObserver.disconnect();
  let gcMs = 0;
  for (const [start, duration] of pauses) if (windows.some(([a, b]) => start >= a && start < b)) gcMs += duration;
  return {
    events,
    ms: Math.round(ms),
    eventsPerSecond: Math.round((events / ms) * 1000),
    cpuMs: Math.round(cpuUs / 1000),
    eventsPerCpuSecond: Math.round((events / cpuUs) * 1e6),
    gcMs: Math.round(gcMs),
  };
}

/**
 * Memory per idle tunnel actor: the growth between two points of one process, half of the endpoints' tunnels and
 * all of them, after compacting collections, divided by the tunnels added (the method of memory-child.ts: what
 * does not grow with the tunnels cancels out, and the build's garbage does not count). `uncompacted` is the former
 * figure: growth since before building, after ordinary collections, divided by every tunnel.
 */
async function measureIdle(tunnels: number, tunnelsPerEndpoint: number): Promise<IdleFigure> {
  const workload = new Workload(tunnels, tunnelsPerEndpoint, 0);
  if (workload.endpoints < 2) throw new Error(`idle memory needs at least 2 endpoints (${tunnels} tunnels, ${tunnelsPerEndpoint} per endpoint)`);
  const snapshots = workload.initial();
  const before = await settle(false);
  const clock = new SteppedClock(BASE_MS);
  const pipeline = startActorPipeline(workload.endpoints, clock);
  const half = Math.floor(workload.endpoints / 2);
  const points: Array<{ held: number; memory: NodeJS.MemoryUsage }> = [];
  let uncompacted: NodeJS.MemoryUsage | null = null;
  let spawnMs = 0;
  for (const [from, to] of [[0, half], [half, workload.endpoints]] as const) {
    const stepStarted = performance.now();
    for (let e = from; e < to; e++) pipeline.feed(e, snapshots[e]!);
    pipeline.endBatch();
    // The snapshot ends after its quiet period; the tunnels then sit idle.
    clock.advanceTo(clock.now() + 5_000);
    pipeline.drainQueues();
    spawnMs += performance.now() - stepStarted;
    if (to === workload.endpoints) uncompacted = await settle(false);
    points.push({ held: countTunnels(pipeline), memory: await settle(true) });
  }
  const [first, last] = [points[0]!, points[1]!];
  if (last.held !== tunnels) throw new Error(`expected ${tunnels} tunnel actors, found ${last.held}`);
  const added = last.held - first.held;
  const figure = {
    tunnels,
    heapBytesPerTunnel: Math.round((last.memory.heapUsed - first.memory.heapUsed) / added),
    rssBytesPerTunnel: Math.round((last.memory.rss - first.memory.rss) / added),
    uncompactedRssBytesPerTunnel: Math.round((uncompacted!.rss - before.rss) / tunnels),
    spawnMs: Math.round(spawnMs),
  };
  pipeline.stop();
  return figure;
}

function countTunnels(pipeline: ActorPipeline): number {
  const live = pipeline.root.getSnapshot().context.endpoints;
  return Object.values(live).reduce((n, ref) => n + Object.keys(ref.getSnapshot().context.tunnels).length, 0);
}

export async function runHotPathBench(options: HotPathBenchOptions = {}): Promise<HotPathBenchResult> {
  const events = options.events ?? 200_000;
  const tunnels = options.tunnels ?? 1_000;
  const perEndpoint = options.tunnelsPerEndpoint ?? 500;
  const logShare = options.logShare ?? 0.2;
  const batchSize = options.batchSize ?? 20_000;
  const rounds = options.rounds ?? 2;
  const batching = options.batching ?? true;
  const chunkEvents = batching ? Math.max(1, options.chunkEvents ?? 64) : 1;
  const log = options.log ?? (() => {});

  let best: { actors: PipelineFigure; reference: PipelineFigure; queued: HotPathBenchResult['queued'] } | null = null;
  for (let round = 0; round < rounds; round++) {
    // Actors.
    const workload = new Workload(tunnels, perEndpoint, logShare);
    const clock = new SteppedClock(BASE_MS);
    const actors = startActorPipeline(workload.endpoints, clock, chunkEvents, batching);
    workload.initial().forEach((text, e) => actors.feed(e, text));
    actors.endBatch();
    actors.drainQueues();
    const actorFigure = await timeRun(actors, workload, events, batchSize, clock);
    const queued = { ...actors.queued };
    actors.stop();
    collectGarbage();
    // Reference, on the same input.
    const refWorkload = new Workload(tunnels, perEndpoint, logShare);
    const reference = startReferencePipeline(refWorkload.endpoints);
    refWorkload.initial().forEach((text, e) => reference.feed(e, text));
    reference.drainQueues();
    const referenceFigure = await timeRun(reference, refWorkload, events, batchSize, null);
    collectGarbage();
    log(
      `round ${round + 1}: actors ${actorFigure.eventsPerSecond} events/s (${actorFigure.eventsPerCpuSecond} per CPU s, ` +
        `GC ${actorFigure.gcMs} of ${actorFigure.ms} ms), reference ${referenceFigure.eventsPerSecond} events/s ` +
        `(${referenceFigure.eventsPerCpuSecond} per CPU s, GC ${referenceFigure.gcMs} of ${referenceFigure.ms} ms)`,
    );
    if (!best || actorFigure.eventsPerSecond > best.actors.eventsPerSecond) best = { actors: actorFigure, reference: referenceFigure, queued };
    else if (referenceFigure.eventsPerSecond > best.reference.eventsPerSecond) best.reference = referenceFigure;
  }

  const idle: IdleFigure[] = [];
  for (const n of options.idleTunnels ?? [10_000, 100_000]) {
    if (n <= 0) continue;
    const figure = await measureIdle(n, perEndpoint);
    log(
      `idle ${n}: ${figure.heapBytesPerTunnel} B heap, ${figure.rssBytesPerTunnel} B RSS per tunnel ` +
        `(uncompacted, since before building: ${figure.uncompactedRssBytesPerTunnel} B; spawned in ${figure.spawnMs} ms)`,
    );
    idle.push(figure);
    collectGarbage();
  }

  return {
    node: process.version,
    tunnels,
    events,
    logShare,
    chunkEvents,
    batching,
    actors: best!.actors,
    reference: best!.reference,
    ratio: Math.round((best!.actors.eventsPerSecond / best!.reference.eventsPerSecond) * 100) / 100,
    queued: best!.queued,
    idle,
  };
}

function parseArgs(argv: string[]): HotPathBenchOptions & { json: boolean } {
  const out: HotPathBenchOptions & { json: boolean } = { json: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    if (arg === '--events') out.events = Number(value());
    else if (arg === '--tunnels') out.tunnels = Number(value());
    else if (arg === '--per-endpoint') out.tunnelsPerEndpoint = Number(value());
    else if (arg === '--log-share') out.logShare = Number(value());
    else if (arg === '--rounds') out.rounds = Number(value());
    else if (arg === '--chunk') out.chunkEvents = Number(value());
    else if (arg === '--no-batching') out.batching = false;
    else if (arg === '--idle') out.idleTunnels = value().split(',').map(Number);
    else if (arg === '--json') out.json = true;
    else throw new Error(`unknown option ${arg}`);
  }
  return out;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { json, ...options } = parseArgs(process.argv.slice(2));
  const result = await runHotPathBench({ ...options, log: json ? undefined : (line) => process.stderr.write(`${line}\n`) });
  process.stdout.write(`${JSON.stringify(result, null, json ? 0 : 2)}\n`);
}
