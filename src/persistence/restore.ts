/**
 * Rebuilding tunnel actors from the database after a restart or crash: the last absolute counters, the
 * counter-reset bookkeeping and the open hour buckets come back, so traffic across the restart is counted
 * once (the first sample after restart is a delta against the stored counters, not a new baseline).
 * A tunnel's state is stored from its first moment: its creation record carries its baseline (persister.ts
 * `baselineOf`), so a tunnel killed before its first state flush resumes from that baseline too.
 */
import { newTunnelContext, type TunnelContext } from '../../actors/tunnel.machine.js';
import { newCounterTrack, type CounterTrack } from '../../actors/traffic.js';
import type { StoredTunnel } from '../db/store.js';

export function tunnelContextFromStore(stored: StoredTunnel): TunnelContext {
  const base = newTunnelContext({ endpointId: stored.endpointId, instanceId: stored.instanceId });
  const c = stored.config;
  const s = stored.state;
  const resume = (s?.resume ?? {}) as {
    track?: CounterTrack;
    logLines?: number;
    anomalies?: TunnelContext['anomalies'];
    statusChanges?: TunnelContext['statusChanges'];
  };
  const hours: TunnelContext['hours'] = {};
  for (const b of stored.openBuckets) hours[String(b.hour)] = { ...b.traffic };
  return {
    ...base,
    alias: c?.alias ?? '',
    type: c?.type ?? '',
    url: c?.url ?? '',
    config: c?.config ?? '',
    restart: c?.restart ?? false,
    meta: c?.meta ?? base.meta,
    status: s?.status ?? c?.status ?? null,
    mode: s?.mode ?? 0,
    ping: s?.ping ?? 0,
    pool: s?.pool ?? 0,
    tcps: s?.tcps ?? 0,
    udps: s?.udps ?? 0,
    counters: s ? { ...s.counters } : base.counters,
    traffic: s ? { ...s.traffic } : base.traffic,
    hours,
    // Without a stored state there is no trusted last sample: the next one is a baseline.
    track: s ? { ...newCounterTrack(), ...(resume.track ?? {}), last: { ...s.counters } } : newCounterTrack(),
    stateAt: Math.max(s?.at ?? 0, c?.at ?? 0),
    // Log lines do not trigger a state flush, so the state's count can lag the lines stored after it.
    logLines: Math.max(resume.logLines ?? 0, stored.storedLogLines ?? 0),
    anomalies: resume.anomalies ?? base.anomalies,
    statusChanges: resume.statusChanges ?? [],
    deleted: c?.deleted ?? false,
    deletedAt: c?.deletedAt ?? null,
  };
}
