/**
 * What the API shows of the actors: plain functions from actor contexts (and registry rows) to the response
 * shapes declared in schemas.ts. A tunnel view is the replay report's tunnel (same field names, same values for
 * the same stream) plus the live fields.
 */
import { COUNTER_KEYS, ZERO_COUNTERS, iso, type Counters } from '../../actors/model.js';
import type { EndpointContext } from '../../actors/endpoint.machine.js';
import type { TunnelContext } from '../../actors/tunnel.machine.js';
import { HOUR_MS, hourOf } from '../../actors/traffic.js';
import type { Endpoint } from '../db/endpoints-repo.js';
import type { TrafficPoint } from '../db/store.js';
import { tunnelReport } from '../replay/report.js';
import { redactUrlCredentials, stateName } from '../runtime/change-feed.js';
import type { EndpointView, TrafficResponse, TunnelView } from './schemas.js';

const isoOrNull = (ms: number | null | undefined): string | null => (ms ? iso(ms) : null);

export function addInto(target: Counters, add: Counters): void {
  for (const k of COUNTER_KEYS) target[k] += add[k];
}

export const totalBytes = (c: Counters): number => c.tcprx + c.tcptx + c.udprx + c.udptx;

export function isConnected(value: unknown): boolean {
  const name = stateName(value);
  return name.startsWith('enabled.online.syncing') || name.startsWith('enabled.online.live');
}

export function endpointView(
  row: Endpoint | null,
  actor: { value: unknown; context: EndpointContext } | null,
  tunnels: readonly TunnelContext[],
  now: number,
): EndpointView {
  const e = actor?.context;
  const counts = { total: 0, running: 0, stopped: 0, error: 0, deleted: 0, pending: 0 };
  const traffic = { ...ZERO_COUNTERS };
  const rates = { ...ZERO_COUNTERS };
  let latest: TunnelContext | null = null;
  for (const t of tunnels) {
    counts.total++;
    if (t.deleted) counts.deleted++;
    else if (t.status === null) counts.pending++;
    else counts[t.status]++;
    addInto(traffic, t.traffic);
    if (!t.deleted) addInto(rates, t.rates);
    if (t.stateAt > 0 && (!latest || t.updatedAt > latest.updatedAt)) latest = t;
  }
  const lastEventAt = e && e.lastEventAt > 0 ? e.lastEventAt : null;
  return {
    id: row?.id ?? e?.endpointId ?? 0,
    name: e?.name ?? row?.name ?? '',
    url: row?.url ?? '',
    enabled: e?.enabled ?? row?.enabled ?? false,
    insecureTls: row?.insecureTls ?? false,
    createdAt: isoOrNull(row?.createdAt),
    updatedAt: isoOrNull(row?.updatedAt),
    state: actor?.value ?? null,
    stateName: actor ? stateName(actor.value) : 'unknown',
    connected: actor ? isConnected(actor.value) : false,
    since: isoOrNull(e?.since),
    master: {
      id: e?.masterId || row?.masterId || '',
      alias: e?.masterAlias ?? '',
      info: e?.info ?? row?.masterInfo ?? null,
    },
    connections: e?.connections ?? 0,
    reconnects: e?.reconnects ?? 0,
    lastError: e?.lastError ?? null,
    tunnels: counts,
    traffic,
    rates,
    events: {
      total: e?.events.total ?? 0,
      byType: e?.events.byType ?? {},
      rejected: e?.events.rejected ?? 0,
      rejectedReasons: e?.events.rejectedReasons ?? {},
    },
    offline: (e?.offline ?? []).map((o) => ({ from: iso(o.from), to: o.to === null ? null : iso(o.to), reason: o.reason })),
    disconnectedSince: e?.disconnected ? iso(e.disconnected.from) : null,
    lag: {
      lastEventAt: isoOrNull(lastEventAt),
      sinceLastEventMs: lastEventAt === null ? null : Math.max(0, now - lastEventAt),
      eventDelayMs: latest ? latest.updatedAt - latest.stateAt : null,
    },
    liveness: {
      probes: e?.liveness.probes ?? 0,
      probeFailures: e?.liveness.probeFailures ?? 0,
      probeMismatches: e?.liveness.probeMismatches ?? 0,
      halfOpenReplaced: e?.liveness.halfOpenReplaced ?? 0,
      reconciliations: e?.liveness.reconciliations ?? 0,
      reconcileFailures: e?.liveness.reconcileFailures ?? 0,
      corrected: e?.liveness.corrected ?? 0,
      tombstoned: e?.liveness.tombstoned ?? 0,
      infoFailures: e?.liveness.infoFailures ?? 0,
      lastProbeAt: isoOrNull(e?.liveness.lastProbeAt),
      lastReconcileAt: isoOrNull(e?.liveness.lastReconcileAt),
    },
  };
}

export function tunnelView(t: TunnelContext): TunnelView {
  const report = tunnelReport(t);
  return {
    endpointId: t.endpointId,
    instanceId: report.instanceId,
    alias: report.alias,
    type: report.type,
    url: redactUrlCredentials(report.url),
    meta: report.meta,
    status: report.status,
    deleted: report.deleted,
    counters: report.counters,
    traffic: report.traffic,
    logLines: report.logLines,
    statusChanges: report.statusChanges,
    mode: t.mode,
    ping: t.ping,
    pool: t.pool,
    tcps: t.tcps,
    udps: t.udps,
    rates: { ...t.rates },
    updatedAt: isoOrNull(t.updatedAt),
  };
}

/**
 * Hourly points for the last `hours` hours, oldest first, one per hour (zeros where nothing). Stored buckets come
 * from the database; the hour buckets the tunnel actors hold in memory (the open hour and the few before it) are
 * newer than or equal to what was flushed, so for those hours the larger value per counter wins: the open hour
 * is never behind memory, and a bucket memory has already dropped never hides a stored one.
 */
export function trafficPoints(
  stored: readonly TrafficPoint[],
  tunnels: readonly TunnelContext[],
  hours: number,
  now: number,
): TrafficResponse {
  const current = hourOf(now);
  const from = current - (hours - 1) * HOUR_MS;
  const memory = new Map<number, Counters>();
  for (const t of tunnels) {
    for (const [key, counters] of Object.entries(t.hours)) {
      const hour = Number(key);
      if (hour < from || hour > current) continue;
      let sum = memory.get(hour);
      if (!sum) memory.set(hour, (sum = { ...ZERO_COUNTERS }));
      addInto(sum, counters);
    }
  }
  const byHour = new Map(stored.map((p) => [p.hour, p.traffic]));
  const points: TrafficResponse['points'] = [];
  for (let hour = from; hour <= current; hour += HOUR_MS) {
    const db = byHour.get(hour) ?? ZERO_COUNTERS;
    const mem = memory.get(hour) ?? ZERO_COUNTERS;
    points.push({
      hour: iso(hour),
      tcprx: Math.max(db.tcprx, mem.tcprx),
      tcptx: Math.max(db.tcptx, mem.tcptx),
      udprx: Math.max(db.udprx, mem.udprx),
      udptx: Math.max(db.udptx, mem.udptx),
      open: hour === current,
    });
  }
  return { hours, points };
}

/** `hours` back from now as the half-open range of hour starts the store takes. */
export function hourRange(hours: number, now: number): { fromHour: number; toHour: number } {
  const current = hourOf(now);
  return { fromHour: current - (hours - 1) * HOUR_MS, toHour: current + HOUR_MS };
}

/** Parses `since`/`until`: ISO 8601 or epoch milliseconds. */
export function parseTime(text: string | undefined): number | undefined | null {
  if (text === undefined || text === '') return undefined;
  if (/^\d+$/.test(text)) return Number(text);
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? null : ms;
}

/** A comma-separated list, trimmed, empties dropped. */
export const listOf = (text: string | undefined): string[] =>
  (text ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
