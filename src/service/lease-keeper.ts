/**
 * The lease keeper: with leases on (TUNNELPULSE_LEASES=1), several TunnelPulse processes sharing one database
 * divide the endpoints among themselves, and this process runs actors only for the endpoints it holds.
 *
 * Every `renewEveryMs` a round:
 *  1. says this process is alive (`lease_owners`), and reads the census: fair share = ceil(enabled endpoints /
 *     live owners), this process included — so a process that just joined and holds nothing is counted;
 *  2. above its share, gives up the excess a step at a time (at most a quarter of the share per round), so load
 *     moves to a newcomer without leaving many endpoints unwatched at once; at its share while some owner holds
 *     fewer than floor(enabled / owners) (7 endpoints, 3 owners: 3/3/1), gives up one, so the spread ends at most
 *     one apart. Giving up: stop the actors, write what they queued, then release the leases (in that order, so
 *     the next holder restores from what was written);
 *  3. renews what it holds and claims free or expired enabled endpoints up to its share (one statement,
 *     SKIP LOCKED: two processes never win the same row); in a round that gave something up it claims nothing
 *     new, so what it released goes to the others;
 *  4. re-reads the endpoint rows (endpoints added, changed or removed through another process's API show up
 *     here), starts an actor, restored from the database, for each endpoint gained, and stops the actors of those
 *     lost (taken over after an expiry, disabled, deleted).
 *
 * If renewal fails (the database is down or partitioned away), the actors keep running until the leases would
 * have expired — measured from when the last successful claim was sent, on this process's monotonic clock, minus
 * a margin — and are then stopped, so a partitioned process never reads an endpoint that another process may
 * already hold. What they queued stays queued and is written when the database is back (every write is
 * idempotent and newer-wins: docs/database.md, "Several processes").
 *
 * A clean stop stops every actor, writes what they queued (bounded), releases every lease and deletes the
 * presence row, so the others take over at their next round instead of after a TTL.
 */
import type { Logger } from 'pino';
import type { LeaseRepo } from '../db/leases.js';

/** The registry side the keeper drives (EndpointRegistry with `leased: true`). */
export interface LeasedRegistry {
  attach(id: number): Promise<boolean>;
  detach(id: number): void;
  refresh(): Promise<void>;
  attached(): number[];
}

export interface LeaseKeeperOptions {
  leases: Pick<LeaseRepo, 'owner' | 'claim' | 'release' | 'heartbeat' | 'census' | 'leave'>;
  registry: LeasedRegistry;
  /** Writes everything queued (the persister's drain). */
  flushPending: () => Promise<void>;
  ttlMs: number;
  renewEveryMs: number;
  log?: Pick<Logger, 'info' | 'warn'>;
  /** A failed round (the database refused or timed out), for the service statistics. */
  onError?: (error: unknown) => void;
  /** Monotonic milliseconds (default `performance.now`): lease deadlines must not move with the wall clock. */
  clock?: () => number;
}

export interface LeaseKeeperStatus {
  owner: string;
  held: number[];
  share: number;
  liveOwners: number;
  enabledEndpoints: number;
  rounds: number;
  failedRounds: number;
  /** Times the leases ran out without a renewal and every actor was stopped. */
  expirations: number;
  gained: number;
  lost: number;
  released: number;
  lastError: string | null;
}

export class LeaseKeeper {
  private readonly leases: LeaseKeeperOptions['leases'];
  private readonly registry: LeasedRegistry;
  private readonly options: LeaseKeeperOptions;
  private readonly clock: () => number;
  /** Stop reading this long before the lease would expire in the database. */
  private readonly marginMs: number;
  private validUntil = 0;
  private roundTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  private readonly counts: Omit<LeaseKeeperStatus, 'owner' | 'held'> = {
    share: 0,
    liveOwners: 0,
    enabledEndpoints: 0,
    rounds: 0,
    failedRounds: 0,
    expirations: 0,
    gained: 0,
    lost: 0,
    released: 0,
    lastError: null,
  };

  constructor(options: LeaseKeeperOptions) {
    if (options.renewEveryMs * 2 > options.ttlMs) throw new Error('the lease renewal period must be at most half the lease TTL');
    this.options = options;
    this.leases = options.leases;
    this.registry = options.registry;
    this.clock = options.clock ?? (() => performance.now());
    this.marginMs = Math.min(2_000, options.ttlMs / 5);
  }

  get owner(): string {
    return this.leases.owner;
  }

  /** Runs the first round (so the service starts with its share) and then one every `renewEveryMs`. */
  async start(): Promise<void> {
    await this.runRound();
    this.schedule();
  }

  /** A round soon (an endpoint was created or enabled here), rather than at the next period. */
  poke(): void {
    if (this.stopped) return;
    void this.runRound();
  }

  /** Runs one round now (or waits for the one under way and runs another after it). Never throws. */
  runRound(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.round();
        } while (this.again && !this.stopped);
      } finally {
        this.running = null;
      }
    })();
    return this.running;
  }

  status(): LeaseKeeperStatus {
    return { owner: this.owner, held: this.registry.attached(), ...this.counts };
  }

  /** Stops every actor, writes what they queued (within `flushTimeoutMs`), releases every lease, leaves. */
  async stop(flushTimeoutMs = this.options.ttlMs): Promise<void> {
    this.stopped = true;
    clearTimeout(this.roundTimer);
    clearTimeout(this.expiryTimer);
    // A round hung on an unreachable database must not hold the shutdown up.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.running, new Promise((resolve) => (timer = setTimeout(resolve, flushTimeoutMs)))]);
    clearTimeout(timer);
    const held = this.registry.attached();
    for (const id of held) this.registry.detach(id);
    try {
      await this.flushWithin(flushTimeoutMs);
      const released = await this.leases.leave();
      this.counts.released += released;
      this.options.log?.info({ owner: this.owner, released }, 'leases released');
    } catch (error) {
      // The leases expire on their own; the persister's shutdown flush (or spill) deals with the queues.
      this.failed(error, 'leases not released on stop (they expire on their own)');
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    this.roundTimer = setTimeout(() => {
      void this.runRound().finally(() => this.schedule());
    }, this.options.renewEveryMs);
    this.roundTimer.unref();
  }

  private async round(): Promise<void> {
    const { ttlMs } = this.options;
    this.counts.rounds++;
    try {
      await this.leases.heartbeat(ttlMs);
      const census = await this.leases.census();
      const share = Math.ceil(census.enabledEndpoints / census.liveOwners);
      Object.assign(this.counts, { share, liveOwners: census.liveOwners, enabledEndpoints: census.enabledEndpoints });

      let keep = this.registry.attached();
      const excess = keep.length - share;
      const floor = Math.floor(census.enabledEndpoints / census.liveOwners);
      const step = excess > 0
        ? Math.min(excess, Math.max(1, Math.ceil(share / 4)))
        : excess === 0 && share > floor && census.fewestHeld < floor ? 1 : 0;
      if (step > 0) {
        const giving = keep.slice(keep.length - step);
        keep = keep.slice(0, keep.length - step);
        await this.giveUp(giving);
      }

      const sentAt = this.clock();
      const held = await this.leases.claim({ ttlMs, limit: step > 0 ? keep.length : Math.max(keep.length, share) });
      if (this.stopped) return;
      if (this.clock() >= sentAt + ttlMs - this.marginMs) throw new Error(`the lease claim took longer than the lease (${ttlMs} ms)`);
      this.validUntil = sentAt + ttlMs - this.marginMs;
      this.armExpiry();

      const now = new Set(held);
      const lost = this.registry.attached().filter((id) => !now.has(id));
      for (const id of lost) this.registry.detach(id);
      if (lost.length > 0) {
        this.counts.lost += lost.length;
        // Disabled rows still carry this owner's lease: write what their actors queued, then free them (a no-op
        // where another owner holds it). A process removing an endpoint waits for that (registry.remove).
        await this.flushWithin(this.options.renewEveryMs).catch((error: unknown) => this.failed(error, 'queued writes not flushed before releasing lost leases'));
        await this.leases.release(lost);
        this.options.log?.info({ owner: this.owner, endpoints: lost }, 'endpoint leases lost: actors stopped');
      }
      await this.registry.refresh();
      const attached = new Set(this.registry.attached());
      const gained = held.filter((id) => !attached.has(id));
      for (const id of gained) {
        if (this.stopped) return;
        if (!(await this.registry.attach(id))) this.options.log?.warn({ endpointId: id }, 'API key sealed with another secret key: the endpoint stays in authFailed');
      }
      if (gained.length > 0) {
        this.counts.gained += gained.length;
        this.options.log?.info({ owner: this.owner, endpoints: gained, share, liveOwners: census.liveOwners }, 'endpoint leases gained: actors started');
      }
      this.counts.lastError = null;
    } catch (error) {
      this.counts.failedRounds++;
      this.failed(error, 'lease round failed: keeping what is held until the leases would expire');
    }
  }

  /** Stop the actors, write what they queued, then release: the next holder restores from what was written. */
  private async giveUp(ids: number[]): Promise<void> {
    for (const id of ids) this.registry.detach(id);
    try {
      await this.flushWithin(this.options.renewEveryMs);
    } catch (error) {
      // Released anyway: what is still queued is written later, and an older write never overwrites a newer one.
      this.failed(error, 'queued writes not flushed before giving leases up');
    }
    const released = await this.leases.release(ids);
    this.counts.released += released;
    this.options.log?.info({ owner: this.owner, endpoints: ids, share: this.counts.share }, 'endpoint leases given up to rebalance');
  }

  private async flushWithin(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the queued writes were not flushed within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      await Promise.race([this.options.flushPending(), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stops reading every held endpoint when its lease would run out without a renewal. */
  private armExpiry(): void {
    clearTimeout(this.expiryTimer);
    this.expiryTimer = setTimeout(() => {
      if (this.stopped) return;
      if (this.clock() < this.validUntil) return this.armExpiry(); // a timer may fire a hair early
      const held = this.registry.attached();
      if (held.length === 0) return;
      for (const id of held) this.registry.detach(id);
      this.counts.expirations++;
      this.counts.lost += held.length;
      this.options.log?.warn({ owner: this.owner, endpoints: held.length }, 'leases not renewed in time: stopped reading their endpoints (another process may hold them now)');
    }, Math.max(0, this.validUntil - this.clock()));
    this.expiryTimer.unref();
  }

  private failed(error: unknown, message: string): void {
    this.counts.lastError = error instanceof Error ? error.message : String(error);
    this.options.onError?.(error);
    this.options.log?.warn({ owner: this.owner, error: this.counts.lastError }, message);
  }
}
