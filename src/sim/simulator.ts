/**
 * The NodePass master simulator: one node:http server hosting any number of simulated masters, each under its
 * own path prefix (`/api/v1/…` for a single master, `/m1/api/v1/…`, `/m2/api/v1/…` for several), so a test or a
 * benchmark can stand up a thousand endpoints in one process. See master.ts for what each master does.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { replyGoNotFound, replyNoContent } from './go-http.js';
import { SimulatedMaster, type MasterOptions, type MasterStats } from './master.js';
import { randomSeed } from './prng.js';

export interface SimulatorOptions extends Omit<MasterOptions, 'name' | 'prefix' | 'masterId'> {
  /** Default `127.0.0.1`; `::1` and other literals work. */
  host?: string;
  /** Default 0: an ephemeral port. */
  port?: number;
  /** Serve HTTPS with this certificate (PEM), like a master started with `tls=2` (or `tls=1`'s self-signed one). */
  tls?: { key: string | Buffer; cert: string | Buffer };
  /**
   * How many masters (default 1), or per-master overrides of the shared options above. With one master the
   * prefix is `/api`; with several, `/m<n>/api`.
   */
  masters?: number | MasterOptions[];
}

/** A hosted master plus where to reach it. */
export class HostedMaster extends SimulatedMaster {
  origin = '';

  /** The master URL an operator would register: `http://host:port/api` (the API lives under `/v1`). */
  get url(): string {
    return `${this.origin}${this.prefix}`;
  }

  /** `http://host:port/api/v1`: base of `/instances`, `/events`, `/info`. */
  get apiBase(): string {
    return `${this.origin}${this.apiPath}`;
  }
}

export interface SimulatorStats {
  connections: number;
  eventsEmitted: number;
  framesSent: number;
  dropped: number;
  masters: MasterStats[];
}

export interface SimulatorHandle {
  readonly host: string;
  readonly port: number;
  /** `http://127.0.0.1:port`, `http://[::1]:port`, `https://…` with `tls`. */
  readonly origin: string;
  readonly masters: readonly HostedMaster[];
  /** The first master: the whole simulator when it hosts only one. */
  readonly master: HostedMaster;
  /** By name (`m2`) or index. */
  get(nameOrIndex: string | number): HostedMaster;
  stats(): SimulatorStats;
  /** Stops every timer and closes every socket and the listener. */
  close(): Promise<void>;
}

export async function startSimulator(options: SimulatorOptions = {}): Promise<SimulatorHandle> {
  const host = options.host ?? '127.0.0.1';
  const { masters: masterOption, host: _host, port: _port, tls, ...shared } = options;
  const perMaster: MasterOptions[] =
    typeof masterOption === 'object' ? masterOption : Array.from({ length: masterOption ?? 1 }, () => ({}));
  if (perMaster.length === 0) throw new Error('the simulator needs at least one master');
  const baseSeed = options.seed === undefined ? randomSeed() : String(options.seed);

  const masters = perMaster.map((own, index) => {
    const name = own.name ?? `m${index + 1}`;
    const prefix = own.prefix ?? (perMaster.length === 1 ? '/api' : `/${name}/api`);
    return new HostedMaster({
      ...shared,
      ...own,
      name,
      prefix,
      seed: own.seed === undefined ? `${baseSeed}/${name}` : String(own.seed),
      hostName: host,
    });
  });

  const byApiPath = new Map<string, HostedMaster>();
  for (const master of masters) {
    if (byApiPath.has(master.apiPath)) throw new Error(`two masters share the prefix ${master.prefix}`);
    byApiPath.set(master.apiPath, master);
  }

  const handler = (req: IncomingMessage, res: ServerResponse): void => route(req, res, byApiPath);
  const server = tls ? createTlsServer({ key: tls.key, cert: tls.cert }, handler) : createServer(handler);
  // Go's server has no timeouts (§1). With no keep-alive timeout Node also leaves out the `Keep-Alive:` header,
  // which Go never sends; idle sockets are closed by `close()`.
  server.requestTimeout = 0;
  server.keepAliveTimeout = 0;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const origin = `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`;
  for (const master of masters) master.origin = origin;

  let closing: Promise<void> | undefined;
  return {
    host,
    port,
    origin,
    masters,
    master: masters[0]!,
    get(nameOrIndex) {
      const found = typeof nameOrIndex === 'number' ? masters[nameOrIndex] : masters.find((m) => m.name === nameOrIndex);
      if (!found) throw new Error(`no master ${nameOrIndex}`);
      return found;
    },
    stats() {
      const all = masters.map((m) => m.stats());
      const sum = (pick: (s: MasterStats) => number): number => all.reduce((n, s) => n + pick(s), 0);
      return {
        connections: sum((s) => s.connections),
        eventsEmitted: sum((s) => s.eventsEmitted),
        framesSent: sum((s) => s.framesSent),
        dropped: sum((s) => s.dropped),
        masters: all,
      };
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        for (const master of masters) master.close();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

/** Finds the master whose `<prefix>/v1` starts the path (shortest match), and hands it the rest. */
function route(req: IncomingMessage, res: ServerResponse, byApiPath: Map<string, HostedMaster>): void {
  const raw = req.url ?? '/';
  const queryAt = raw.indexOf('?');
  const path = queryAt === -1 ? raw : raw.slice(0, queryAt);
  const query = new URLSearchParams(queryAt === -1 ? '' : raw.slice(queryAt + 1));
  for (let at = path.indexOf('/v1'); at !== -1; at = path.indexOf('/v1', at + 1)) {
    const end = at + 3;
    if (end !== path.length && path[end] !== '/') continue;
    const master = byApiPath.get(path.slice(0, end));
    if (master) return master.handle(req, res, path.slice(end), query);
  }
  // No master here. A real master answers OPTIONS anywhere and 404s the rest, both with CORS headers.
  if (req.method === 'OPTIONS') return replyNoContent(res, 200);
  replyGoNotFound(res);
}

export { API_KEY_RECORD_ID } from './master.js';
export type {
  EmittedEvent,
  FailOptions,
  GarbageKind,
  GarbageOptions,
  InstanceSpec,
  MasterOptions,
  MasterStats,
} from './master.js';
export type { DeliveryMode, SubscriberStats } from './subscriber.js';
export type { WireInstance } from './go-wire.js';
export { logSequence } from './log-lines.js';
