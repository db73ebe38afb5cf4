/**
 * The SQL behind persistence: one method per write path, each writing a whole batch in one statement, plus the
 * readers for restoring actors and answering the API.
 *
 * Rules every write follows (see docs/database.md):
 *  - one statement per batch, fed by `unnest` over one array per column (a state flush: one per chunk of
 *    `FLUSH_CHUNK_ROWS`); the arrays of the hot writes are sent as literals built here (`numberArray`,
 *    `textArray`, a JSON array for `resume`; a flush chunk's in turns that yield to the event loop,
 *    `arrayLiteralsInTurns`): postgres.js' own array serialisation quotes and regex-escapes every element, ~40 ms of
 *    blocked event loop per 10,000 rows;
 *  - keys are deduplicated within a batch first (`ON CONFLICT DO UPDATE` rejects a batch holding a key twice);
 *  - replay-safe: writing the same batch again changes nothing (newer-wins guards, absolute bucket values,
 *    identity keys with `ON CONFLICT DO NOTHING`), so a supervisor may retry any batch it is unsure about;
 *  - each returns how many statements it ran and how many rows it changed, for the statistics.
 *
 * Times cross the boundary as epoch milliseconds (the actors' unit) and are stored as timestamptz.
 */
import type { Counters } from '../../actors/model.js';
import type {
  HourBucketRecord,
  LogRecord,
  OfflineRecord,
  StatusChangeRecord,
  TunnelConfigRecord,
  TunnelKey,
  TunnelStateRecord,
} from '../../actors/records.js';
import type { Database, Sql } from './connection.js';
import { InvalidCursorError } from './errors.js';

export const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

export interface StoreOptions {
  /** Log lines kept per instance per UTC day; the rest are cut and counted. Default 10,000; null: no cap. */
  logDailyCap?: number | null;
}

export interface WriteResult {
  /** Data statements sent (BEGIN/COMMIT not counted); 0 when the batch was empty. */
  statements: number;
  /** Rows inserted or changed. Rows skipped by a guard or as duplicates are not counted. */
  rows: number;
}

export interface FlushResult extends WriteResult {
  states: number;
  buckets: number;
}

export interface LogInsertResult extends WriteResult {
  inserted: number;
  /** Lines already stored (a replayed batch) or repeated within the batch. */
  duplicates: number;
  /** Lines over the per-instance daily cap, not stored but counted in `log_daily_counts.cut`. */
  cut: number;
}

export interface RollupResult extends WriteResult {
  /** The hours recomputed, epoch ms, ascending. */
  hours: number[];
  closedBuckets: number;
  endpointRows: number;
  globalRows: number;
}

export interface RetentionPolicy {
  logsDays: number;
  trafficDays: number;
}

export const DEFAULT_RETENTION: Readonly<RetentionPolicy> = Object.freeze({ logsDays: 7, trafficDays: 30 });

export interface RetentionResult extends WriteResult {
  deleted: {
    logs: number;
    logDailyCounts: number;
    trafficTunnel: number;
    trafficEndpoint: number;
    trafficGlobal: number;
    statusChanges: number;
    offline: number;
    tombstones: number;
  };
}

/** Everything needed to rebuild one tunnel actor after a restart. */
export interface StoredTunnel extends TunnelKey {
  /** Null while no configuration was ever written (a state flush can create the row first). */
  config: TunnelConfigRecord | null;
  /** Null while no state was ever flushed. */
  state: TunnelStateRecord | null;
  /** Buckets the rollup has not closed yet (the current hour, and any hour still awaiting its rollup). */
  openBuckets: HourBucketRecord[];
  /**
   * Log lines stored or cut by the daily cap, over the days retention kept (`log_daily_counts`). The state's
   * own count can lag: log lines do not trigger a state flush.
   */
  storedLogLines: number;
}

export interface TrafficSeriesQuery {
  /** Absent: global totals. */
  endpointId?: number;
  /** Requires `endpointId`: one tunnel's buckets. */
  instanceId?: string;
  /** Half-open range of hour starts, epoch ms: fromHour ≤ hour < toHour. */
  fromHour: number;
  toHour: number;
}

export interface TrafficPoint {
  hour: number;
  traffic: Counters;
}

export interface LogQuery {
  endpointId: number;
  instanceId?: string;
  /** Inclusive, epoch ms. */
  since?: number;
  /** Exclusive, epoch ms. */
  until?: number;
  level?: string | readonly string[];
}

export interface LogPageQuery extends LogQuery {
  /** 1..1000, default 100. */
  limit?: number;
  /** `nextCursor` of the previous page. */
  cursor?: string | null;
}

export interface StoredLog {
  id: number;
  endpointId: number;
  instanceId: string;
  at: number;
  time: string;
  level: string;
  message: string;
}

export interface LogPage {
  /** Newest first. */
  items: StoredLog[];
  /** Null on the last page. */
  nextCursor: string | null;
}

export interface TrafficTotalQuery {
  endpointId?: number;
  instanceId?: string;
  includeDeleted?: boolean;
}

/** A configuration record as the config writer hands it over: with the tunnel's baseline state while it has counted nothing. */
export interface TunnelConfigWrite extends TunnelConfigRecord {
  baseline?: TunnelStateRecord | null;
}

const NOTHING: WriteResult = Object.freeze({ statements: 0, rows: 0 });
/**
 * Largest state (or bucket) statement of a flush: it bounds the parameter postgres.js serialises in one go (its
 * literals are built in turns before that); 10,000 tunnels then cost 5 + 5 statements per flush, well within 2 per
 * 1,000 update events whenever most tunnels report in a flush period.
 */
export const FLUSH_CHUNK_ROWS = 2_000;
const NO_CAP = Number.MAX_SAFE_INTEGER;

export class Store {
  readonly #sql: Sql;
  readonly #logDailyCap: number;

  constructor(db: Pick<Database, 'sql'>, options: StoreOptions = {}) {
    this.#sql = db.sql;
    const cap = options.logDailyCap === undefined ? 10_000 : options.logDailyCap;
    this.#logDailyCap = cap === null ? NO_CAP : cap;
  }

  /** One round trip (`SELECT 1`): whether the database answers (the persister's recovery probe). */
  async ping(): Promise<void> {
    await this.#sql`SELECT 1`;
  }

  // -------------------------------------------------------------------------------------------------------------
  // Writes

  /**
   * Static configuration, status and tombstone. Newer wins on `config_at`; status has its own guard.
   *
   * A record may carry a `baseline`: the tunnel's state while it has counted no traffic yet (its creation: the
   * first absolute counters and when they were seen). It goes into the state columns in the same statement, so a
   * new tunnel's row holds a baseline from the moment it exists, before any state flush (a kill -9 in between no
   * longer loses the traffic up to the next sample). Newer wins on `state_at`, strictly: a state flush of the
   * same moment or later (which may already carry traffic) is never overwritten by a baseline. No buckets are
   * needed: a baseline's traffic is zero.
   */
  async writeTunnelConfigs(records: readonly TunnelConfigWrite[]): Promise<WriteResult> {
    const batch = latestPerTunnel(records);
    if (batch.length === 0) return NOTHING;
    const baselines = latestBaselinePerTunnel(records);
    const base = batch.map((r) => baselines.get(tunnelKey(r.endpointId, r.instanceId)) ?? null);
    const num = (pick: (b: TunnelStateRecord) => number) => base.map((b) => (b ? pick(b) : null));
    // `excluded.state_at` is null for a record without a baseline: the state columns then keep what they hold.
    const configNewer = this.#sql`(t.config_at IS NULL OR t.config_at <= excluded.config_at)`;
    const baselineNewer = this.#sql`(excluded.state_at IS NOT NULL AND (t.state_at IS NULL OR t.state_at < excluded.state_at))`;
    const cfg = (column: string) => this.#sql`${this.#sql(column)} = CASE WHEN ${configNewer} THEN excluded.${this.#sql(column)} ELSE t.${this.#sql(column)} END`;
    const state = (column: string) => this.#sql`${this.#sql(column)} = CASE WHEN ${baselineNewer} THEN excluded.${this.#sql(column)} ELSE t.${this.#sql(column)} END`;
    const result = await this.#sql`
      INSERT INTO tunnels AS t (endpoint_id, instance_id, alias, type, url, config, restart, meta,
                                deleted, deleted_at, config_at, status, status_at,
                                mode, ping, pool, tcps, udps, tcprx, tcptx, udprx, udptx,
                                traffic_tcprx, traffic_tcptx, traffic_udprx, traffic_udptx, resume, state_at)
      SELECT r.endpoint_id, r.instance_id, r.alias, r.type, r.url, r.config, r.restart, r.meta,
             r.deleted, to_timestamp(r.deleted_at / 1000.0), to_timestamp(r.at / 1000.0),
             r.status, to_timestamp(r.at / 1000.0),
             coalesce(r.mode, 0), coalesce(r.ping, 0), coalesce(r.pool, 0), coalesce(r.tcps, 0), coalesce(r.udps, 0),
             coalesce(r.tcprx, 0), coalesce(r.tcptx, 0), coalesce(r.udprx, 0), coalesce(r.udptx, 0),
             coalesce(r.traffic_tcprx, 0), coalesce(r.traffic_tcptx, 0), coalesce(r.traffic_udprx, 0), coalesce(r.traffic_udptx, 0),
             coalesce(r.resume, '{}'::json), to_timestamp(r.state_at / 1000.0)
      FROM unnest(
        ${batch.map((r) => r.endpointId)}::bigint[],
        ${batch.map((r) => r.instanceId)}::text[],
        ${batch.map((r) => r.alias)}::text[],
        ${batch.map((r) => r.type)}::text[],
        ${batch.map((r) => r.url)}::text[],
        ${batch.map((r) => r.config)}::text[],
        ${batch.map((r) => boolText(r.restart))}::text[]::boolean[],
        ${batch.map((r) => JSON.stringify(r.meta))}::text[]::jsonb[],
        ${batch.map((r) => boolText(r.deleted))}::text[]::boolean[],
        ${batch.map((r) => r.deletedAt)}::float8[],
        ${batch.map((r) => r.at)}::float8[],
        ${batch.map((r) => r.status)}::text[],
        ${num((b) => b.mode)}::integer[],
        ${num((b) => b.ping)}::integer[],
        ${num((b) => b.pool)}::integer[],
        ${num((b) => b.tcps)}::integer[],
        ${num((b) => b.udps)}::integer[],
        ${num((b) => b.counters.tcprx)}::bigint[],
        ${num((b) => b.counters.tcptx)}::bigint[],
        ${num((b) => b.counters.udprx)}::bigint[],
        ${num((b) => b.counters.udptx)}::bigint[],
        ${num((b) => b.traffic.tcprx)}::bigint[],
        ${num((b) => b.traffic.tcptx)}::bigint[],
        ${num((b) => b.traffic.udprx)}::bigint[],
        ${num((b) => b.traffic.udptx)}::bigint[],
        ${base.map((b) => (b ? JSON.stringify(b.resume) : null))}::text[]::json[],
        ${num((b) => b.at)}::float8[]
      ) AS r(endpoint_id, instance_id, alias, type, url, config, restart, meta, deleted, deleted_at, at, status,
             mode, ping, pool, tcps, udps, tcprx, tcptx, udprx, udptx,
             traffic_tcprx, traffic_tcptx, traffic_udprx, traffic_udptx, resume, state_at)
      ON CONFLICT (endpoint_id, instance_id) DO UPDATE SET
        ${cfg('alias')}, ${cfg('type')}, ${cfg('url')}, ${cfg('config')}, ${cfg('restart')}, ${cfg('meta')},
        ${cfg('deleted')}, ${cfg('deleted_at')}, ${cfg('config_at')},
        status = CASE WHEN ${configNewer} AND (t.status_at IS NULL OR t.status_at <= excluded.status_at)
                      THEN excluded.status ELSE t.status END,
        status_at = CASE WHEN ${configNewer} THEN GREATEST(t.status_at, excluded.status_at) ELSE t.status_at END,
        ${state('mode')}, ${state('ping')}, ${state('pool')}, ${state('tcps')}, ${state('udps')},
        ${state('tcprx')}, ${state('tcptx')}, ${state('udprx')}, ${state('udptx')},
        ${state('traffic_tcprx')}, ${state('traffic_tcptx')}, ${state('traffic_udprx')}, ${state('traffic_udptx')},
        ${state('resume')}, ${state('state_at')}
      WHERE ${configNewer} OR ${baselineNewer}`;
    return { statements: 1, rows: result.count };
  }

  /** Status history; a change already stored is skipped. */
  async writeStatusChanges(records: readonly StatusChangeRecord[]): Promise<WriteResult> {
    if (records.length === 0) return NOTHING;
    const result = await this.#sql`
      INSERT INTO tunnel_status_changes (endpoint_id, instance_id, at, status)
      SELECT r.endpoint_id, r.instance_id, to_timestamp(r.at / 1000.0), r.status
      FROM unnest(
        ${records.map((r) => r.endpointId)}::bigint[],
        ${records.map((r) => r.instanceId)}::text[],
        ${records.map((r) => r.at)}::float8[],
        ${records.map((r) => r.status)}::text[]
      ) AS r(endpoint_id, instance_id, at, status)
      ON CONFLICT DO NOTHING`;
    return { statements: 1, rows: result.count };
  }

  /**
   * Disconnected intervals, keyed by (endpoint, from): opens one, or closes the open one. A closed interval stays
   * closed with its first `to` (a replayed close changes nothing).
   */
  async writeOfflineIntervals(records: readonly OfflineRecord[]): Promise<WriteResult> {
    const batch = mergeOfflineIntervals(records);
    if (batch.length === 0) return NOTHING;
    const result = await this.#sql`
      INSERT INTO endpoint_offline AS o (endpoint_id, from_at, to_at, reason)
      SELECT r.endpoint_id, to_timestamp(r.from_at / 1000.0), to_timestamp(r.to_at / 1000.0), r.reason
      FROM unnest(
        ${batch.map((r) => r.endpointId)}::bigint[],
        ${batch.map((r) => r.from)}::float8[],
        ${batch.map((r) => r.to)}::float8[],
        ${batch.map((r) => r.reason)}::text[]
      ) AS r(endpoint_id, from_at, to_at, reason)
      ON CONFLICT (endpoint_id, from_at) DO UPDATE SET
        to_at = coalesce(o.to_at, excluded.to_at),
        reason = CASE WHEN o.reason = '' THEN excluded.reason ELSE o.reason END
      WHERE (o.to_at IS NULL AND excluded.to_at IS NOT NULL) OR (o.reason = '' AND excluded.reason <> '')`;
    return { statements: 1, rows: result.count };
  }

  /**
   * The coalesced dynamic state of many tunnels and their open hour buckets, in one transaction so a bucket is
   * never ahead of or behind the traffic total it was checkpointed with.
   *
   * States: newer wins on `state_at`; an older flush (a retry overtaken by a newer one) changes nothing.
   * Buckets: absolute values merged with GREATEST per counter. A bucket's traffic within its hour only grows, so
   * the larger value is always the more recent one; unlike a time guard this needs no timestamp on the bucket and
   * also holds when two flushes carry the same hour in either order. A write that grows a bucket the rollup had
   * already closed reopens it, so the next rollup recomputes that hour's totals.
   */
  async flushTunnelStates(
    states: readonly TunnelStateRecord[],
    buckets: readonly HourBucketRecord[],
  ): Promise<FlushResult> {
    const stateBatch = latestPerTunnel(states);
    if (stateBatch.length > FLUSH_CHUNK_ROWS) await yieldTurn(); // each of the two takes ~10 ms per 10,000 rows
    const bucketBatch = mergeBuckets(buckets);
    if (stateBatch.length === 0 && bucketBatch.length === 0) return { ...NOTHING, states: 0, buckets: 0 };

    // Chunks in key order, one after the other in one transaction: rows are locked in the same order as before.
    return this.#sql.begin(async (tx) => {
      let stateRows = 0;
      let bucketRows = 0;
      let statements = 0;
      for (let i = 0; i < stateBatch.length; i += FLUSH_CHUNK_ROWS) {
        const [endpointIds, instanceIds, ats, statuses, modes, pings, pools, tcps, udps, tcprx, tcptx, udprx, udptx,
          trafficTcprx, trafficTcptx, trafficUdprx, trafficUdptx, resumes] = await arrayLiteralsInTurns(
          stateBatch.slice(i, i + FLUSH_CHUNK_ROWS),
          STATE_COLUMNS,
        );
        const result = await tx`
          INSERT INTO tunnels AS t (endpoint_id, instance_id, status, status_at, mode, ping, pool, tcps, udps,
                                    tcprx, tcptx, udprx, udptx,
                                    traffic_tcprx, traffic_tcptx, traffic_udprx, traffic_udptx, resume, state_at)
          SELECT r.endpoint_id, r.instance_id, r.status, to_timestamp(r.at / 1000.0),
                 r.mode, r.ping, r.pool, r.tcps, r.udps, r.tcprx, r.tcptx, r.udprx, r.udptx,
                 r.traffic_tcprx, r.traffic_tcptx, r.traffic_udprx, r.traffic_udptx, r.resume,
                 to_timestamp(r.at / 1000.0)
          FROM ROWS FROM (
            unnest(${endpointIds}::bigint[]),
            unnest(${instanceIds}::text[]),
            unnest(${ats}::float8[]),
            unnest(${statuses}::text[]),
            unnest(${modes}::integer[]),
            unnest(${pings}::integer[]),
            unnest(${pools}::integer[]),
            unnest(${tcps}::integer[]),
            unnest(${udps}::integer[]),
            unnest(${tcprx}::bigint[]),
            unnest(${tcptx}::bigint[]),
            unnest(${udprx}::bigint[]),
            unnest(${udptx}::bigint[]),
            unnest(${trafficTcprx}::bigint[]),
            unnest(${trafficTcptx}::bigint[]),
            unnest(${trafficUdprx}::bigint[]),
            unnest(${trafficUdptx}::bigint[]),
            json_array_elements(${resumes}::text::json)
          ) AS r(endpoint_id, instance_id, at, status, mode, ping, pool, tcps, udps, tcprx, tcptx, udprx, udptx,
                 traffic_tcprx, traffic_tcptx, traffic_udprx, traffic_udptx, resume)
          ON CONFLICT (endpoint_id, instance_id) DO UPDATE SET
            mode = excluded.mode, ping = excluded.ping, pool = excluded.pool,
            tcps = excluded.tcps, udps = excluded.udps,
            tcprx = excluded.tcprx, tcptx = excluded.tcptx, udprx = excluded.udprx, udptx = excluded.udptx,
            traffic_tcprx = excluded.traffic_tcprx, traffic_tcptx = excluded.traffic_tcptx,
            traffic_udprx = excluded.traffic_udprx, traffic_udptx = excluded.traffic_udptx,
            resume = excluded.resume, state_at = excluded.state_at,
            status = CASE WHEN t.status_at IS NULL OR t.status_at <= excluded.status_at
                          THEN excluded.status ELSE t.status END,
            status_at = GREATEST(t.status_at, excluded.status_at)
          WHERE t.state_at IS NULL OR t.state_at <= excluded.state_at`;
        statements += 1;
        stateRows += result.count;
      }
      for (let i = 0; i < bucketBatch.length; i += FLUSH_CHUNK_ROWS) {
        const [endpointIds, instanceIds, hours, tcprx, tcptx, udprx, udptx] = await arrayLiteralsInTurns(
          bucketBatch.slice(i, i + FLUSH_CHUNK_ROWS),
          BUCKET_COLUMNS,
        );
        const result = await tx`
          INSERT INTO traffic_hourly_tunnel AS b (endpoint_id, instance_id, hour, tcprx, tcptx, udprx, udptx)
          SELECT r.endpoint_id, r.instance_id, to_timestamp(r.hour / 1000.0), r.tcprx, r.tcptx, r.udprx, r.udptx
          FROM unnest(
            ${endpointIds}::bigint[],
            ${instanceIds}::text[],
            ${hours}::float8[],
            ${tcprx}::bigint[],
            ${tcptx}::bigint[],
            ${udprx}::bigint[],
            ${udptx}::bigint[]
          ) AS r(endpoint_id, instance_id, hour, tcprx, tcptx, udprx, udptx)
          ON CONFLICT (endpoint_id, instance_id, hour) DO UPDATE SET
            tcprx = GREATEST(b.tcprx, excluded.tcprx), tcptx = GREATEST(b.tcptx, excluded.tcptx),
            udprx = GREATEST(b.udprx, excluded.udprx), udptx = GREATEST(b.udptx, excluded.udptx),
            closed = false
          WHERE excluded.tcprx > b.tcprx OR excluded.tcptx > b.tcptx
             OR excluded.udprx > b.udprx OR excluded.udptx > b.udptx`;
        statements += 1;
        bucketRows += result.count;
      }
      return { statements, rows: stateRows + bucketRows, states: stateRows, buckets: bucketRows };
    });
  }

  /**
   * Log lines, in one statement (one implicit transaction) that also maintains `log_daily_counts`:
   *  - lines already stored are skipped by their identity key, so a replayed batch inserts nothing;
   *  - each instance keeps at most `logDailyCap` lines per UTC day; the lines over it are cut and counted;
   *  - `kept` grows only by the rows this statement really inserted, so it stays exact under replays.
   * `cut` can count a line twice only if a batch that was cut is replayed after it committed (the lines were never
   * stored, so nothing identifies them); a batch retried after a failure rolled back counts once.
   */
  async insertLogs(records: readonly LogRecord[]): Promise<LogInsertResult> {
    const batch = uniqueLogLines(records);
    if (batch.length === 0) return { ...NOTHING, inserted: 0, duplicates: records.length, cut: 0 };
    const cap = this.#logDailyCap;
    const [outcome] = await this.#sql<{ inserted: number; cut: number }[]>`
      WITH input AS (
        SELECT r.endpoint_id, r.instance_id, to_timestamp(r.at / 1000.0) AS at, r.event_time, r.line_hash,
               r.ordinal, r.level, r.message
        FROM unnest(
          ${numberArray(batch, (r) => r.endpointId)}::bigint[],
          ${textArray(batch, (r) => r.instanceId)}::text[],
          ${numberArray(batch, (r) => r.at)}::float8[],
          ${textArray(batch, (r) => r.time)}::text[],
          ${textArray(batch, (r) => r.lineHash)}::text[],
          ${numberArray(batch, (r) => r.ordinal)}::integer[],
          ${textArray(batch, (r) => r.level)}::text[],
          ${textArray(batch, (r) => r.message)}::text[]
        ) AS r(endpoint_id, instance_id, at, event_time, line_hash, ordinal, level, message)
      ), sized AS (
        SELECT dated.*,
               coalesce((SELECT c.kept FROM log_daily_counts c
                         WHERE c.endpoint_id = dated.endpoint_id AND c.instance_id = dated.instance_id
                           AND c.day = dated.day), 0) AS day_kept,
               count(*) OVER (PARTITION BY dated.endpoint_id, dated.instance_id, dated.day) AS batch_lines
        FROM (SELECT input.*, (input.at AT TIME ZONE 'UTC')::date AS day FROM input) AS dated
      ), fresh AS (
        -- Lines already stored must not take a place under the cap, so they are excluded before ranking; but
        -- that probe only matters where the day's count could pass the cap with this batch. Elsewhere every line
        -- ranks under the cap whatever the duplicates, and the insert's ON CONFLICT skips the stored ones: the
        -- same result without one index probe per line (CASE evaluates the probe only in its ELSE branch).
        SELECT sized.* FROM sized
        WHERE CASE WHEN sized.day_kept + sized.batch_lines <= ${cap} THEN true
                   ELSE NOT EXISTS (
          -- at is the event time parsed from event_time, so the extra equality changes nothing logically; it
          -- keeps the probe selective whichever index the planner picks (without statistics it picked
          -- tunnel_logs_page on (endpoint_id, instance_id) alone and scanned every line of the instance: 2 s a batch).
          SELECT 1 FROM tunnel_logs l
          WHERE l.endpoint_id = sized.endpoint_id AND l.instance_id = sized.instance_id AND l.at = sized.at
            AND l.event_time = sized.event_time AND l.line_hash = sized.line_hash AND l.ordinal = sized.ordinal)
                   END
      ), ranked AS (
        SELECT fresh.*,
               fresh.day_kept + row_number() OVER (
                 PARTITION BY fresh.endpoint_id, fresh.instance_id, fresh.day
                 ORDER BY fresh.at, fresh.event_time, fresh.ordinal) AS position
        FROM fresh
      ), inserted AS (
        INSERT INTO tunnel_logs (endpoint_id, instance_id, at, event_time, line_hash, ordinal, level, message)
        SELECT endpoint_id, instance_id, at, event_time, line_hash, ordinal, level, message
        FROM ranked WHERE position <= ${cap}
        ORDER BY at, event_time, ordinal
        ON CONFLICT DO NOTHING
        RETURNING endpoint_id, instance_id, (at AT TIME ZONE 'UTC')::date AS day
      ), over_cap AS (
        SELECT endpoint_id, instance_id, day FROM ranked WHERE position > ${cap}
      ), tally AS (
        SELECT endpoint_id, instance_id, day, coalesce(k.kept, 0) AS kept, coalesce(c.cut, 0) AS cut
        FROM (SELECT endpoint_id, instance_id, day, count(*) AS kept FROM inserted GROUP BY 1, 2, 3) k
        FULL JOIN (SELECT endpoint_id, instance_id, day, count(*) AS cut FROM over_cap GROUP BY 1, 2, 3) c
          USING (endpoint_id, instance_id, day)
      ), counted AS (
        INSERT INTO log_daily_counts AS d (endpoint_id, instance_id, day, kept, cut)
        SELECT endpoint_id, instance_id, day, kept, cut FROM tally
        ON CONFLICT (endpoint_id, instance_id, day) DO UPDATE SET
          kept = d.kept + excluded.kept, cut = d.cut + excluded.cut
      )
      SELECT (SELECT count(*) FROM inserted) AS inserted, (SELECT count(*) FROM over_cap) AS cut`;
    const inserted = outcome?.inserted ?? 0;
    const cut = outcome?.cut ?? 0;
    return { statements: 1, rows: inserted, inserted, cut, duplicates: records.length - inserted - cut };
  }

  /**
   * Closes the buckets of finished hours and recomputes the per-endpoint and global totals of the hours touched.
   * Totals are sums over `traffic_hourly_tunnel`, written only where they differ: a second run changes no row.
   * `'all-closed'` rolls up every finished hour that still has an open bucket; a list recomputes those hours
   * (closing their buckets if the hour is over). Serialised across processes by an advisory lock.
   */
  async rollupHours(hours: readonly number[] | 'all-closed', now: number): Promise<RollupResult> {
    const currentHour = floorHour(now);
    return this.#sql.begin(async (tx) => {
      await tx`SELECT pg_advisory_xact_lock(hashtext('tunnelpulse.rollup:' || coalesce(current_schema(), '')))`;
      let statements = 1;
      let touched: number[];
      if (hours === 'all-closed') {
        const rows = await tx<{ hour: Date }[]>`
          SELECT DISTINCT hour FROM traffic_hourly_tunnel
          WHERE NOT closed AND hour < to_timestamp(${currentHour} / 1000.0)`;
        statements += 1;
        touched = rows.map((row) => row.hour.getTime());
      } else {
        touched = [...new Set(hours.map(assertWholeHour))];
      }
      touched.sort((a, b) => a - b);
      if (touched.length === 0) {
        return { statements, rows: 0, hours: [], closedBuckets: 0, endpointRows: 0, globalRows: 0 };
      }

      const closed = await tx`
        UPDATE traffic_hourly_tunnel SET closed = true
        WHERE NOT closed
          AND hour IN (SELECT to_timestamp(h / 1000.0) FROM unnest(${touched}::float8[]) AS h)
          AND hour < to_timestamp(${currentHour} / 1000.0)`;
      const [endpointTotals] = await tx<{ upserted: number; deleted: number }[]>`
        WITH touched AS (
          SELECT to_timestamp(h / 1000.0) AS hour FROM unnest(${touched}::float8[]) AS h
        ), sums AS (
          SELECT endpoint_id, hour, sum(tcprx)::bigint AS tcprx, sum(tcptx)::bigint AS tcptx,
                 sum(udprx)::bigint AS udprx, sum(udptx)::bigint AS udptx
          FROM traffic_hourly_tunnel WHERE hour IN (SELECT hour FROM touched)
          GROUP BY endpoint_id, hour
        ), deleted AS (
          DELETE FROM traffic_hourly_endpoint e
          WHERE e.hour IN (SELECT hour FROM touched)
            AND NOT EXISTS (SELECT 1 FROM sums s WHERE s.endpoint_id = e.endpoint_id AND s.hour = e.hour)
          RETURNING 1
        ), upserted AS (
          INSERT INTO traffic_hourly_endpoint AS e (endpoint_id, hour, tcprx, tcptx, udprx, udptx)
          SELECT endpoint_id, hour, tcprx, tcptx, udprx, udptx FROM sums
          ON CONFLICT (endpoint_id, hour) DO UPDATE SET
            tcprx = excluded.tcprx, tcptx = excluded.tcptx, udprx = excluded.udprx, udptx = excluded.udptx
          WHERE (e.tcprx, e.tcptx, e.udprx, e.udptx)
                IS DISTINCT FROM (excluded.tcprx, excluded.tcptx, excluded.udprx, excluded.udptx)
          RETURNING 1
        )
        SELECT (SELECT count(*) FROM upserted) AS upserted, (SELECT count(*) FROM deleted) AS deleted`;
      const [globalTotals] = await tx<{ upserted: number; deleted: number }[]>`
        WITH touched AS (
          SELECT to_timestamp(h / 1000.0) AS hour FROM unnest(${touched}::float8[]) AS h
        ), sums AS (
          SELECT hour, sum(tcprx)::bigint AS tcprx, sum(tcptx)::bigint AS tcptx,
                 sum(udprx)::bigint AS udprx, sum(udptx)::bigint AS udptx
          FROM traffic_hourly_tunnel WHERE hour IN (SELECT hour FROM touched)
          GROUP BY hour
        ), deleted AS (
          DELETE FROM traffic_hourly_global g
          WHERE g.hour IN (SELECT hour FROM touched) AND NOT EXISTS (SELECT 1 FROM sums s WHERE s.hour = g.hour)
          RETURNING 1
        ), upserted AS (
          INSERT INTO traffic_hourly_global AS g (hour, tcprx, tcptx, udprx, udptx)
          SELECT hour, tcprx, tcptx, udprx, udptx FROM sums
          ON CONFLICT (hour) DO UPDATE SET
            tcprx = excluded.tcprx, tcptx = excluded.tcptx, udprx = excluded.udprx, udptx = excluded.udptx
          WHERE (g.tcprx, g.tcptx, g.udprx, g.udptx)
                IS DISTINCT FROM (excluded.tcprx, excluded.tcptx, excluded.udprx, excluded.udptx)
          RETURNING 1
        )
        SELECT (SELECT count(*) FROM upserted) AS upserted, (SELECT count(*) FROM deleted) AS deleted`;
      statements += 3;
      const endpointRows = (endpointTotals?.upserted ?? 0) + (endpointTotals?.deleted ?? 0);
      const globalRows = (globalTotals?.upserted ?? 0) + (globalTotals?.deleted ?? 0);
      return {
        statements,
        rows: closed.count + endpointRows + globalRows,
        hours: touched,
        closedBuckets: closed.count,
        endpointRows,
        globalRows,
      };
    });
  }

  /**
   * Deletes what is older than the retention: log lines and their daily counts after `logsDays`; traffic buckets,
   * status history, closed offline intervals and tombstoned tunnels after `trafficDays`.
   */
  async applyRetention(now: number, policy: RetentionPolicy = DEFAULT_RETENTION): Promise<RetentionResult> {
    const logsBefore = now - policy.logsDays * DAY_MS;
    const historyBefore = now - policy.trafficDays * DAY_MS;
    const sql = this.#sql;
    const logsCutoff = sql`to_timestamp(${logsBefore} / 1000.0)`;
    const historyCutoff = sql`to_timestamp(${historyBefore} / 1000.0)`;
    // Separate statements, not one transaction: each is consistent on its own, and a long transaction holding
    // big deletes would only block the writers longer.
    const deleted = {
      logs: (await sql`DELETE FROM tunnel_logs WHERE at < ${logsCutoff}`).count,
      logDailyCounts: (await sql`
        DELETE FROM log_daily_counts WHERE day < (${logsCutoff} AT TIME ZONE 'UTC')::date`).count,
      trafficTunnel: (await sql`DELETE FROM traffic_hourly_tunnel WHERE hour < ${historyCutoff}`).count,
      trafficEndpoint: (await sql`DELETE FROM traffic_hourly_endpoint WHERE hour < ${historyCutoff}`).count,
      trafficGlobal: (await sql`DELETE FROM traffic_hourly_global WHERE hour < ${historyCutoff}`).count,
      statusChanges: (await sql`DELETE FROM tunnel_status_changes WHERE at < ${historyCutoff}`).count,
      offline: (await sql`DELETE FROM endpoint_offline WHERE to_at < ${historyCutoff}`).count,
      tombstones: (await sql`DELETE FROM tunnels WHERE deleted AND deleted_at < ${historyCutoff}`).count,
    };
    const rows = Object.values(deleted).reduce((sum, n) => sum + n, 0);
    return { statements: Object.keys(deleted).length, rows, deleted };
  }

  // -------------------------------------------------------------------------------------------------------------
  // Reads

  /** Every tunnel (tombstones included) of one endpoint, or of all, with what its actor needs to resume. */
  /** The hours (epoch ms) that have a tunnel bucket for any of these endpoints (replay rolls them up at the end). */
  async trafficHours(endpointIds: readonly number[]): Promise<number[]> {
    if (endpointIds.length === 0) return [];
    const rows = await this.#sql<{ hour: Date }[]>`
      SELECT DISTINCT hour FROM traffic_hourly_tunnel WHERE endpoint_id = ANY(${endpointIds as number[]}::bigint[]) ORDER BY hour`;
    return rows.map((r) => r.hour.getTime());
  }

  async loadTunnels(endpointId?: number): Promise<StoredTunnel[]> {
    const sql = this.#sql;
    const byEndpoint = endpointId === undefined ? sql`` : sql`WHERE endpoint_id = ${endpointId}`;
    const rows = await sql<TunnelRow[]>`
      SELECT * FROM tunnels ${byEndpoint} ORDER BY endpoint_id, instance_id`;
    const bucketRows = await sql<BucketRow[]>`
      SELECT endpoint_id, instance_id, hour, tcprx, tcptx, udprx, udptx FROM traffic_hourly_tunnel
      WHERE NOT closed ${endpointId === undefined ? sql`` : sql`AND endpoint_id = ${endpointId}`}
      ORDER BY hour`;
    const bucketsByTunnel = new Map<string, HourBucketRecord[]>();
    for (const row of bucketRows) {
      const key = tunnelKey(row.endpoint_id, row.instance_id);
      const list = bucketsByTunnel.get(key) ?? [];
      list.push({
        endpointId: row.endpoint_id,
        instanceId: row.instance_id,
        hour: row.hour.getTime(),
        traffic: counters(row),
      });
      bucketsByTunnel.set(key, list);
    }
    const logRows = await sql<{ endpoint_id: number; instance_id: string; lines: number }[]>`
      SELECT endpoint_id, instance_id, sum(kept + cut)::bigint AS lines FROM log_daily_counts
      ${byEndpoint} GROUP BY endpoint_id, instance_id`;
    const linesByTunnel = new Map(logRows.map((r) => [tunnelKey(r.endpoint_id, r.instance_id), r.lines]));
    return rows.map((row) => {
      const key = tunnelKey(row.endpoint_id, row.instance_id);
      return { ...toStoredTunnel(row, bucketsByTunnel.get(key) ?? []), storedLogLines: linesByTunnel.get(key) ?? 0 };
    });
  }

  /** Offline intervals still open (for closing them when an endpoint actor resumes after a restart). */
  async loadOpenOfflineIntervals(endpointId?: number): Promise<OfflineRecord[]> {
    const sql = this.#sql;
    const rows = await sql<{ endpoint_id: number; from_at: Date; reason: string }[]>`
      SELECT endpoint_id, from_at, reason FROM endpoint_offline
      WHERE to_at IS NULL ${endpointId === undefined ? sql`` : sql`AND endpoint_id = ${endpointId}`}
      ORDER BY endpoint_id, from_at`;
    return rows.map((row) => ({ endpointId: row.endpoint_id, from: row.from_at.getTime(), to: null, reason: row.reason }));
  }

  /**
   * Hourly traffic, ascending, only hours that have data. Endpoint and global series read the rollup tables for
   * finished hours and sum the tunnel buckets live for any hour that still has an open bucket, so the current
   * hour is included and a late write is never hidden behind a stale total.
   */
  async trafficSeries(query: TrafficSeriesQuery): Promise<TrafficPoint[]> {
    const sql = this.#sql;
    const from = sql`to_timestamp(${assertWholeHour(query.fromHour)} / 1000.0)`;
    const to = sql`to_timestamp(${assertWholeHour(query.toHour)} / 1000.0)`;
    let rows: CounterRow[];
    if (query.instanceId !== undefined) {
      if (query.endpointId === undefined) throw new TypeError('trafficSeries: instanceId needs endpointId');
      rows = await sql<CounterRow[]>`
        SELECT hour, tcprx, tcptx, udprx, udptx FROM traffic_hourly_tunnel
        WHERE endpoint_id = ${query.endpointId} AND instance_id = ${query.instanceId}
          AND hour >= ${from} AND hour < ${to}
        ORDER BY hour`;
    } else {
      const byEndpoint = query.endpointId === undefined ? sql`` : sql`AND endpoint_id = ${query.endpointId}`;
      const totals =
        query.endpointId === undefined
          ? sql`traffic_hourly_global WHERE true`
          : sql`traffic_hourly_endpoint WHERE endpoint_id = ${query.endpointId}`;
      rows = await sql<CounterRow[]>`
        WITH open_hours AS (
          SELECT DISTINCT hour FROM traffic_hourly_tunnel
          WHERE NOT closed ${byEndpoint} AND hour >= ${from} AND hour < ${to}
        )
        SELECT hour, sum(tcprx)::bigint AS tcprx, sum(tcptx)::bigint AS tcptx,
               sum(udprx)::bigint AS udprx, sum(udptx)::bigint AS udptx
        FROM traffic_hourly_tunnel
        WHERE hour IN (SELECT hour FROM open_hours) ${byEndpoint}
        GROUP BY hour
        UNION ALL
        SELECT hour, tcprx, tcptx, udprx, udptx FROM ${totals}
          AND hour >= ${from} AND hour < ${to} AND hour NOT IN (SELECT hour FROM open_hours)
        ORDER BY hour`;
    }
    return rows.map((row) => ({ hour: row.hour.getTime(), traffic: counters(row) }));
  }

  /** One page of log lines, newest first, by keyset on (at, id): stable while new lines arrive. */
  async logsPage(query: LogPageQuery): Promise<LogPage> {
    const sql = this.#sql;
    const limit = Math.min(Math.max(Math.trunc(query.limit ?? 100), 1), 1000);
    const after = query.cursor ? decodeCursor(query.cursor) : null;
    const rows = await sql<LogRow[]>`
      SELECT id, endpoint_id, instance_id, at, event_time, level, message FROM tunnel_logs
      WHERE ${this.#logFilter(query)}
        ${after ? sql`AND (at, id) < (to_timestamp(${after.at} / 1000.0), ${after.id}::bigint)` : sql``}
      ORDER BY at DESC, id DESC
      LIMIT ${limit + 1}`;
    const items = rows.slice(0, limit).map(toStoredLog);
    const last = items[items.length - 1];
    return { items, nextCursor: rows.length > limit && last ? encodeCursor(last) : null };
  }

  async countLogs(query: LogQuery): Promise<number> {
    const [row] = await this.#sql<{ count: number }[]>`
      SELECT count(*) AS count FROM tunnel_logs WHERE ${this.#logFilter(query)}`;
    return row?.count ?? 0;
  }

  /** Lifetime traffic (the sum of accepted deltas) of the matching tunnels; tombstones excluded by default. */
  async sumTunnelTraffic(query: TrafficTotalQuery = {}): Promise<Counters> {
    const sql = this.#sql;
    if (query.instanceId !== undefined && query.endpointId === undefined) {
      throw new TypeError('sumTunnelTraffic: instanceId needs endpointId');
    }
    const [row] = await sql<Omit<CounterRow, 'hour'>[]>`
      SELECT coalesce(sum(traffic_tcprx), 0)::bigint AS tcprx, coalesce(sum(traffic_tcptx), 0)::bigint AS tcptx,
             coalesce(sum(traffic_udprx), 0)::bigint AS udprx, coalesce(sum(traffic_udptx), 0)::bigint AS udptx
      FROM tunnels
      WHERE true
        ${query.endpointId === undefined ? sql`` : sql`AND endpoint_id = ${query.endpointId}`}
        ${query.instanceId === undefined ? sql`` : sql`AND instance_id = ${query.instanceId}`}
        ${query.includeDeleted ? sql`` : sql`AND NOT deleted`}`;
    return row ? counters(row) : { tcprx: 0, tcptx: 0, udprx: 0, udptx: 0 };
  }

  #logFilter(query: LogQuery) {
    const sql = this.#sql;
    const levels = query.level === undefined ? null : typeof query.level === 'string' ? [query.level] : [...query.level];
    return sql`endpoint_id = ${query.endpointId}
      ${query.instanceId === undefined ? sql`` : sql`AND instance_id = ${query.instanceId}`}
      ${query.since === undefined ? sql`` : sql`AND at >= to_timestamp(${query.since} / 1000.0)`}
      ${query.until === undefined ? sql`` : sql`AND at < to_timestamp(${query.until} / 1000.0)`}
      ${levels === null ? sql`` : sql`AND level = ANY(${levels}::text[])`}`;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Batch preparation (pure)

function tunnelKey(endpointId: number, instanceId: string): string {
  return `${endpointId}/${instanceId}`;
}

/** One record per tunnel, the one with the latest `at` (the later one in the batch on a tie). */
export function latestPerTunnel<T extends TunnelKey & { at: number }>(records: readonly T[]): T[] {
  const latest = new Map<string, T>();
  for (const record of records) {
    const key = tunnelKey(record.endpointId, record.instanceId);
    const current = latest.get(key);
    if (!current || current.at <= record.at) latest.set(key, record);
  }
  // In key order: two transactions touching the same tunnels (a retry beside a write that hung and resumed)
  // then lock the rows in the same order and cannot deadlock.
  return [...latest.values()].sort(compareTunnelKeys);
}

/** Per tunnel, the newest baseline any of the records carries (the latest config may carry none). */
function latestBaselinePerTunnel(records: readonly TunnelConfigWrite[]): Map<string, TunnelStateRecord> {
  const latest = new Map<string, TunnelStateRecord>();
  for (const record of records) {
    const b = record.baseline;
    if (!b) continue;
    const key = tunnelKey(record.endpointId, record.instanceId);
    const current = latest.get(key);
    if (!current || current.at <= b.at) latest.set(key, b);
  }
  return latest;
}

function compareTunnelKeys(a: TunnelKey, b: TunnelKey): number {
  return a.endpointId - b.endpointId || (a.instanceId < b.instanceId ? -1 : a.instanceId > b.instanceId ? 1 : 0);
}

/** One bucket per (tunnel, hour), each counter the largest seen (buckets only grow). */
export function mergeBuckets(buckets: readonly HourBucketRecord[]): HourBucketRecord[] {
  const merged = new Map<string, HourBucketRecord>();
  for (const bucket of buckets) {
    assertWholeHour(bucket.hour);
    const key = `${tunnelKey(bucket.endpointId, bucket.instanceId)}@${bucket.hour}`;
    const current = merged.get(key);
    merged.set(
      key,
      current
        ? {
            ...current,
            traffic: {
              tcprx: Math.max(current.traffic.tcprx, bucket.traffic.tcprx),
              tcptx: Math.max(current.traffic.tcptx, bucket.traffic.tcptx),
              udprx: Math.max(current.traffic.udprx, bucket.traffic.udprx),
              udptx: Math.max(current.traffic.udptx, bucket.traffic.udptx),
            },
          }
        : bucket,
    );
  }
  return [...merged.values()].sort((a, b) => compareTunnelKeys(a, b) || a.hour - b.hour);
}

/** One record per (endpoint, from): a close beats an open, the first non-empty reason is kept. */
export function mergeOfflineIntervals(records: readonly OfflineRecord[]): OfflineRecord[] {
  const merged = new Map<string, OfflineRecord>();
  for (const record of records) {
    const key = `${record.endpointId}@${record.from}`;
    const current = merged.get(key);
    merged.set(
      key,
      current
        ? { ...current, to: current.to ?? record.to, reason: current.reason || record.reason }
        : record,
    );
  }
  return [...merged.values()];
}

/** Drops repeats of a line's identity within the batch (they would skew the daily cap's ranking). */
function uniqueLogLines(records: readonly LogRecord[]): LogRecord[] {
  const seen = new Map<string, LogRecord>();
  for (const record of records) {
    const key = `${tunnelKey(record.endpointId, record.instanceId)}|${record.time}|${record.lineHash}|${record.ordinal}`;
    if (!seen.has(key)) seen.set(key, record);
  }
  return [...seen.values()];
}

export function floorHour(ms: number): number {
  return Math.floor(ms / HOUR_MS) * HOUR_MS;
}

function assertWholeHour(ms: number): number {
  if (!Number.isFinite(ms) || ms % HOUR_MS !== 0) throw new RangeError(`not the start of an hour: ${ms}`);
  return ms;
}

/** One element of a PostgreSQL array literal of numbers (numbers need no quoting). */
function numberElement(value: number | null | undefined): string {
  if (value === null || value === undefined) return 'NULL';
  if (Number.isFinite(value)) return String(value);
  throw new TypeError(`not a finite number: ${value}`);
}

const ARRAY_ESCAPE_TEST = /["\\]/;
const ARRAY_ESCAPE = /["\\]/g;

/** One element of a PostgreSQL array literal of strings: quoted, `"` and `\` escaped only where a value holds one. */
function textElement(value: string | null | undefined): string {
  if (value === null || value === undefined) return 'NULL';
  return `"${ARRAY_ESCAPE_TEST.test(value) ? value.replace(ARRAY_ESCAPE, '\\$&') : value}"`;
}

/**
 * A PostgreSQL array literal of numbers (`{1,2.5,NULL}`), sent as one text parameter (postgres.js passes a
 * string through for an array-typed parameter).
 */
export function numberArray<T>(rows: readonly T[], pick: (row: T) => number | null | undefined): string {
  const parts = new Array<string>(rows.length);
  for (let i = 0; i < rows.length; i++) parts[i] = numberElement(pick(rows[i]!));
  return `{${parts.join(',')}}`;
}

/** A PostgreSQL array literal of strings (`{"a",NULL,"x\"y"}`). */
export function textArray<T>(rows: readonly T[], pick: (row: T) => string | null | undefined): string {
  const parts = new Array<string>(rows.length);
  for (let i = 0; i < rows.length; i++) parts[i] = textElement(pick(rows[i]!));
  return `{${parts.join(',')}}`;
}

/**
 * A column of a batch sent as one literal: `number` and `text` as PostgreSQL array literals, `json` as one JSON
 * array (read back with `json_array_elements`: no per-element escaping at all).
 */
export type LiteralColumn<T> =
  | { kind: 'number'; pick: (row: T) => number | null | undefined }
  | { kind: 'text'; pick: (row: T) => string | null | undefined }
  | { kind: 'json'; pick: (row: T) => unknown };

/** Work done between two yields to the event loop while building the literals of a batch. */
const TURN_MS = 1;

const yieldTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * The literals of every column of a batch, built in turns of about `TURN_MS` with a yield to the event loop
 * between them. A 2,000-row state chunk has 18 columns (~36,000 elements, a `resume` alone costs ~5 µs to
 * stringify): built in one go it held the loop ~5–10 ms per chunk, which every HTTP request arriving meanwhile
 * waited for (the tunnel-state query's p99, docs/performance.md).
 */
export async function arrayLiteralsInTurns<T, const C extends readonly LiteralColumn<T>[]>(
  rows: readonly T[],
  columns: C,
): Promise<{ [K in keyof C]: string }> {
  const parts = columns.map(() => new Array<string>(rows.length));
  let turnStarted = performance.now();
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i]!;
    for (let c = 0; c < columns.length; c++) {
      const column = columns[c]!;
      parts[c]![i] =
        column.kind === 'number'
          ? numberElement(column.pick(row))
          : column.kind === 'text'
            ? textElement(column.pick(row))
            : (JSON.stringify(column.pick(row)) ?? 'null');
    }
    if ((i & 31) === 31 && performance.now() - turnStarted > TURN_MS) {
      await yieldTurn();
      turnStarted = performance.now();
    }
  }
  return columns.map((column, c) => (column.kind === 'json' ? `[${parts[c]!.join(',')}]` : `{${parts[c]!.join(',')}}`)) as {
    [K in keyof C]: string;
  };
}

/** The columns of a state flush chunk, in the order of `flushTunnelStates`' `ROWS FROM`. */
const STATE_COLUMNS = [
  { kind: 'number', pick: (s) => s.endpointId },
  { kind: 'text', pick: (s) => s.instanceId },
  { kind: 'number', pick: (s) => s.at },
  { kind: 'text', pick: (s) => s.status },
  { kind: 'number', pick: (s) => s.mode },
  { kind: 'number', pick: (s) => s.ping },
  { kind: 'number', pick: (s) => s.pool },
  { kind: 'number', pick: (s) => s.tcps },
  { kind: 'number', pick: (s) => s.udps },
  { kind: 'number', pick: (s) => s.counters.tcprx },
  { kind: 'number', pick: (s) => s.counters.tcptx },
  { kind: 'number', pick: (s) => s.counters.udprx },
  { kind: 'number', pick: (s) => s.counters.udptx },
  { kind: 'number', pick: (s) => s.traffic.tcprx },
  { kind: 'number', pick: (s) => s.traffic.tcptx },
  { kind: 'number', pick: (s) => s.traffic.udprx },
  { kind: 'number', pick: (s) => s.traffic.udptx },
  { kind: 'json', pick: (s) => s.resume },
] as const satisfies readonly LiteralColumn<TunnelStateRecord>[];

/** The columns of a bucket flush chunk, in the order of `flushTunnelStates`' bucket `unnest`. */
const BUCKET_COLUMNS = [
  { kind: 'number', pick: (b) => b.endpointId },
  { kind: 'text', pick: (b) => b.instanceId },
  { kind: 'number', pick: (b) => b.hour },
  { kind: 'number', pick: (b) => b.traffic.tcprx },
  { kind: 'number', pick: (b) => b.traffic.tcptx },
  { kind: 'number', pick: (b) => b.traffic.udprx },
  { kind: 'number', pick: (b) => b.traffic.udptx },
] as const satisfies readonly LiteralColumn<HourBucketRecord>[];

/** postgres.js sends a JS boolean array as a scalar boolean; text casts to boolean[] reliably. */
function boolText(value: boolean): string {
  return value ? 'true' : 'false';
}

// ---------------------------------------------------------------------------------------------------------------
// Row mapping

interface CounterRow {
  hour: Date;
  tcprx: number;
  tcptx: number;
  udprx: number;
  udptx: number;
}

interface BucketRow extends CounterRow {
  endpoint_id: number;
  instance_id: string;
}

interface TunnelRow {
  endpoint_id: number;
  instance_id: string;
  alias: string;
  type: string;
  url: string;
  config: string;
  restart: boolean;
  meta: TunnelConfigRecord['meta'];
  config_at: Date | null;
  deleted: boolean;
  deleted_at: Date | null;
  status: TunnelConfigRecord['status'];
  status_at: Date | null;
  mode: number;
  ping: number;
  pool: number;
  tcps: number;
  udps: number;
  tcprx: number;
  tcptx: number;
  udprx: number;
  udptx: number;
  traffic_tcprx: number;
  traffic_tcptx: number;
  traffic_udprx: number;
  traffic_udptx: number;
  resume: Record<string, unknown>;
  state_at: Date | null;
}

interface LogRow {
  id: number;
  endpoint_id: number;
  instance_id: string;
  at: Date;
  event_time: string;
  level: string;
  message: string;
}

function counters(row: Omit<CounterRow, 'hour'>): Counters {
  return { tcprx: row.tcprx, tcptx: row.tcptx, udprx: row.udprx, udptx: row.udptx };
}

function toStoredTunnel(row: TunnelRow, openBuckets: HourBucketRecord[]): Omit<StoredTunnel, 'storedLogLines'> {
  const key = { endpointId: row.endpoint_id, instanceId: row.instance_id };
  return {
    ...key,
    config: row.config_at
      ? {
          ...key,
          alias: row.alias,
          type: row.type,
          url: row.url,
          config: row.config,
          restart: row.restart,
          meta: row.meta,
          status: row.status,
          deleted: row.deleted,
          deletedAt: row.deleted_at?.getTime() ?? null,
          at: row.config_at.getTime(),
        }
      : null,
    state: row.state_at
      ? {
          ...key,
          at: row.state_at.getTime(),
          status: row.status,
          mode: row.mode,
          ping: row.ping,
          pool: row.pool,
          tcps: row.tcps,
          udps: row.udps,
          counters: counters(row),
          traffic: {
            tcprx: row.traffic_tcprx,
            tcptx: row.traffic_tcptx,
            udprx: row.traffic_udprx,
            udptx: row.traffic_udptx,
          },
          resume: row.resume,
        }
      : null,
    openBuckets,
  };
}

function toStoredLog(row: LogRow): StoredLog {
  return {
    id: row.id,
    endpointId: row.endpoint_id,
    instanceId: row.instance_id,
    at: row.at.getTime(),
    time: row.event_time,
    level: row.level,
    message: row.message,
  };
}

// Cursors are opaque to clients: base64url of "<at ms>:<id>" of the last row served.
function encodeCursor(log: StoredLog): string {
  return Buffer.from(`${log.at}:${log.id}`, 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): { at: number; id: number } {
  const match = /^(\d{1,16}):(\d{1,19})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!match) throw new InvalidCursorError();
  return { at: Number(match[1]), id: Number(match[2]) };
}
