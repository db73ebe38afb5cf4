/**
 * The change feed: what the runtime publishes when an endpoint or a tunnel changes, for the live SSE feed
 * (`GET /api/events`) and anything else that wants to follow the actors.
 *
 * Cost rules (ingestion throughput matters more than the feed):
 *  - with no subscriber, publishing is one boolean check (`active`) in the runtime's effect wrappers: no object
 *    is built, nothing is kept;
 *  - `tunnel.state` (counters, rates, ping…: potentially every event) is coalesced per tunnel and sent at most
 *    once per `stateIntervalMs`, the latest value winning, so a feed subscriber costs O(tunnels changed) per
 *    interval, not O(events);
 *  - every other kind is rare (status, configuration, connection state) and goes out at once, in order;
 *  - each event is serialised once, however many subscribers receive it.
 * Subscribers must not block: a subscriber that cannot keep up (an SSE socket not draining) is cut off by its
 * transport, which reports it here (`countSlowCut`) so it shows in the statistics and the metrics.
 */
import type { EndpointContext } from '../../actors/endpoint.machine.js';
import type { TunnelContext } from '../../actors/tunnel.machine.js';
import { iso } from '../../actors/model.js';

export const CHANGE_KINDS = [
  'endpoint.added',
  'endpoint.removed',
  'endpoint.state',
  'tunnel.config',
  'tunnel.status',
  'tunnel.state',
  'tunnel.deleted',
] as const;
export type ChangeKind = (typeof CHANGE_KINDS)[number];

export interface ChangeEvent {
  /** Increasing per feed (SSE `id:`). */
  seq: number;
  /** Clock time of publication, ISO 8601. */
  at: string;
  kind: ChangeKind;
  endpointId: number;
  instanceId: string | null;
  data: Record<string, unknown>;
}

export interface FeedFilter {
  /** Endpoint ids; empty: all. */
  endpoints: ReadonlySet<number>;
  /** Instance ids, or `<endpointId>/<instanceId>`; empty: all. */
  tunnels: ReadonlySet<string>;
  /** Kinds (`tunnel.status`) or families (`tunnel`); empty: all. */
  kinds: ReadonlySet<string>;
}

export const NO_FILTER: FeedFilter = { endpoints: new Set(), tunnels: new Set(), kinds: new Set() };

/** A subscriber receives the event and its JSON (serialised once for everyone). */
export type FeedListener = (event: ChangeEvent, json: string) => void;

export interface ChangeFeedOptions {
  now?: () => number;
  /** How often coalesced `tunnel.state` changes go out. Default 500 ms. */
  stateIntervalMs?: number;
}

export interface ChangeFeedStats {
  subscribers: number;
  published: number;
  delivered: number;
  /** Subscribers cut off because they could not keep up. */
  slowClientsCut: number;
  /** Tunnel state changes waiting for the next coalesced flush. */
  pendingTunnelStates: number;
}

/**
 * NodePass instance URLs may carry the tunnel key as user info (`server://<key>@host:port/target`, PROTOCOL §8):
 * every URL-looking `scheme://…@` in the text gets its user info replaced by `***`. Applied to whatever the HTTP
 * API and the feed show of an instance (URL, config, log messages); memory and the database keep the original.
 */
export function redactUrlCredentials(text: string): string {
  return text.includes('@') ? text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/@?#]+@/gi, '$1***@') : text;
}

export function matches(filter: FeedFilter, event: ChangeEvent): boolean {
  if (filter.endpoints.size > 0 && !filter.endpoints.has(event.endpointId)) return false;
  if (filter.tunnels.size > 0) {
    if (event.instanceId === null) return false;
    if (!filter.tunnels.has(event.instanceId) && !filter.tunnels.has(`${event.endpointId}/${event.instanceId}`)) return false;
  }
  if (filter.kinds.size > 0 && !filter.kinds.has(event.kind) && !filter.kinds.has(event.kind.slice(0, event.kind.indexOf('.')))) return false;
  return true;
}

/**
 * The dotted name of a (possibly nested) XState state value: `enabled.online.syncing`; parallel regions in
 * parentheses: `enabled.online.live(liveness.streaming,info.idle)`.
 */
export function stateName(value: unknown): string {
  if (typeof value === 'string') return value;
  if (!value || typeof value !== 'object') return '';
  const entries = Object.entries(value as Record<string, unknown>);
  const path = ([key, inner]: [string, unknown]) => {
    const rest = stateName(inner);
    return rest === '' ? key : rest.startsWith('(') ? `${key}${rest}` : `${key}.${rest}`;
  };
  if (entries.length === 0) return '';
  if (entries.length === 1) return path(entries[0]!);
  return `(${entries.map(path).join(',')})`;
}

export class ChangeFeed {
  /** True while anyone listens: the runtime's hot path checks this and nothing else. */
  active = false;
  private readonly now: () => number;
  private readonly stateIntervalMs: number;
  private readonly subscribers = new Map<number, { filter: FeedFilter; listener: FeedListener }>();
  private nextSubscriber = 1;
  private seq = 0;
  private published = 0;
  private delivered = 0;
  private slowClientsCut = 0;
  private readonly pendingStates = new Map<string, TunnelContext>();
  private timer: NodeJS.Timeout | null = null;

  constructor(options: ChangeFeedOptions = {}) {
    this.now = options.now ?? Date.now;
    this.stateIntervalMs = options.stateIntervalMs ?? 500;
  }

  subscribe(filter: FeedFilter, listener: FeedListener): () => void {
    const id = this.nextSubscriber++;
    this.subscribers.set(id, { filter, listener });
    this.active = true;
    if (!this.timer) {
      this.timer = setInterval(() => this.flushStates(), this.stateIntervalMs);
      this.timer.unref();
    }
    return () => {
      if (!this.subscribers.delete(id)) return;
      if (this.subscribers.size > 0) return;
      this.active = false;
      this.pendingStates.clear();
      if (this.timer) clearInterval(this.timer);
      this.timer = null;
    };
  }

  /** The sequence number of the last event published (a new subscriber's starting point). */
  get lastSeq(): number {
    return this.seq;
  }

  publish(kind: ChangeKind, endpointId: number, instanceId: string | null, data: Record<string, unknown>): void {
    if (!this.active) return;
    const event: ChangeEvent = { seq: ++this.seq, at: iso(this.now()), kind, endpointId, instanceId, data };
    this.published++;
    let json: string | null = null;
    for (const { filter, listener } of this.subscribers.values()) {
      if (!matches(filter, event)) continue;
      json ??= JSON.stringify(event);
      this.delivered++;
      try {
        listener(event, json);
      } catch {
        // A subscriber's failure is its transport's business; the feed and ingestion carry on.
      }
    }
  }

  // ---- what the runtime reports ----------------------------------------------------------------------

  endpointState(e: EndpointContext, value: unknown): void {
    this.publish('endpoint.state', e.endpointId, null, {
      state: value,
      stateName: stateName(value),
      since: e.since ? iso(e.since) : null,
      enabled: e.enabled,
      connections: e.connections,
      reconnects: e.reconnects,
      lastError: e.lastError,
      disconnectedSince: e.disconnected ? iso(e.disconnected.from) : null,
    });
  }

  tunnelConfig(t: TunnelContext): void {
    if (t.deleted) {
      this.publish('tunnel.deleted', t.endpointId, t.instanceId, { deletedAt: t.deletedAt === null ? null : iso(t.deletedAt) });
      this.pendingStates.delete(`${t.endpointId}/${t.instanceId}`);
      return;
    }
    this.publish('tunnel.config', t.endpointId, t.instanceId, {
      alias: t.alias,
      type: t.type,
      url: redactUrlCredentials(t.url),
      config: redactUrlCredentials(t.config),
      restart: t.restart,
      meta: t.meta,
      status: t.status,
    });
  }

  tunnelStatus(endpointId: number, instanceId: string, status: string, at: number): void {
    this.publish('tunnel.status', endpointId, instanceId, { status, changedAt: iso(at) });
  }

  /** Coalesced: remembered (latest wins) and sent by the next flush. */
  tunnelState(t: TunnelContext): void {
    if (!this.active) return;
    this.pendingStates.set(`${t.endpointId}/${t.instanceId}`, t);
  }

  countSlowCut(): void {
    this.slowClientsCut++;
  }

  stats(): ChangeFeedStats {
    return {
      subscribers: this.subscribers.size,
      published: this.published,
      delivered: this.delivered,
      slowClientsCut: this.slowClientsCut,
      pendingTunnelStates: this.pendingStates.size,
    };
  }

  /** Sends the coalesced tunnel states now (the timer calls this; tests may too). */
  flushStates(): void {
    if (this.pendingStates.size === 0) return;
    const pending = [...this.pendingStates.values()];
    this.pendingStates.clear();
    for (const t of pending) {
      this.publish('tunnel.state', t.endpointId, t.instanceId, {
        status: t.status,
        counters: t.counters,
        traffic: t.traffic,
        rates: t.rates,
        ping: t.ping,
        pool: t.pool,
        tcps: t.tcps,
        udps: t.udps,
        mode: t.mode,
        updatedAt: t.updatedAt ? iso(t.updatedAt) : null,
      });
    }
  }

  close(): void {
    this.subscribers.clear();
    this.active = false;
    this.pendingStates.clear();
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
