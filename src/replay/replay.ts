/**
 * Deterministic replay: feeds recorded streams through the same fleet → endpoint → tunnel actors that the
 * service runs, on a stepped clock driven by the events' own times, and reports the result.
 *
 * - Each file is its own endpoint unless `endpoint` names one for all of them (then files are that
 *   endpoint's consecutive connections, in the order given). Journal entries carry their endpoint's name.
 * - Endpoints are interleaved by time; the clock only moves forward (an event older than the clock — a
 *   repeat, or a clock that went backwards — is processed at the current clock time).
 * - Connections: `open` → `stream.opened`, payloads → `stream.event`, `close` → `stream.closed`.
 * Nothing here is asynchronous, so the same input always gives the same report.
 */
import { createActor, fromCallback } from 'xstate';
import { endpointMachine, type EndpointEvent, type EndpointInput, type StreamCloseKind } from '../../actors/endpoint.machine.js';
import { fleetMachine, type FleetContext, type FleetInput } from '../../actors/fleet.machine.js';
import { NodePassPayloadParser } from '../protocol/payload-parser.js';
import { SteppedClock } from '../runtime/stepped-clock.js';
import { buildReport, type ReplayReport } from './report.js';
import { readReplaySource, type ReplayItem } from './sources.js';

export interface ReplayOptions {
  /** One endpoint name for all files. */
  endpoint?: string;
}

export interface Stream {
  name: string;
  items: ReplayItem[];
}

interface Cursor {
  stream: Stream;
  index: number;
  /** The time of each item (see `timeline`). */
  times: number[];
}

/** A payload's own time (the event's `time`), or when it was received, or null. */
function payloadTime(item: Extract<ReplayItem, { kind: 'payload' }>): number | null {
  const m = /"time"\s*:\s*"([^"]+)"/.exec(item.data);
  const t = m ? Date.parse(m[1]!) : NaN;
  return Number.isFinite(t) ? t : item.receivedAt;
}

/**
 * When each item of a stream happens: payloads at their events' own times; opens and closes at the time
 * the input gives them, else an open at its connection's first event (NodePass stamps the `initial`
 * snapshot when the subscriber registers) and a close at the last event before it.
 */
function timeline(items: ReplayItem[]): number[] {
  const times = new Array<number>(items.length).fill(NaN);
  let last = NaN;
  for (let i = 0; i < items.length; i++) {
    const item = items[i]!;
    let t: number | null = null;
    if (item.kind === 'payload') t = payloadTime(item);
    else if (item.kind === 'close') t = item.at;
    else if (item.kind === 'open') {
      t = item.at;
      for (let j = i + 1; t === null && j < items.length; j++) {
        const next = items[j]!;
        if (next.kind === 'payload') t = payloadTime(next);
        else if (next.kind !== 'overflow') break;
      }
    }
    if (t !== null) last = t;
    times[i] = t ?? last;
  }
  // Leading items with no time at all take the first known one.
  const first = times.find((t) => Number.isFinite(t)) ?? 0;
  return times.map((t) => (Number.isFinite(t) ? t : first));
}

const CLOSE_KINDS = new Set<StreamCloseKind>(['shutdown', 'eof', 'auth', 'http', 'not-sse', 'refused', 'dns', 'timeout', 'tls', 'reset', 'network', 'probe-failed', 'stale']);

function closeKindOf(item: Extract<ReplayItem, { kind: 'close' }>): StreamCloseKind {
  if (item.closeKind && CLOSE_KINDS.has(item.closeKind as StreamCloseKind)) return item.closeKind as StreamCloseKind;
  if (/^HTTP 40[13]/.test(item.reason)) return 'auth';
  if (/^HTTP /.test(item.reason)) return 'http';
  return 'eof';
}

export function loadStreams(files: string[], endpoint?: string): Stream[] {
  // Keyed by file path (or journal endpoint name): two files that share a base name are still two endpoints.
  const byKey = new Map<string, Stream>();
  const usedNames = new Set<string>();
  const nameFor = (base: string): string => {
    let name = base;
    for (let n = 2; usedNames.has(name); n++) name = `${base}#${n}`;
    usedNames.add(name);
    return name;
  };
  for (const file of files) {
    const source = readReplaySource(file);
    const fileName = file.split('/').pop()!;
    for (const item of source.items) {
      const journalName = source.format === 'journal' && item.endpoint ? item.endpoint : undefined;
      const key = endpoint ?? (journalName !== undefined ? `journal:${journalName}` : `file:${file}`);
      let stream = byKey.get(key);
      if (!stream) byKey.set(key, (stream = { name: nameFor(endpoint ?? journalName ?? fileName), items: [] }));
      stream.items.push(item);
    }
  }
  return [...byKey.values()];
}

/** What a replay can be wired to: the persistence supervisors (`replay --db`) and the endpoints' ids. */
export interface ReplayWiring {
  /** Endpoint id per stream (default 1, 2, …). With a database: the `endpoints` rows, created by name. */
  endpointIds?: number[];
  /** Builds the fleet machine (the runtime's effects `.provide()`d); default: no persistence. */
  fleet?: (endpoint: typeof endpointMachine) => typeof fleetMachine;
  /** The fleet's supervisors (with `fleet`). */
  supervisors?: FleetInput['supervisors'];
}

/** A replay in progress: `step()` processes one input item; `report()` reads the actors; `stop()` ends them. */
export interface ReplayRun {
  readonly clock: SteppedClock;
  /** Processes the next item; false when the input is exhausted. */
  step(): boolean;
  report(): ReplayReport;
  /** The fleet's persistence supervisors (empty without `wiring.supervisors`). */
  supervisorRefs(): FleetContext['supervisors'];
  stop(): void;
}

export function startReplay(streams: Stream[], wiring: ReplayWiring = {}): ReplayRun {
  const clock = new SteppedClock(0);
  // Liveness probes are off (infinite interval); reconnects are immediate: the recording says when they happened.
  const endpointSettings: EndpointInput['settings'] = {
    probeIntervalMs: Infinity,
    // No master to ask: a tunnel missing from a recorded snapshot is tombstoned at once.
    confirmSnapshotDeletions: false,
    backoffBaseMs: 0,
    backoffCapMs: 0,
    tunnel: { logDedupeWindowMs: Infinity, statusHistoryLimit: Number.MAX_SAFE_INTEGER },
    offlineHistoryLimit: Number.MAX_SAFE_INTEGER,
  };
  const endpoint = endpointMachine.provide({ actors: { eventStream: fromCallback(() => () => {}) } });
  const fleet = wiring.fleet ? wiring.fleet(endpoint) : fleetMachine.provide({ actors: { endpoint } });
  const ids = streams.map((_, i) => wiring.endpointIds?.[i] ?? i + 1);
  const inputs: EndpointInput[] = streams.map((s, i) => ({ endpointId: ids[i]!, name: s.name, settings: endpointSettings }));
  const root = createActor(fleet, { input: { endpoints: inputs, supervisors: wiring.supervisors }, clock });
  let failure: unknown = null;
  root.subscribe({ error: (err) => (failure = err) });
  root.start();

  const endpointRef = (i: number) => root.getSnapshot().context.endpoints[String(ids[i])]!;
  const send = (i: number, event: EndpointEvent) => endpointRef(i).send(event);

  const cursors: Cursor[] = streams.map((stream) => ({ stream, index: 0, times: timeline(stream.items) }));
  // One per endpoint, as live ingest has one per connection (its results do not depend on what it remembers).
  const payloads = streams.map(() => new NodePassPayloadParser());
  // Start the clock at the earliest time in the input, so timers and intervals are in real event time.
  const start = Math.min(...cursors.map((c) => c.times[0] ?? Infinity));
  if (Number.isFinite(start)) clock.advanceTo(start);

  const step = (): boolean => {
    // The next item overall: the stream whose next item is earliest (ties: stream order).
    let pick = -1;
    let pickTime = Infinity;
    for (let i = 0; i < cursors.length; i++) {
      const c = cursors[i]!;
      if (c.index >= c.stream.items.length) continue;
      const t = c.times[c.index]!;
      if (pick === -1 || t < pickTime) {
        pick = i;
        pickTime = t;
      }
    }
    if (pick === -1) return false;
    const cursor = cursors[pick]!;
    const item = cursor.stream.items[cursor.index++]!;
    clock.advanceTo(Math.max(clock.now(), pickTime));
    const now = clock.now();

    switch (item.kind) {
      case 'open': {
        const state = endpointRef(pick).getSnapshot();
        if (!state.matches({ enabled: { online: 'connecting' } })) send(pick, { type: 'endpoint.reconnect', at: now });
        send(pick, { type: 'stream.opened', at: now });
        break;
      }
      case 'payload':
        send(pick, { type: 'stream.event', parsed: payloads[pick]!.parse(item.data, item.eventName), receivedAt: now });
        break;
      case 'overflow':
        send(pick, { type: 'stream.event', parsed: { kind: 'rejected', reason: `line over the size limit (${item.bytes} bytes)` }, receivedAt: now });
        break;
      case 'close':
        send(pick, { type: 'stream.closed', at: now, kind: closeKindOf(item), message: item.reason === 'eof' ? undefined : item.reason });
        break;
    }
    if (failure) throw failure;
    return true;
  };

  return {
    clock,
    step,
    report: () =>
      buildReport(
        streams.map((_, i) => {
          const ep = endpointRef(i).getSnapshot().context;
          return { endpoint: ep, tunnels: Object.values(ep.tunnels).map((t) => t.getSnapshot().context) };
        }),
      ),
    supervisorRefs: () => root.getSnapshot().context.supervisors,
    stop: () => root.stop(),
  };
}

export function replayStreams(streams: Stream[]): ReplayReport {
  const run = startReplay(streams);
  while (run.step());
  const report = run.report();
  run.stop();
  return report;
}

export function replayFiles(files: string[], options: ReplayOptions = {}): ReplayReport {
  return replayStreams(loadStreams(files, options.endpoint));
}
