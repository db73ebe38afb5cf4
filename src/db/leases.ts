/**
 * Endpoint leases: how several TunnelPulse processes sharing one database divide the endpoints among themselves
 * (BRIEF "Scale"). A process (an `owner`) holds an endpoint while `endpoints.lease_owner` is its name and
 * `lease_until` is in the future; it renews before expiry, and an endpoint whose lease ran out (its holder
 * died or lost the database) is free for anyone.
 *
 * Times are the database server's (`clock_timestamp()`), never the processes' own clocks, so clock skew between
 * hosts cannot make two owners believe they hold the same endpoint. Claims take row locks with `SKIP LOCKED`, so
 * concurrent claimers never wait on each other and never both win a row.
 *
 * Not wired into the service yet: today a process watches every enabled endpoint (see docs/database.md).
 */
import type { Database, Sql } from './connection.js';

export interface ClaimOptions {
  /** How long a claim or renewal lasts. */
  ttlMs: number;
  /** At most this many endpoints held after the claim (those already held count first). Default: no limit. */
  limit?: number;
}

export class LeaseRepo {
  readonly #sql: Sql;

  constructor(
    db: Pick<Database, 'sql'>,
    /** This process's name in `lease_owner` (unique per process: host, pid, start time). */
    readonly owner: string,
  ) {
    this.#sql = db.sql;
  }

  /**
   * Renews every lease this owner holds and claims free or expired ones (enabled endpoints only), up to
   * `limit` in all. Returns the ids held afterwards, ascending. A lease this owner let expire and someone else
   * took is not in the result: the caller stops watching it.
   */
  async claim(options: ClaimOptions): Promise<number[]> {
    const limit = options.limit ?? 2_147_483_647;
    const rows = await this.#sql<{ id: number }[]>`
      WITH candidates AS (
        SELECT id FROM endpoints
        WHERE enabled
          AND (lease_owner IS NULL OR lease_owner = ${this.owner} OR lease_until IS NULL OR lease_until < clock_timestamp())
        ORDER BY (lease_owner IS NOT DISTINCT FROM ${this.owner}) DESC, id
        LIMIT ${limit}
        FOR UPDATE SKIP LOCKED
      )
      UPDATE endpoints e
      SET lease_owner = ${this.owner}, lease_until = clock_timestamp() + ${options.ttlMs} * interval '1 millisecond'
      FROM candidates c WHERE e.id = c.id
      RETURNING e.id`;
    return rows.map((r) => r.id).sort((a, b) => a - b);
  }

  /** Gives up this owner's leases (all, or the given ids) at once, e.g. on a clean shutdown. Returns how many. */
  async release(ids?: readonly number[]): Promise<number> {
    const only = ids ? this.#sql`AND id = ANY(${ids as number[]}::bigint[])` : this.#sql``;
    const result = await this.#sql`
      UPDATE endpoints SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ${this.owner} ${only}`;
    return result.count;
  }

  /** The ids this owner holds with an unexpired lease. */
  async held(): Promise<number[]> {
    const rows = await this.#sql<{ id: number }[]>`
      SELECT id FROM endpoints WHERE lease_owner = ${this.owner} AND lease_until >= clock_timestamp() ORDER BY id`;
    return rows.map((r) => r.id);
  }
}
