/**
 * The live side of /inspect: the actor tree pushed to every page over SSE, and for the actor a page has
 * selected, its context and the events that reached it.
 *
 * Cost rules (ingestion matters more than the page):
 *  - nothing runs while no page is connected: the tree is polled (one `getSnapshot()` per actor, compared by
 *    identity, so an unchanged actor costs one comparison) every `tickMs` only while a stream is open, and only
 *    the actors that changed are sent;
 *  - XState's inspection (`system.inspect`, which halves event throughput) is attached only while at least one
 *    page watches an actor, and detached when the last one stops; it keeps a ring of `ringSize` recent events
 *    for each watched actor only;
 *  - streams are bounded in number (`maxClients`, further ones refused with 429), and a page that does not
 *    read (more than `maxBufferedBytes` waiting in its socket) is cut off and counted.
 */
import type { InspectionEvent, Subscription } from 'xstate';
import { iso } from '../../actors/model.js';
import { setSystemInspected } from '../../actors/tunnel.machine.js';
import type { Runtime } from '../runtime/runtime.js';
import { CONTEXT_LIMITS, EVENT_LIMITS, findActor, listActors, nodeOf, toSafeJson, type ActorNode } from './actor-tree.js';

export interface InspectHubOptions {
  tickMs?: number;
  maxClients?: number;
  maxBufferedBytes?: number;
  ringSize?: number;
  heartbeatMs?: number;
}

export const DEFAULT_INSPECT_HUB_OPTIONS: Required<InspectHubOptions> = {
  tickMs: 500,
  maxClients: 32,
  maxBufferedBytes: 4 * 1024 * 1024,
  ringSize: 50,
  heartbeatMs: 15_000,
};

/** An event that reached a watched actor, as the page lists it. */
export interface RecordedEvent {
  seq: number;
  at: string;
  type: string;
  /** The sender's actor id, when XState knows it. */
  source: string | null;
  /** A few words on what the event carries (`update running`), for the list; null when nothing stands out. */
  summary: string | null;
  event: unknown;
}

/** What a NodePass event wrapped in an actor event is (`tunnel.observe`, `stream.event`): its type and status. */
export function summariseEvent(event: Record<string, unknown>): string | null {
  const parsed = event['parsed'] as Record<string, unknown> | undefined;
  const inner = (event['event'] ?? parsed?.['event']) as Record<string, unknown> | undefined;
  const words: string[] = [];
  if (parsed && typeof parsed['kind'] === 'string' && parsed['kind'] !== 'instance') words.push(parsed['kind']);
  if (inner && typeof inner['type'] === 'string') words.push(inner['type']);
  const instance = inner?.['instance'] as Record<string, unknown> | undefined;
  if (instance && typeof instance['id'] === 'string' && parsed) words.push(instance['id']);
  if (instance && typeof instance['status'] === 'string' && instance['status'] !== '') words.push(instance['status']);
  return words.length > 0 ? words.join(' ') : null;
}

/** The transport of one stream (an SSE response); the hub only writes and measures. */
export interface StreamSink {
  write(chunk: string): void;
  /** Bytes written but not yet taken by the client's socket. */
  buffered(): number;
  /** Ends the stream from our side (a slow client). */
  destroy(): void;
}

interface Client {
  sink: StreamSink;
  watch: string | null;
  lastSnapshot: unknown;
  lastSeq: number;
  sentMissing: boolean;
}

interface Ring {
  watchers: number;
  events: RecordedEvent[];
}

export interface InspectHubStatus {
  clients: number;
  watchedActors: string[];
  inspecting: boolean;
  slowClientsCut: number;
  refusedStreams: number;
  recordedEvents: number;
  failedTicks: number;
}

export class InspectHub {
  private readonly options: Required<InspectHubOptions>;
  private readonly clients = new Set<Client>();
  private readonly rings = new Map<string, Ring>();
  private readonly tree = new Map<string, { snapshot: unknown; key: string; node: ActorNode }>();
  private inspection: Subscription | null = null;
  private tickTimer: NodeJS.Timeout | null = null;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private seq = 0;
  private slowClientsCut = 0;
  private refusedStreams = 0;
  private recordedEvents = 0;
  private failedTicks = 0;

  constructor(
    private readonly runtime: Runtime,
    options: InspectHubOptions = {},
  ) {
    this.options = { ...DEFAULT_INSPECT_HUB_OPTIONS, ...options };
  }

  status(): InspectHubStatus {
    return {
      clients: this.clients.size,
      watchedActors: [...this.rings.keys()],
      inspecting: this.inspection !== null,
      slowClientsCut: this.slowClientsCut,
      refusedStreams: this.refusedStreams,
      recordedEvents: this.recordedEvents,
      failedTicks: this.failedTicks,
    };
  }

  /** The whole tree now (for a one-off read; streams get it once, then only changes). */
  actors(): ActorNode[] {
    return listActors(this.runtime).map((found) => nodeOf(found));
  }

  /** An actor's details now, with the recent events recorded while it was watched. */
  actor(id: string): (ActorNode & { context: unknown; events: RecordedEvent[] }) | null {
    const found = findActor(this.runtime, id);
    if (!found) return null;
    const snapshot = found.ref.getSnapshot();
    return { ...nodeOf(found, snapshot), context: toSafeJson(snapshot.context, CONTEXT_LIMITS), events: this.rings.get(id)?.events ?? [] };
  }

  /** Whether one more stream may open; a refusal is counted (the caller answers 429). */
  admits(): boolean {
    if (this.clients.size < this.options.maxClients) return true;
    this.refusedStreams++;
    return false;
  }

  /**
   * Opens a stream: the whole tree at once, then changes every tick. Returns the function that closes it, or
   * null when too many streams are open. `watch` is the selected actor id, or null for the tree only.
   */
  connect(sink: StreamSink, watch: string | null): (() => void) | null {
    if (!this.admits()) return null;
    if (this.clients.size === 0) {
      this.tree.clear();
      this.refreshTree();
      this.tickTimer = setInterval(() => this.tick(), this.options.tickMs);
      this.heartbeatTimer = setInterval(() => this.heartbeat(), this.options.heartbeatMs);
      this.tickTimer.unref();
      this.heartbeatTimer.unref();
    }
    const client: Client = { sink, watch, lastSnapshot: undefined, lastSeq: 0, sentMissing: false };
    this.clients.add(client);
    if (watch) this.watch(watch);
    this.send(client, 'tree', { reset: true, upsert: [...this.tree.values()].map((t) => t.node), remove: [] });
    if (watch) this.sendActor(client);
    return () => this.drop(client);
  }

  /** Forgets a stream; idempotent (a slow client is dropped first, then its socket's close calls here again). */
  private drop(client: Client): void {
    if (!this.clients.delete(client)) return;
    if (client.watch) this.unwatch(client.watch);
    if (this.clients.size === 0) this.stopTimers();
  }

  /** Closes every stream (service shutdown). */
  close(): void {
    for (const client of [...this.clients]) client.sink.destroy();
    this.clients.clear();
    for (const id of [...this.rings.keys()]) this.rings.delete(id);
    this.inspection?.unsubscribe();
    this.inspection = null;
    setSystemInspected(this.runtime.fleet.system, false);
    this.stopTimers();
  }

  private stopTimers(): void {
    if (this.tickTimer) clearInterval(this.tickTimer);
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.tickTimer = null;
    this.heartbeatTimer = null;
  }

  private watch(id: string): void {
    const ring = this.rings.get(id);
    if (ring) ring.watchers++;
    else this.rings.set(id, { watchers: 1, events: [] });
    if (!this.inspection) {
      this.inspection = this.runtime.fleet.system.inspect((e) => this.record(e));
      // Tunnels otherwise apply their hot self-transitions in place, which the inspector would not see.
      setSystemInspected(this.runtime.fleet.system, true);
    }
  }

  private unwatch(id: string): void {
    const ring = this.rings.get(id);
    if (!ring) return;
    if (--ring.watchers <= 0) this.rings.delete(id);
    if (this.rings.size === 0 && this.inspection) {
      this.inspection.unsubscribe();
      this.inspection = null;
      setSystemInspected(this.runtime.fleet.system, false);
    }
  }

  private idOf(ref: { id?: unknown } | undefined): string | null {
    if (!ref) return null;
    if (ref === (this.runtime.fleet as unknown)) return 'fleet';
    return typeof ref.id === 'string' ? ref.id : null;
  }

  /** The inspection observer: runs inside XState's event loop, so it only filters and copies a bounded view. */
  private record(e: InspectionEvent): void {
    if (e.type !== '@xstate.event') return;
    try {
      const id = this.idOf(e.actorRef as unknown as { id?: unknown });
      const ring = id === null ? undefined : this.rings.get(id);
      if (!ring) return;
      ring.events.push({
        seq: ++this.seq,
        at: iso(this.runtime.now()),
        type: String(e.event.type),
        source: this.idOf(e.sourceRef as unknown as { id?: unknown } | undefined),
        summary: summariseEvent(e.event),
        event: toSafeJson(e.event, EVENT_LIMITS),
      });
      this.recordedEvents++;
      if (ring.events.length > this.options.ringSize) ring.events.splice(0, ring.events.length - this.options.ringSize);
    } catch {
      // A view that cannot be built must never fail the actor system; the event is simply not shown.
    }
  }

  /** Re-reads every actor's snapshot; returns what changed since the last read. */
  private refreshTree(): { upsert: ActorNode[]; remove: string[] } {
    const upsert: ActorNode[] = [];
    const seen = new Set<string>();
    for (const found of listActors(this.runtime)) {
      seen.add(found.id);
      const snapshot = found.ref.getSnapshot();
      const before = this.tree.get(found.id);
      if (before && before.snapshot === snapshot) continue;
      const node = nodeOf(found, snapshot);
      const key = JSON.stringify([node.value, node.status, node.label, node.parent]);
      this.tree.set(found.id, { snapshot, key, node });
      if (!before || before.key !== key) upsert.push(node);
    }
    const remove: string[] = [];
    for (const id of this.tree.keys()) {
      if (!seen.has(id)) {
        this.tree.delete(id);
        remove.push(id);
      }
    }
    return { upsert, remove };
  }

  private tick(): void {
    try {
      this.pushChanges();
    } catch {
      // A timer callback must never throw (it would take the process down); the next tick tries again.
      this.failedTicks++;
    }
  }

  private pushChanges(): void {
    const changes = this.refreshTree();
    const changed = changes.upsert.length > 0 || changes.remove.length > 0;
    for (const client of [...this.clients]) {
      if (changed) this.send(client, 'tree', { reset: false, ...changes });
      if (client.watch && this.clients.has(client)) this.sendActor(client);
    }
  }

  private heartbeat(): void {
    for (const client of [...this.clients]) this.write(client, ': keep-alive\n\n');
  }

  private sendActor(client: Client): void {
    const id = client.watch!;
    const found = findActor(this.runtime, id);
    if (!found) {
      if (!client.sentMissing) this.send(client, 'actor', { id, missing: true });
      client.sentMissing = true;
      return;
    }
    client.sentMissing = false;
    const snapshot = found.ref.getSnapshot();
    const events = (this.rings.get(id)?.events ?? []).filter((e) => e.seq > client.lastSeq);
    if (snapshot === client.lastSnapshot && events.length === 0) return;
    client.lastSnapshot = snapshot;
    if (events.length > 0) client.lastSeq = events[events.length - 1]!.seq;
    this.send(client, 'actor', { ...nodeOf(found, snapshot), missing: false, context: toSafeJson(snapshot.context, CONTEXT_LIMITS), events });
  }

  private send(client: Client, event: string, data: unknown): void {
    this.write(client, `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  private write(client: Client, chunk: string): void {
    if (!this.clients.has(client)) return;
    if (client.sink.buffered() > this.options.maxBufferedBytes) {
      // The page does not read: cut it off rather than buffer without limit; it reconnects and starts afresh.
      this.slowClientsCut++;
      this.drop(client);
      client.sink.destroy();
      return;
    }
    client.sink.write(chunk);
  }
}
