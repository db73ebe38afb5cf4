/**
 * What the actors hand to persistence: plain records, one shape per table family.
 * The supervisors batch these; `src/db/store.ts` writes them. Times are epoch ms, counters are byte totals.
 */
import type { Counters, InstanceMeta, InstanceStatus } from './model.js';

export interface TunnelKey {
  /** TunnelPulse's numeric endpoint id (the `endpoints` table's primary key). */
  endpointId: number;
  /** NodePass's instance id (8 hex chars). */
  instanceId: string;
}

/** Static configuration, written through at once on create/delete/alias/URL/config/meta/restart/status changes. */
export interface TunnelConfigRecord extends TunnelKey {
  alias: string;
  type: string;
  url: string;
  config: string;
  restart: boolean;
  meta: InstanceMeta;
  status: InstanceStatus;
  deleted: boolean;
  /** When the tombstone was set, or null. */
  deletedAt: number | null;
  /** Event time of the change (newer-wins guard). */
  at: number;
}

/** The latest dynamic state of a tunnel, coalesced (one pending per tunnel) and flushed in batches. */
export interface TunnelStateRecord extends TunnelKey {
  /** Event time of the state (newer-wins guard: an older `at` never overwrites a newer row). */
  at: number;
  status: InstanceStatus;
  mode: number;
  ping: number;
  pool: number;
  tcps: number;
  udps: number;
  /** Last absolute counters as NodePass reported them. */
  counters: Counters;
  /** Sum of accepted deltas since the tunnel was first seen. */
  traffic: Counters;
  /** Counter-reset bookkeeping the tunnel needs to resume exactly after a restart (opaque JSON). */
  resume: Record<string, unknown>;
}

/** The absolute traffic of one tunnel in one hour (replay-safe: written as a value, never incremented). */
export interface HourBucketRecord extends TunnelKey {
  /** Start of the hour, epoch ms (UTC). */
  hour: number;
  traffic: Counters;
}

export interface StatusChangeRecord extends TunnelKey {
  at: number;
  status: InstanceStatus;
}

/** One log line. (endpointId, instanceId, time, lineHash, ordinal) is its identity, replay-safe. */
export interface LogRecord extends TunnelKey {
  at: number;
  /** The event's `time` as NodePass sent it (nanoseconds). */
  time: string;
  /** Hash of the raw line (hex). */
  lineHash: string;
  /** 1 for the first occurrence of (time, line) on a connection, 2 for a byte-identical second one, … */
  ordinal: number;
  /** Parsed level, lower case: debug|info|warn|error|event|unknown. */
  level: string;
  /** The line with ANSI colour codes removed. */
  message: string;
}

/** A disconnected interval of an endpoint. `to` is null while it is still disconnected. */
export interface OfflineRecord {
  endpointId: number;
  from: number;
  to: number | null;
  reason: string;
}
