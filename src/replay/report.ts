/**
 * The replay report (BRIEF "Interfaces"): one JSON object with `events` and `endpoints[]`, built from the
 * actors' snapshots. Key order and sort order are fixed so the same input always prints the same bytes.
 */
import { COUNTER_KEYS, iso, type Counters } from '../../actors/model.js';
import type { EndpointContext } from '../../actors/endpoint.machine.js';
import type { TunnelContext } from '../../actors/tunnel.machine.js';

export interface TunnelReport {
  instanceId: string;
  alias: string;
  type: string;
  url: string;
  meta: TunnelContext['meta'];
  status: string | null;
  deleted: boolean;
  counters: Counters;
  traffic: Counters;
  logLines: number;
  statusChanges: Array<{ at: string; status: string }>;
}

export interface EndpointReport {
  name: string;
  masterId: string;
  connections: number;
  offline: Array<{ from: string; to: string; reason: string }>;
  /** Set when the endpoint was still disconnected at the end of the input. */
  disconnectedSince: string | null;
  events: { total: number; byType: Record<string, number>; rejected: number };
  tunnels: TunnelReport[];
}

export interface ReplayReport {
  events: {
    total: number;
    byType: Record<string, number>;
    rejected: number;
    rejectedReasons: Record<string, number>;
    ignoredAfterTombstone: number;
    staleIgnored: number;
    duplicateLogLines: number;
  };
  endpoints: EndpointReport[];
}

const counters = (c: Counters): Counters => {
  const out = {} as Counters;
  for (const k of COUNTER_KEYS) out[k] = c[k];
  return out;
};

const sortedRecord = (r: Record<string, number>): Record<string, number> =>
  Object.fromEntries(Object.entries(r).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));

export function tunnelReport(t: TunnelContext): TunnelReport {
  return {
    instanceId: t.instanceId,
    alias: t.alias,
    type: t.type,
    url: t.url,
    meta: t.meta,
    status: t.status,
    deleted: t.deleted,
    counters: counters(t.counters),
    traffic: counters(t.traffic),
    logLines: t.logLines,
    statusChanges: t.statusChanges.map((s) => ({ at: iso(s.at), status: s.status })),
  };
}

export function buildReport(endpoints: Array<{ endpoint: EndpointContext; tunnels: TunnelContext[] }>): ReplayReport {
  const events: ReplayReport['events'] = {
    total: 0,
    byType: {},
    rejected: 0,
    rejectedReasons: {},
    ignoredAfterTombstone: 0,
    staleIgnored: 0,
    duplicateLogLines: 0,
  };
  const out: EndpointReport[] = [];
  for (const { endpoint: e, tunnels } of endpoints) {
    events.total += e.events.total;
    events.rejected += e.events.rejected;
    events.ignoredAfterTombstone += e.ignoredAfterTombstone;
    for (const [k, v] of Object.entries(e.events.byType)) events.byType[k] = (events.byType[k] ?? 0) + v;
    for (const [k, v] of Object.entries(e.events.rejectedReasons)) events.rejectedReasons[k] = (events.rejectedReasons[k] ?? 0) + v;
    for (const t of tunnels) {
      events.staleIgnored += t.ignored.stale;
      events.duplicateLogLines += t.ignored.duplicateLog;
    }
    out.push({
      name: e.name,
      masterId: e.masterId,
      connections: e.connections,
      offline: e.offline.map((o) => ({ from: iso(o.from), to: iso(o.to ?? o.from), reason: o.reason })),
      disconnectedSince: e.disconnected ? iso(e.disconnected.from) : null,
      events: { total: e.events.total, byType: sortedRecord(e.events.byType), rejected: e.events.rejected },
      tunnels: tunnels
        .slice()
        .sort((a, b) => (a.instanceId < b.instanceId ? -1 : a.instanceId > b.instanceId ? 1 : 0))
        .map(tunnelReport),
    });
  }
  events.byType = sortedRecord(events.byType);
  events.rejectedReasons = sortedRecord(events.rejectedReasons);
  return { events, endpoints: out };
}
