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
 * Presence (`lease_owners`): every owner also renews a row of its own, so a process that holds nothing yet (it
 * just joined, everything is taken) still counts as a live owner and the others shrink their fair share for it.
 * The service side is `src/service/lease-keeper.ts` (docs/database.md, "Several processes").
 */
import type { Database, Sql } from './connection.js';

export interface ClaimOptions {
  /** How long a claim or renewal lasts. */
  ttlMs: number;
  /** At most this many endpoints held after the claim (those already held count first). Default: no limit. */
  limit?: number;
}

/** What an owner needs to compute its fair share: ceil(enabledEndpoints / liveOwners). */
export interface LeaseCensus {
  enabledEndpoints: number;
  /** Distinct owners alive (presence row or an unexpired lease), this owner included. */
  liveOwners: number;
  /** The fewest enabled endpoints any live owner holds (0 for one that just joined). */
  fewestHeld: number;
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

  /** Who holds the endpoint with an unexpired lease (any owner), or null. */
  async holder(id: number): Promise<string | null> {
    const [row] = await this.#sql<{ owner: string }[]>`
      SELECT lease_owner AS owner FROM endpoints WHERE id = ${id} AND lease_owner IS NOT NULL AND lease_until >= clock_timestamp()`;
    return row?.owner ?? null;
  }

  /** The ids this owner holds with an unexpired lease. */
  async held(): Promise<number[]> {
    const rows = await this.#sql<{ id: number }[]>`
      SELECT id FROM endpoints WHERE lease_owner = ${this.owner} AND lease_until >= clock_timestamp() ORDER BY id`;
    return rows.map((r) => r.id);
  }

  /**
   * Says this owner is alive for `ttlMs` (server time), and forgets owners whose presence ran out (a crashed
   * process never deletes its own row).
   */
  async heartbeat(ttlMs: number): Promise<void> {
    await this.#sql`
      INSERT INTO lease_owners (owner, alive_until) VALUES (${this.owner}, clock_timestamp() + ${ttlMs} * interval '1 millisecond')
      ON CONFLICT (owner) DO UPDATE SET alive_until = EXCLUDED.alive_until`;
    await this.#sql`DELETE FROM lease_owners WHERE alive_until < clock_timestamp()`;
  }

  /** Enabled endpoints and live owners (this one counted even before its first heartbeat). */
  async census(): Promise<LeaseCensus> {
    const [row] = await this.#sql<{ enabled: number; owners: number; fewest: number }[]>`
      WITH live AS (
        SELECT owner FROM lease_owners WHERE alive_until >= clock_timestamp()
        UNION SELECT lease_owner FROM endpoints WHERE lease_owner IS NOT NULL AND lease_until >= clock_timestamp()
        UNION SELECT ${this.owner}::text
      ), per_owner AS (
        SELECT l.owner, count(e.id) AS held
        FROM live l LEFT JOIN endpoints e ON e.lease_owner = l.owner AND e.enabled AND e.lease_until >= clock_timestamp()
        GROUP BY l.owner
      )
      SELECT
        (SELECT count(*) FROM endpoints WHERE enabled)::int AS enabled,
        (SELECT count(*) FROM live)::int AS owners,
        (SELECT coalesce(min(held), 0) FROM per_owner)::int AS fewest`;
    return { enabledEndpoints: row?.enabled ?? 0, liveOwners: Math.max(1, row?.owners ?? 1), fewestHeld: row?.fewest ?? 0 };
  }

  /** Leaves: releases every lease and deletes the presence row (a clean shutdown). Returns the leases released. */
  async leave(): Promise<number> {
    const released = await this.release();
    await this.#sql`DELETE FROM lease_owners WHERE owner = ${this.owner}`;
    return released;
  }
}
