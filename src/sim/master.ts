/**
 * One simulated NodePass master: its instances, its REST API and SSE stream under `<prefix>/v1`, its periodic
 * checkpoints and log lines, and the fault controls used by tests, benchmarks and drills.
 * It owns no listening socket; `simulator.ts` routes requests here by path prefix, so one HTTP server can host
 * a thousand masters. Behaviour follows PROTOCOL.md (section numbers in the comments).
 */
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import {
  COUNTER_KEYS,
  type Counters,
  type InstanceMeta,
  type InstanceStatus,
  type NodePassEventType,
} from '../../actors/model.js';
import {
  encodeEnvelope,
  encodeInstance,
  GoTimeStamper,
  goJsonString,
  sseFrame,
  type WireInstance,
} from './go-wire.js';
import {
  parseJsonObject,
  readBody,
  replyError,
  replyGoNotFound,
  replyJson,
  replyNoContent,
  replyRaw,
  SSE_HEADERS,
} from './go-http.js';
import {
  configuredMode,
  enhanceInstanceUrl,
  instanceConfig,
  InvalidInstanceUrl,
  parseInstanceUrl,
  type InstanceType,
} from './instance-url.js';
import {
  errorLogMessage,
  formatLogLine,
  restartLogMessage,
  shutdownLogMessage,
  startupLogMessages,
  trafficLogMessage,
  tunnelEndpoints,
  type LogMessage,
  type TunnelEndpoints,
} from './log-lines.js';
import { API_KEY_RECORD_ID } from '../protocol/events.js';
import { encodeMasterInfo, tcping } from './master-info.js';
import { Prng } from './prng.js';
import { SseSubscriber, type DeliveryMode, type SubscriberStats } from './subscriber.js';
import {
  addProcessTraffic,
  applyCheckpoint,
  newTrafficState,
  reportedCounters,
  resetTraffic,
  startProcess,
  type TrafficState,
} from './traffic-counters.js';

export { API_KEY_RECORD_ID };

export interface InstanceSpec {
  id?: string;
  alias?: string;
  /** `server://…` or `client://…`, as given to `POST /instances`; enhanced like the master does. */
  url: string;
  /** Default `running`. */
  status?: 'running' | 'stopped';
  /** The auto-start policy, default true. */
  restart?: boolean;
  meta?: Partial<InstanceMeta>;
  /** Counter values the instance starts with (as if persisted from earlier runs). */
  counters?: Partial<Counters>;
}

export interface MasterOptions {
  /** A label for reports and the CLI output; default `m<index>`. */
  name?: string;
  /** The master URL path, default `/api` (the API lives under `<prefix>/v1`). */
  prefix?: string;
  /** 32 lowercase hex; derived from the seed when absent. */
  apiKey?: string;
  /** 16 hex; derived from the seed when absent. */
  masterId?: string;
  alias?: string;
  /** How many instances to generate (server/client pairs), or explicit specs. Default 2. */
  instances?: number | InstanceSpec[];
  /** `NP_REPORT_INTERVAL`: checkpoint cadence, default 5000 ms. 0 turns periodic checkpoints off (call `checkpoint()`). */
  reportIntervalMs?: number;
  /** Traffic log lines per second per running instance, default 0. */
  logRate?: number;
  /**
   * Start each instance's log-rate accumulator at a seeded random phase, so that with rates below one line per
   * tick the instances do not all log in the same tick (a benchmark's steady load). Default false.
   */
  spreadLogs?: boolean;
  /** The master's `log=` level, added to every instance URL; `debug` adds DEBUG chatter. Default `info`. */
  logLevel?: 'debug' | 'info';
  /** `drop`: the master's 10-event subscriber buffer, drop on full. `lossless` (default): never drop. */
  delivery?: DeliveryMode;
  /** Grow counters by seeded random amounts at every checkpoint. Default true. */
  autoTraffic?: boolean;
  /** Log the start/stop lines of instance processes. Default true. */
  lifecycleLogs?: boolean;
  /** The pause between stop and start in `restart` and PUT, default 100 ms like the master. */
  restartDelayMs?: number;
  /** Seeds ids, keys, snapshot order, traffic and log content. Random when absent. */
  seed?: string | number;
  /** Epoch ms for event `time`, log timestamps and `uptime`. Default `Date.now`. */
  clock?: () => number;
  /** `ver` in `/info`. */
  version?: string;
  /** Reproduce the `/info` bug: `mid` is `""` until the master has been restarted once (§3.6). Default true. */
  midBug?: boolean;
}

export type StreamGarbage = 'not-json' | 'wrong-shape' | 'unknown-type' | 'counter-overflow' | 'huge-line';
export type ResponseGarbage = 'html-200' | 'empty-200';
export type GarbageKind = StreamGarbage | ResponseGarbage;

export interface GarbageOptions {
  /** `huge-line`: how many bytes to write with no newline (default 2 MiB). */
  bytes?: number;
  /** `html-200` / `empty-200`: how many following requests get the bad answer (default 1). */
  responses?: number;
}

export interface FailOptions {
  /** Keep failing (an error line every interval, no checkpoints) until stopped or restarted. Default false: recover at the next checkpoint. */
  persistent?: boolean;
}

export interface MasterStats {
  name: string;
  up: boolean;
  stalled: boolean;
  /** Open SSE streams now. */
  connections: number;
  /** SSE streams accepted since start. */
  totalConnections: number;
  requests: number;
  /** Events dispatched to subscribers (initial snapshots not included). */
  eventsEmitted: number;
  eventsByType: Record<NodePassEventType, number>;
  /** Frames written to sockets over all subscribers, initial snapshots included. */
  framesSent: number;
  /** Events lost to full subscriber buffers over all subscribers. */
  dropped: number;
  garbageInjected: number;
  /** Streams made half-open by `halfOpenStreams()`. */
  halfOpened: number;
  /** Events that reached no subscriber because of `loseEvents()`. */
  lost: number;
  subscribers: SubscriberStats[];
}

/** What `onEvent` listeners see: every event the master dispatches, as written. */
export interface EmittedEvent {
  type: NodePassEventType;
  instanceId: string | null;
  /** The JSON of the `data:` line. */
  data: string;
}

interface SimInstance {
  id: string;
  alias: string;
  type: InstanceType;
  status: InstanceStatus;
  url: string;
  config: string;
  restart: boolean;
  meta: InstanceMeta;
  mode: number;
  ping: number;
  pool: number;
  tcps: number;
  udps: number;
  traffic: TrafficState;
  configuredMode: number;
  ends: TunnelEndpoints;
  tunnelKey: string;
  /** Seeded stream for checkpoint amounts and gauges: the n-th checkpoint is the same for the same seed. */
  trafficPrng: Prng;
  logPrng: Prng;
  /** Last `seq=` stamped into a log line. */
  logSeq: number;
  logCarry: number;
  failure: 'none' | 'recovering' | 'persistent';
  deleted: boolean;
  /** Bumped by every start and stop, so a delayed start can tell that something else happened meanwhile. */
  run: number;
}

const LOG_TICK_MS = 100;
const EMPTY_META = (): InstanceMeta => ({ peer: { sid: '', type: '', alias: '' }, tags: {} });
const ACTIONS = new Set(['start', 'stop', 'restart', 'reset']);

export class SimulatedMaster {
  readonly name: string;
  /** `/api` or `/m3/api`: the path of the master URL. */
  readonly prefix: string;
  /** `<prefix>/v1`, where the routes live. */
  readonly apiPath: string;

  private apiKeyValue: string;
  readonly masterId: string;
  private alias: string;
  private readonly instances = new Map<string, SimInstance>();
  private readonly subscribers = new Set<SseSubscriber>();
  private readonly sockets = new Set<Socket>();
  /** Checkpoint and log timers, stopped by a shutdown. */
  private readonly periodic = new Set<NodeJS.Timeout>();
  /** One-off delays (restart pauses, downtime) and how to end them early: `close()` settles them all. */
  private readonly delays = new Map<NodeJS.Timeout, () => void>();
  /** Requests that arrived while stalled: answered on `unstall()`, cut on shutdown or close. */
  private readonly heldRequests: Array<{ socket: Socket; resume: () => void }> = [];
  private readonly listeners = new Set<(event: EmittedEvent) => void>();
  private readonly streamsClosedWaiters = new Set<() => void>();
  private readonly retiredSubscribers: SubscriberStats[] = [];
  private readonly stamper: GoTimeStamper;
  private readonly idPrng: Prng;
  private readonly orderPrng: Prng;
  private readonly seedPrng: Prng;
  private readonly clock: () => number;
  private readonly reportIntervalMs: number;
  private readonly logRate: number;
  private readonly spreadLogs: boolean;
  private readonly logLevel: 'debug' | 'info';
  private readonly delivery: DeliveryMode;
  private readonly autoTraffic: boolean;
  private readonly lifecycleLogs: boolean;
  private readonly restartDelayMs: number;
  private readonly version: string;
  private readonly hostName: string;

  private up = true;
  private stalled = false;
  private closed = false;
  private startedAt: number;
  private midKnown: boolean;
  private httpFailure: number | null = null;
  private armedResponses: ResponseGarbage[] = [];
  private subscriberSeq = 0;
  private toLose = 0;
  private counts = {
    totalConnections: 0,
    requests: 0,
    eventsEmitted: 0,
    garbageInjected: 0,
    halfOpened: 0,
    lost: 0,
    retiredSent: 0,
    retiredDropped: 0,
    eventsByType: { initial: 0, create: 0, update: 0, delete: 0, shutdown: 0, log: 0 } as Record<NodePassEventType, number>,
  };

  constructor(options: MasterOptions & { name: string; seed: string; hostName: string }) {
    this.name = options.name;
    this.prefix = normalisePrefix(options.prefix ?? '/api');
    this.apiPath = `${this.prefix}/v1`;
    this.seedPrng = new Prng(options.seed);
    this.idPrng = this.seedPrng.fork('ids');
    this.orderPrng = this.seedPrng.fork('order');
    this.clock = options.clock ?? Date.now;
    this.stamper = new GoTimeStamper(this.clock);
    this.apiKeyValue = options.apiKey ?? this.idPrng.hex(16);
    this.masterId = options.masterId ?? this.idPrng.hex(8);
    this.alias = options.alias ?? '';
    this.reportIntervalMs = Math.max(0, options.reportIntervalMs ?? 5000);
    this.logRate = Math.max(0, options.logRate ?? 0);
    this.spreadLogs = options.spreadLogs ?? false;
    this.logLevel = options.logLevel ?? 'info';
    this.delivery = options.delivery ?? 'lossless';
    this.autoTraffic = options.autoTraffic ?? true;
    this.lifecycleLogs = options.lifecycleLogs ?? true;
    this.restartDelayMs = Math.max(0, options.restartDelayMs ?? 100);
    this.version = options.version ?? 'dev-sim';
    this.hostName = options.hostName;
    this.midKnown = !(options.midBug ?? true);
    this.startedAt = this.clock();

    const specs = typeof options.instances === 'object' ? options.instances : generateSpecs(options.instances ?? 2, this.idPrng);
    for (const spec of specs) this.addInstance(spec);
    this.startTimers();
  }

  // ---------------------------------------------------------------- identity and inspection

  get apiKey(): string {
    return this.apiKeyValue;
  }

  get isUp(): boolean {
    return this.up;
  }

  instanceIds(): string[] {
    return [...this.instances.keys()];
  }

  /** The instance as the master would serialise it now (parsed from the exact wire JSON). */
  instance(id: string): WireInstance | undefined {
    const inst = this.instances.get(id);
    return inst ? (JSON.parse(encodeInstance(this.wire(inst))) as WireInstance) : undefined;
  }

  /** The last `seq=` number stamped into a log line of this instance (0 before the first). */
  logSequence(id: string): number {
    return this.instances.get(id)?.logSeq ?? 0;
  }

  onEvent(listener: (event: EmittedEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  stats(): MasterStats {
    const live = [...this.subscribers].map((s) => s.stats());
    return {
      name: this.name,
      up: this.up,
      stalled: this.stalled,
      connections: [...this.subscribers].filter((s) => s.isOpen).length,
      totalConnections: this.counts.totalConnections,
      requests: this.counts.requests,
      eventsEmitted: this.counts.eventsEmitted,
      eventsByType: { ...this.counts.eventsByType },
      framesSent: this.counts.retiredSent + live.reduce((n, s) => n + s.sent, 0),
      dropped: this.counts.retiredDropped + live.reduce((n, s) => n + s.dropped, 0),
      garbageInjected: this.counts.garbageInjected,
      halfOpened: this.counts.halfOpened,
      lost: this.counts.lost,
      subscribers: [...this.retiredSubscribers, ...live],
    };
  }

  // ---------------------------------------------------------------- instance controls

  /** Like `POST /instances`: `create`, then the start (`update(running)`) unless `status: 'stopped'`. */
  createInstance(spec: InstanceSpec): WireInstance {
    const inst = this.addInstance({ ...spec, status: 'stopped' });
    this.emit('create', inst);
    if ((spec.status ?? 'running') === 'running') this.startRun(inst);
    return this.instance(inst.id)!;
  }

  startInstance(id: string): void {
    const inst = this.require(id);
    if (inst.status === 'stopped') this.startRun(inst);
  }

  stopInstance(id: string): void {
    const inst = this.require(id);
    if (inst.status !== 'stopped') this.stopRun(inst);
  }

  /** `update(stopped)` now, `update(running)` after the restart delay; resolves once running. */
  restartInstance(id: string): Promise<void> {
    return this.restartRun(this.require(id));
  }

  resetCounters(id: string): void {
    const inst = this.require(id);
    resetTraffic(inst.traffic);
    this.emit('update', inst);
  }

  /** `DELETE /instances/{id}`: `update(stopped)` if it was not stopped, then `delete`. */
  deleteInstance(id: string): void {
    this.removeInstance(this.require(id));
  }

  /**
   * A process error: an ERROR `… error:` log line whose instance already says `error`, and no `update`
   * (PROTOCOL §5.6). It recovers to `running` at the next checkpoint unless `persistent`.
   */
  failInstance(id: string, options: FailOptions = {}): void {
    const inst = this.require(id);
    if (inst.status === 'stopped') throw new Error(`instance ${id} is stopped; only a running instance can fail`);
    inst.status = 'error';
    inst.failure = options.persistent ? 'persistent' : 'recovering';
    zeroGauges(inst);
    this.log(inst, errorLogMessage(inst.ends));
  }

  /** Bytes moved by the instance process; they show in the counters from the next checkpoint on. */
  addTraffic(id: string, bytes: Partial<Counters>): void {
    addProcessTraffic(this.require(id).traffic, bytes);
  }

  /** Runs a checkpoint now, for one instance or all, as the periodic timer does. */
  checkpoint(id?: string): void {
    if (id !== undefined) this.checkpointInstance(this.require(id));
    else for (const inst of this.instances.values()) this.checkpointInstance(inst);
  }

  /** Emits log lines now: `count` generated traffic lines, or the given INFO messages. */
  emitLogs(id: string, lines: number | readonly string[]): void {
    const inst = this.require(id);
    if (typeof lines === 'number') {
      for (let i = 0; i < lines; i++) this.log(inst, trafficLogMessage(inst.logPrng, inst.ends, this.isDebug(inst)));
    } else {
      for (const message of lines) this.log(inst, { level: 'INFO', message });
    }
  }

  // ---------------------------------------------------------------- master-level faults

  /**
   * Key rotation (`PATCH /instances/********` with `restart`): every stream gets `shutdown` and is closed,
   * the old key gets 401 from now on. Returns the new key.
   */
  rotateKey(): string {
    this.apiKeyValue = this.idPrng.hex(16);
    this.closeStreams(true);
    return this.apiKeyValue;
  }

  /**
   * SIGTERM: `shutdown` to every stream, instances stopped, then the master is gone: later requests have their
   * connection cut, until `restartMaster()`.
   */
  shutdown(): void {
    if (!this.up) return;
    this.releaseHeld(false);
    if (this.stalled) {
      // The streams must be writable again to carry the `shutdown`.
      this.stalled = false;
      for (const sub of this.subscribers) sub.unstall();
    }
    this.closeStreams(true);
    for (const inst of this.instances.values()) {
      if (inst.status !== 'stopped') this.stopRun(inst, false);
    }
    this.up = false;
    this.stopTimers();
  }

  /**
   * Shutdown, then start again from the persisted state: same key and id, counters kept, every instance
   * loaded as stopped and the `restart: true` ones started before anyone can connect (§7). From now on `/info`
   * reports `mid` (the first-run bug is gone after a restart, §3.6).
   */
  async restartMaster(options: { downtimeMs?: number } = {}): Promise<void> {
    this.shutdown();
    if (options.downtimeMs) await this.delay(options.downtimeMs);
    if (this.closed) return;
    this.up = true;
    this.midKnown = true;
    this.startedAt = this.clock();
    for (const inst of this.instances.values()) {
      if (inst.restart) this.startRun(inst);
    }
    this.startTimers();
  }

  /** A crash as seen from the network: every socket of this master is destroyed, no `shutdown`. */
  dropConnections(): void {
    for (const socket of this.sockets) socket.destroy();
  }

  /**
   * Half-open: open streams get no more bytes and their sockets are not read; every new request (`/info`
   * included) hangs until `unstall()`. Events keep being produced meanwhile (and dropped in `drop` mode).
   */
  stall(): void {
    this.stalled = true;
    for (const sub of this.subscribers) sub.stall();
  }

  /**
   * Half-open streams, the master still healthy: every open stream is silently forgotten (as when a NAT or a
   * firewall dropped the connection's state, or the master's side died without a FIN): it gets no more bytes,
   * ever, and its socket stays open. The master goes on producing events for its other subscribers and answers
   * every request as usual, so `/info` succeeds while the client's stream is dead.
   */
  halfOpenStreams(): number {
    let count = 0;
    for (const sub of [...this.subscribers]) {
      sub.stall();
      this.subscribers.delete(sub);
      this.retire(sub, true);
      count++;
    }
    this.counts.halfOpened += count;
    return count;
  }

  /**
   * The next `count` events reach no subscriber, as when NodePass's dispatcher finds the subscriber buffers full
   * (PROTOCOL §7): lost without notice, the stream itself stays healthy. Deterministic, unlike a real overflow.
   */
  loseEvents(count: number): void {
    this.toLose += Math.max(0, count);
  }

  unstall(): void {
    if (!this.stalled) return;
    this.stalled = false;
    for (const sub of this.subscribers) sub.unstall();
    this.releaseHeld(true);
  }

  /** Answer every request with this status (401/403/404/500…) until cleared with null. */
  setHttpFailure(status: number | null): void {
    this.httpFailure = status;
  }

  injectGarbage(kind: GarbageKind, options: GarbageOptions = {}): void {
    this.counts.garbageInjected++;
    if (kind === 'html-200' || kind === 'empty-200') {
      for (let i = 0; i < (options.responses ?? 1); i++) this.armedResponses.push(kind);
      return;
    }
    const chunk = this.garbageChunk(kind, options);
    for (const sub of this.subscribers) sub.push(chunk);
  }

  /** Releases timers, held requests and sockets. The master cannot be used afterwards. */
  close(): void {
    this.closed = true;
    this.up = false;
    this.stopTimers();
    for (const [timer, settle] of this.delays) {
      clearTimeout(timer);
      settle();
    }
    this.delays.clear();
    this.releaseHeld(false);
    for (const socket of this.sockets) socket.destroy();
    this.listeners.clear();
  }

  // ---------------------------------------------------------------- HTTP

  /** Entry point from the router; `path` is what follows `apiPath` (`/events`, `/instances/ab12cd34`…). */
  handle(req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams): void {
    this.counts.requests++;
    this.trackSocket(req.socket);
    this.serve(req, res, path, query);
  }

  private serve(req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams): void {
    if (!this.up) {
      // Nobody listens here any more: the closest a shared server can get to "connection refused".
      req.socket.destroy();
      return;
    }
    if (this.stalled) {
      this.heldRequests.push({ socket: req.socket, resume: () => this.serve(req, res, path, query) });
      return;
    }
    const armed = this.armedResponses.shift();
    if (armed === 'html-200') {
      return replyRaw(res, 200, 'text/html; charset=utf-8', '<!DOCTYPE html><html><head><title>Welcome</title></head><body><h1>It works!</h1></body></html>\n');
    }
    if (armed === 'empty-200') return replyRaw(res, 200, null, '');
    if (this.httpFailure !== null) return this.replyFailure(res, this.httpFailure);

    if (req.method === 'OPTIONS') return replyNoContent(res, 200);
    if (path === '/openapi.json') return this.replyOpenApi(res);
    if (path === '/docs') return replyRaw(res, 200, 'text/html; charset=utf-8', '<!DOCTYPE html><html><body>NodePass API (simulated)</body></html>\n');
    if (!isKnownRoute(path)) return replyGoNotFound(res);

    const key = req.headers['x-api-key'];
    const given = Array.isArray(key) ? key[0] : key;
    if (!given) return replyError(res, 401, 'Unauthorized: API key required');
    if (given !== this.apiKeyValue) return replyError(res, 401, 'Unauthorized: Invalid API key');

    if (path === '/events') return this.routeEvents(req, res);
    const route =
      path === '/info'
        ? this.routeInfo(req, res)
        : path === '/tcping'
          ? this.routeTcping(req, res, query)
          : path === '/instances'
            ? this.routeInstances(req, res)
            : this.routeInstance(req, res, safeDecode(path.slice('/instances/'.length)));
    route.catch((error: unknown) => {
      if (!res.headersSent) replyError(res, 500, error instanceof Error ? error.message : String(error));
    });
  }

  private routeEvents(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== 'GET') return replyError(res, 405, 'Method not allowed');
    const subscriber = new SseSubscriber(++this.subscriberSeq, res, req.socket, this.delivery, (s) => this.retire(s));
    this.subscribers.add(subscriber);
    this.counts.totalConnections++;
    const records = this.orderPrng.shuffled([this.apiKeyRecord(), ...[...this.instances.values()].map((i) => this.wire(i))]);
    const frames = records.map((record) => sseFrame(encodeEnvelope('initial', this.stamper.stamp(), encodeInstance(record))));
    this.counts.eventsByType.initial += frames.length;
    subscriber.open(SSE_HEADERS, frames);
  }

  private async routeInfo(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method === 'POST') {
      const body = parseJsonObject(await readBody(req));
      if (body && typeof body['alias'] === 'string') this.alias = body['alias'];
    } else if (req.method !== 'GET') {
      return replyError(res, 405, 'Method not allowed');
    }
    replyJson(res, 200, this.infoJson());
  }

  private async routeTcping(req: IncomingMessage, res: ServerResponse, query: URLSearchParams): Promise<void> {
    if (req.method !== 'GET') return replyError(res, 405, 'Method not allowed');
    const target = query.get('target');
    if (!target) return replyError(res, 400, 'Target address required');
    replyJson(res, 200, await tcping(target, Math.min(this.reportIntervalMs || 5000, 5000)));
  }

  private async routeInstances(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method === 'GET') {
      const records = this.orderPrng.shuffled([this.apiKeyRecord(), ...[...this.instances.values()].map((i) => this.wire(i))]);
      return replyJson(res, 200, `[${records.map(encodeInstance).join(',')}]`);
    }
    if (req.method !== 'POST') return replyError(res, 405, 'Method not allowed');
    const body = parseJsonObject(await readBody(req));
    const url = body?.['url'];
    if (typeof url !== 'string' || url === '') return replyError(res, 400, 'Invalid request body');
    const alias = typeof body?.['alias'] === 'string' ? (body['alias'] as string) : '';
    let inst: SimInstance;
    try {
      inst = this.addInstance({ url, alias, status: 'stopped' });
    } catch (error) {
      if (error instanceof InvalidInstanceUrl) return replyError(res, 400, error.message);
      throw error;
    }
    replyJson(res, 201, encodeInstance(this.wire(inst)));
    this.emit('create', inst);
    this.startRun(inst);
  }

  private async routeInstance(req: IncomingMessage, res: ServerResponse, id: string): Promise<void> {
    if (id === '') return replyError(res, 400, 'Instance ID is required');
    if (id === API_KEY_RECORD_ID) return this.routeApiKeyRecord(req, res);
    const inst = this.instances.get(id);
    if (!inst) return replyError(res, 404, 'Instance not found');
    switch (req.method) {
      case 'GET':
        return replyJson(res, 200, encodeInstance(this.wire(inst)));
      case 'PATCH':
        return this.patchInstance(res, inst, parseJsonObject(await readBody(req)));
      case 'PUT':
        return this.putInstance(res, inst, parseJsonObject(await readBody(req)));
      case 'DELETE':
        this.removeInstance(inst);
        return replyNoContent(res);
      default:
        return replyError(res, 405, 'Method not allowed');
    }
  }

  private async routeApiKeyRecord(req: IncomingMessage, res: ServerResponse): Promise<void> {
    switch (req.method) {
      case 'GET':
        return replyJson(res, 200, encodeInstance(this.apiKeyRecord()));
      case 'PATCH': {
        const body = parseJsonObject(await readBody(req));
        if (body?.['action'] === 'restart') {
          this.apiKeyValue = this.idPrng.hex(16);
          replyJson(res, 200, encodeInstance(this.apiKeyRecord()));
          this.closeStreams(true);
          return;
        }
        return replyJson(res, 200, encodeInstance(this.apiKeyRecord()));
      }
      case 'PUT':
      case 'DELETE':
        return replyError(res, 403, 'Forbidden: API Key');
      default:
        return replyError(res, 405, 'Method not allowed');
    }
  }

  /** §3.3: alias, action, restart policy, meta, in that order; one `update` per changed part. */
  private patchInstance(res: ServerResponse, inst: SimInstance, body: Record<string, unknown> | undefined): void {
    if (!body) return replyJson(res, 200, encodeInstance(this.wire(inst)));
    const alias = body['alias'];
    if (typeof alias === 'string' && alias !== '' && alias !== inst.alias) {
      inst.alias = alias;
      this.emit('update', inst);
    }
    const action = typeof body['action'] === 'string' ? (body['action'] as string) : '';
    if (action !== '' && !ACTIONS.has(action)) return replyError(res, 400, `Invalid action: ${action}`);
    // `reset` is synchronous (the response already shows zeros); the others run after the response (§3.3).
    if (action === 'reset') this.resetCounters(inst.id);
    const restart = body['restart'];
    if (typeof restart === 'boolean' && restart !== inst.restart) {
      inst.restart = restart;
      this.emit('update', inst);
    }
    const meta = body['meta'];
    if (typeof meta === 'object' && meta !== null) {
      const { peer, tags } = meta as Record<string, unknown>;
      if (typeof peer === 'object' && peer !== null) {
        const p = peer as Record<string, unknown>;
        inst.meta.peer = { sid: stringOr(p['sid']), type: stringOr(p['type']), alias: stringOr(p['alias']) };
      }
      if (typeof tags === 'object' && tags !== null) {
        inst.meta.tags = Object.fromEntries(
          Object.entries(tags as Record<string, unknown>).filter((e): e is [string, string] => typeof e[1] === 'string'),
        );
      }
      this.emit('update', inst);
    }
    replyJson(res, 200, encodeInstance(this.wire(inst)));
    if (action === 'start' && inst.status === 'stopped') this.startRun(inst);
    else if (action === 'stop' && inst.status !== 'stopped') this.stopRun(inst);
    else if (action === 'restart') void this.restartRun(inst);
  }

  /** §3.4: new URL; a running instance is stopped; it is always started again after the restart delay. */
  private putInstance(res: ServerResponse, inst: SimInstance, body: Record<string, unknown> | undefined): void {
    const url = body?.['url'];
    if (typeof url !== 'string' || url === '') return replyError(res, 400, 'Invalid request body');
    let parsed;
    try {
      parsed = parseInstanceUrl(url);
    } catch (error) {
      if (error instanceof InvalidInstanceUrl) return replyError(res, 400, error.message);
      throw error;
    }
    const enhanced = enhanceInstanceUrl(parsed, this.logLevel);
    if (enhanced === inst.url) return replyError(res, 409, 'Instance URL conflict');
    if (inst.status !== 'stopped') this.stopRun(inst);
    inst.type = parsed.type;
    inst.url = enhanced;
    inst.config = instanceConfig(parsed, this.logLevel);
    inst.configuredMode = configuredMode(parsed);
    inst.ends = tunnelEndpoints(parsed.type, enhanced);
    replyJson(res, 200, encodeInstance(this.wire(inst)));
    void this.startAfterDelay(inst);
  }

  private infoJson(): string {
    return encodeMasterInfo({
      alias: this.alias,
      mid: this.midKnown ? this.masterId : '',
      logLevel: this.logLevel,
      name: this.hostName,
      uptimeSeconds: (this.clock() - this.startedAt) / 1000,
      version: this.version,
      cpuPercent: this.seedPrng.int(0, 12),
    });
  }

  private replyOpenApi(res: ServerResponse): void {
    replyJson(
      res,
      200,
      `{"openapi":"3.1.1","info":{"title":"NodePass API","version":${goJsonString(this.version)}},"servers":[{"url":${goJsonString(this.apiPath)}}],"paths":{}}`,
    );
  }

  private replyFailure(res: ServerResponse, status: number): void {
    if (status === 401) return replyError(res, 401, 'Unauthorized: Invalid API key');
    if (status === 404) return replyGoNotFound(res);
    replyError(res, status, STATUS_CODES[status] ?? `HTTP ${status}`);
  }

  // ---------------------------------------------------------------- lifecycle internals

  private addInstance(spec: InstanceSpec): SimInstance {
    const parsed = parseInstanceUrl(spec.url);
    const url = enhanceInstanceUrl(parsed, this.logLevel);
    let id = spec.id ?? this.idPrng.hex(4);
    while (spec.id === undefined && (this.instances.has(id) || id === API_KEY_RECORD_ID)) id = this.idPrng.hex(4);
    if (this.instances.has(id)) throw new Error(`instance id ${id} already exists`);
    const inst: SimInstance = {
      id,
      alias: spec.alias ?? '',
      type: parsed.type,
      status: 'stopped',
      url,
      config: instanceConfig(parsed, this.logLevel),
      restart: spec.restart ?? true,
      meta: { ...EMPTY_META(), ...spec.meta },
      mode: 0,
      ping: 0,
      pool: 0,
      tcps: 0,
      udps: 0,
      traffic: newTrafficState(spec.counters),
      configuredMode: configuredMode(parsed),
      ends: tunnelEndpoints(parsed.type, url),
      tunnelKey: this.idPrng.hex(4),
      trafficPrng: this.seedPrng.fork(`traffic/${id}`),
      logPrng: this.seedPrng.fork(`logs/${id}`),
      logSeq: 0,
      logCarry: this.spreadLogs ? this.seedPrng.fork(`log-phase/${id}`).next() : 0,
      failure: 'none',
      deleted: false,
      run: 0,
    };
    this.instances.set(id, inst);
    if ((spec.status ?? 'running') === 'running') {
      // Instances that exist at start-up were started before anyone could subscribe: no events, no logs.
      inst.status = 'running';
      startProcess(inst.traffic);
    }
    return inst;
  }

  private startRun(inst: SimInstance): void {
    inst.run++;
    inst.status = 'running';
    inst.failure = 'none';
    startProcess(inst.traffic);
    this.emit('update', inst);
    if (this.lifecycleLogs) {
      for (const line of startupLogMessages(inst.ends, inst.tunnelKey, this.isDebug(inst))) this.log(inst, line);
    }
  }

  /** Stop: the process says goodbye, then `update(stopped)` with the gauges zeroed, mode and counters kept. */
  private stopRun(inst: SimInstance, withLogs = this.lifecycleLogs): void {
    inst.run++;
    if (withLogs && !inst.deleted) this.log(inst, shutdownLogMessage(inst.ends));
    inst.status = 'stopped';
    inst.failure = 'none';
    zeroGauges(inst);
    this.emit('update', inst);
  }

  private async restartRun(inst: SimInstance): Promise<void> {
    if (inst.status !== 'stopped') this.stopRun(inst);
    await this.startAfterDelay(inst);
  }

  private async startAfterDelay(inst: SimInstance): Promise<void> {
    const run = inst.run;
    await this.delay(this.restartDelayMs);
    // Something else (a stop, a start, a delete, a master shutdown) happened meanwhile: it wins.
    if (inst.run === run && !inst.deleted && inst.status === 'stopped' && this.up) this.startRun(inst);
  }

  private removeInstance(inst: SimInstance): void {
    inst.deleted = true;
    if (inst.status !== 'stopped') this.stopRun(inst, false);
    this.instances.delete(inst.id);
    this.emit('delete', inst);
  }

  private checkpointInstance(inst: SimInstance): void {
    if (inst.status === 'stopped' || inst.deleted) return;
    if (inst.failure === 'persistent') {
      // The process keeps retrying and failing: error lines, no checkpoint (§5.5).
      this.log(inst, errorLogMessage(inst.ends));
      return;
    }
    if (inst.status === 'error') this.log(inst, restartLogMessage(inst.ends, inst.tunnelKey));
    const prng = inst.trafficPrng;
    if (this.autoTraffic) {
      const tcp = prng.chance(0.3) ? 0 : prng.int(512, 262_144);
      const udp = prng.chance(0.6) ? 0 : prng.int(64, 8_192);
      addProcessTraffic(inst.traffic, { tcprx: tcp, tcptx: tcp + prng.int(0, 64), udprx: udp, udptx: udp });
    }
    applyCheckpoint(inst.traffic);
    const dualEnd = inst.type === 'server' || inst.configuredMode !== 1;
    inst.status = 'running';
    inst.failure = 'none';
    inst.mode = inst.configuredMode || (inst.type === 'server' ? 1 : 2);
    inst.ping = prng.int(0, 3);
    inst.pool = dualEnd ? prng.int(2, 8) : 0;
    inst.tcps = prng.int(0, 3);
    inst.udps = prng.int(0, 1);
    this.emit('update', inst);
  }

  private logTick(): void {
    const perTick = (this.logRate * LOG_TICK_MS) / 1000;
    for (const inst of this.instances.values()) {
      if (inst.status !== 'running') continue;
      inst.logCarry += perTick;
      const lines = Math.floor(inst.logCarry);
      inst.logCarry -= lines;
      for (let i = 0; i < lines; i++) this.log(inst, trafficLogMessage(inst.logPrng, inst.ends, this.isDebug(inst)));
    }
  }

  private log(inst: SimInstance, line: LogMessage): void {
    if (inst.deleted) return;
    inst.logSeq++;
    this.emit('log', inst, formatLogLine(this.clock(), line.level, line.message, inst.logSeq));
  }

  private isDebug(inst: SimInstance): boolean {
    return /[?&]log=debug(&|$)/.test(inst.url);
  }

  // ---------------------------------------------------------------- events and streams

  private emit(type: NodePassEventType, inst: SimInstance | null, logs = ''): void {
    this.counts.eventsEmitted++;
    this.counts.eventsByType[type]++;
    // Most masters of a large benchmark have nobody listening most of the time: skip the encoding then.
    if (this.subscribers.size === 0 && this.listeners.size === 0) return;
    const data = encodeEnvelope(type, this.stamper.stamp(), inst ? encodeInstance(this.wire(inst)) : null, logs);
    const frame = sseFrame(data);
    if (this.toLose > 0) {
      this.toLose--;
      this.counts.lost++;
    } else {
      for (const sub of this.subscribers) sub.push(frame);
    }
    for (const listener of this.listeners) listener({ type, instanceId: inst?.id ?? null, data });
  }

  /** Ends every stream, after a `shutdown` event when `announce` (rotation, SIGTERM). */
  private closeStreams(announce: boolean): void {
    const data = encodeEnvelope('shutdown', this.stamper.stamp(), null);
    if (announce) {
      this.counts.eventsEmitted++;
      this.counts.eventsByType.shutdown++;
      for (const listener of this.listeners) listener({ type: 'shutdown', instanceId: null, data });
    }
    const frame = announce ? sseFrame(data) : null;
    // Each stream writes what it has buffered and ends; it leaves `subscribers` when its response closes.
    for (const sub of this.subscribers) sub.finish(frame);
  }

  /** Resolves once every stream has ended (after `shutdown()` or `rotateKey()`), or after `timeoutMs`. */
  whenStreamsClosed(timeoutMs: number): Promise<void> {
    if (this.subscribers.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.streamsClosedWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      timer.unref();
      this.streamsClosedWaiters.add(done);
    });
  }

  private retire(sub: SseSubscriber, forgotten = false): void {
    if (!this.subscribers.delete(sub) && !forgotten) return;
    if (this.subscribers.size === 0) for (const done of [...this.streamsClosedWaiters]) done();
    const stats = sub.stats();
    this.counts.retiredSent += stats.sent;
    this.counts.retiredDropped += stats.dropped;
    this.retiredSubscribers.push(stats);
    if (this.retiredSubscribers.length > 100) this.retiredSubscribers.shift();
  }

  private garbageChunk(kind: StreamGarbage, options: GarbageOptions): string {
    const time = this.stamper.stamp();
    const sample = encodeInstance(this.sampleInstance());
    switch (kind) {
      case 'not-json':
        return sseFrame(`{"type":"update","time":${goJsonString(time)},"instance":{"id":"deadbeef"`);
      case 'wrong-shape':
        return sseFrame(encodeEnvelope('update', time, sample.replace(/"status":"[a-z]*"/, '"status":42').replace(/"tcprx":\d+/, '"tcprx":"lots"')));
      case 'unknown-type':
        return sseFrame(`{"type":"heartbeat","time":${goJsonString(time)},"instance":${sample},"logs":""}`);
      case 'counter-overflow':
        // 2^64 − 1: legal for Go's uint64, beyond what a JS number holds exactly.
        return sseFrame(encodeEnvelope('update', time, sample.replace(/"tcprx":\d+/, '"tcprx":18446744073709551615')));
      case 'huge-line':
        return `data: ${'x'.repeat(Math.max(1, options.bytes ?? 2 * 1024 * 1024))}`;
    }
  }

  private sampleInstance(): WireInstance {
    const first = this.instances.values().next();
    if (!first.done) return this.wire(first.value);
    return { ...this.apiKeyRecord(), id: 'deadbeef', type: 'server', status: 'running', url: 'server://127.0.0.1:1/127.0.0.1:2', config: '' };
  }

  // ---------------------------------------------------------------- plumbing

  private wire(inst: SimInstance): WireInstance {
    return {
      id: inst.id,
      alias: inst.alias,
      type: inst.type,
      status: inst.status,
      url: inst.url,
      config: inst.config,
      restart: inst.restart,
      meta: inst.meta,
      mode: inst.mode,
      ping: inst.ping,
      pool: inst.pool,
      tcps: inst.tcps,
      udps: inst.udps,
      ...reportedCounters(inst.traffic),
    };
  }

  /** The fake instance that stores the key (§2): `url` = key, `config` = master id, `alias` = master alias. */
  private apiKeyRecord(): WireInstance {
    const zero = Object.fromEntries(COUNTER_KEYS.map((k) => [k, 0])) as Counters;
    return {
      id: API_KEY_RECORD_ID,
      alias: this.alias,
      type: '',
      status: '',
      url: this.apiKeyValue,
      config: this.masterId,
      restart: false,
      meta: EMPTY_META(),
      mode: 0,
      ping: 0,
      pool: 0,
      tcps: 0,
      udps: 0,
      ...zero,
    };
  }

  private require(id: string): SimInstance {
    const inst = this.instances.get(id);
    if (!inst) throw new Error(`no instance ${id} on master ${this.name}`);
    return inst;
  }

  private trackSocket(socket: Socket): void {
    if (this.sockets.has(socket)) return;
    this.sockets.add(socket);
    // A keep-alive client may use one socket for many masters of a simulator: one `close` listener per socket.
    let owners = SOCKET_OWNERS.get(socket);
    if (!owners) {
      const set = new Set<Set<Socket>>();
      owners = set;
      SOCKET_OWNERS.set(socket, set);
      socket.once('close', () => {
        for (const sockets of set) sockets.delete(socket);
      });
    }
    owners.add(this.sockets);
  }

  private releaseHeld(serve: boolean): void {
    for (const { socket, resume } of this.heldRequests.splice(0)) {
      if (socket.destroyed) continue;
      if (serve) resume();
      else socket.destroy();
    }
  }

  private startTimers(): void {
    if (this.reportIntervalMs > 0) {
      // Masters of one simulator start out of phase, as real ones do, so a thousand of them do not tick at once.
      const phase = this.seedPrng.int(0, this.reportIntervalMs - 1);
      this.schedule(phase, () => {
        this.checkpoint();
        this.repeat(this.reportIntervalMs, () => this.checkpoint());
      });
    }
    if (this.logRate > 0) this.repeat(LOG_TICK_MS, () => this.logTick());
  }

  private schedule(ms: number, run: () => void): void {
    const timer = setTimeout(() => {
      this.periodic.delete(timer);
      run();
    }, ms);
    timer.unref();
    this.periodic.add(timer);
  }

  private repeat(ms: number, run: () => void): void {
    const timer = setInterval(run, ms);
    timer.unref();
    this.periodic.add(timer);
  }

  private stopTimers(): void {
    for (const timer of this.periodic) clearTimeout(timer);
    this.periodic.clear();
  }

  /** A pause after which callers re-check `up`/`closed`: `close()` ends it early so no promise is left hanging. */
  private delay(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.delays.delete(timer);
        resolve();
      }, ms);
      timer.unref();
      this.delays.set(timer, resolve);
    });
  }
}

// ---------------------------------------------------------------- helpers

/** For each socket, the socket sets of the masters it served (see `trackSocket`). */
const SOCKET_OWNERS = new WeakMap<Socket, Set<Set<Socket>>>();

function zeroGauges(inst: SimInstance): void {
  inst.ping = 0;
  inst.pool = 0;
  inst.tcps = 0;
  inst.udps = 0;
}

function stringOr(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function isKnownRoute(path: string): boolean {
  return (
    path === '/events' || path === '/info' || path === '/tcping' || path === '/instances' || path.startsWith('/instances/')
  );
}

export function normalisePrefix(prefix: string): string {
  const trimmed = prefix.trim().replace(/\/+$/, '');
  if (trimmed === '') return '/api';
  return trimmed.startsWith('/') ? trimmed : `/${trimmed}`;
}

/**
 * Instances for a generated master: server/client pairs on one tunnel port each, URLs shaped like the
 * captures', aliases `np-server-1`, `np-client-1`…
 */
export function generateSpecs(count: number, prng: Prng): InstanceSpec[] {
  const specs: InstanceSpec[] = [];
  for (let i = 0; i < count; i++) {
    const pair = Math.floor(i / 2) + 1;
    const tunnelPort = 19100 + pair;
    if (i % 2 === 0) {
      specs.push({ alias: `np-server-${pair}`, url: `server://127.0.0.1:${tunnelPort}/127.0.0.1:${19200 + pair}?mode=1&max=16` });
    } else {
      specs.push({ alias: `np-client-${pair}`, url: `client://127.0.0.1:${tunnelPort}/127.0.0.1:${prng.int(20000, 29999)}?mode=2&min=4` });
    }
  }
  return specs;
}
