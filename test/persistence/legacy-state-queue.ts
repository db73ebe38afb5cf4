/**
 * The state queue as it was before tunnels were queued as deferred records (persister.ts before `DirtyTunnel`): a
 * record per tunnel refreshed in place on every update, buckets copied in by hour, merged on put-back. Kept only
 * as the reference the equivalence test (state-queue-equivalence.unit.spec.ts) compares the new queue with.
 */
import type { Counters } from '../../actors/model.js';
import { copyTrack } from '../../actors/traffic.js';
import type { HourBucketRecord, TunnelStateRecord } from '../../actors/records.js';
import type { StateChangeParams, TunnelContext } from '../../actors/tunnel.machine.js';

interface PendingState {
  state: TunnelStateRecord;
  hours: Record<string, Counters>;
}

export interface LegacyItem {
  key: string;
  value: PendingState;
  since: number;
}

const isEmpty = (record: Record<string, unknown>): boolean => {
  for (const _ in record) return false;
  return true;
};

function refreshStateRecord(r: TunnelStateRecord, c: TunnelContext): void {
  r.at = c.stateAt;
  r.status = c.status ?? 'stopped';
  r.mode = c.mode;
  r.ping = c.ping;
  r.pool = c.pool;
  r.tcps = c.tcps;
  r.udps = c.udps;
  // Copied: the tunnel updates its counters, traffic total, track's last sample and hour buckets in place (the
  // record keeps the update's values).
  r.counters = { ...c.counters };
  r.traffic = { ...c.traffic };
  const resume = (r.resume ??= {});
  resume['track'] = copyTrack(c.track);
  resume['logLines'] = c.logLines;
  resume['anomalies'] = c.anomalies;
  resume['statusChanges'] = c.statusChanges.length > 20 ? c.statusChanges.slice(-20) : c.statusChanges;
}

/** A bucket's values at the update (undefined: an hour the tunnel dropped at once, kept as such). */
const copyBucket = (bucket: Counters | undefined): Counters => (bucket === undefined ? (bucket as unknown as Counters) : { ...bucket });

function toStateRecord(c: TunnelContext): TunnelStateRecord {
  const record = { endpointId: c.endpointId, instanceId: c.instanceId } as TunnelStateRecord;
  refreshStateRecord(record, c);
  return record;
}

const merge = (older: PendingState, newer: PendingState): PendingState => ({
  state: newer.state.at >= older.state.at ? newer.state : older.state,
  hours: isEmpty(newer.hours) ? older.hours : isEmpty(older.hours) ? newer.hours : { ...older.hours, ...newer.hours },
});

export class LegacyStateQueue {
  private readonly entries = new Map<string, { value: PendingState; since: number }>();

  /** The old `queueState` effect; returns the queue size it notified with. */
  queueState(p: StateChangeParams, now: number): number {
    const c = p.context;
    const key = `${c.endpointId}/${c.instanceId}`;
    const prior = this.entries.get(key);
    if (prior) {
      if (c.stateAt >= prior.value.state.at) refreshStateRecord(prior.value.state, c);
      for (const hour in p.hours) prior.value.hours[hour] = copyBucket(p.hours[hour]);
    } else {
      const hours: Record<string, Counters> = {};
      for (const hour in p.hours) hours[hour] = copyBucket(p.hours[hour]);
      this.entries.set(key, { value: { state: toStateRecord(c), hours }, since: now });
    }
    return this.entries.size;
  }

  take(max: number): LegacyItem[] {
    const out: LegacyItem[] = [];
    for (const [key, entry] of this.entries) {
      if (out.length >= max) break;
      out.push({ key, ...entry });
      this.entries.delete(key);
    }
    return out;
  }

  putBack(batch: LegacyItem[]): void {
    const newer = new Map(this.entries);
    this.entries.clear();
    for (const item of batch) this.entries.set(item.key, { value: item.value, since: item.since });
    for (const [key, entry] of newer) {
      const old = this.entries.get(key);
      if (old) old.value = merge(old.value, entry.value);
      else this.entries.set(key, entry);
    }
  }

  get size(): number {
    return this.entries.size;
  }

  oldestSince(): number | null {
    for (const e of this.entries.values()) return e.since;
    return null;
  }
}

/** The rows the old `writeStateBatch` handed to `Store.flushTunnelStates` for a batch. */
export function legacyRows(batch: LegacyItem[]): { states: TunnelStateRecord[]; buckets: HourBucketRecord[] } {
  const states = batch.map((b) => b.value.state);
  const buckets: HourBucketRecord[] = [];
  for (const b of batch) {
    for (const [hour, traffic] of Object.entries(b.value.hours)) {
      buckets.push({ endpointId: b.value.state.endpointId, instanceId: b.value.state.instanceId, hour: Number(hour), traffic });
    }
  }
  return { states, buckets };
}
