/**
 * The queues between the actors and the database writers.
 *
 * - `CoalescingQueue`: at most one entry per key (the latest state of a tunnel, merged), so no event rate
 *   can make it grow past the number of tunnels. An entry can be `mark`ed with a deferred value, made only when
 *   taken: an update then costs its owner a few field writes.
 * - `SpillingQueue`: a FIFO (log lines, configuration changes) with a memory cap; past the cap, new items
 *   go to an append-only file and come back, in order, as the queue drains. Nothing is dropped.
 */
import { appendFileSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * A value made only when its entry is taken from a `CoalescingQueue` (`mark`): the state queue marks a tunnel dirty
 * per update and builds its record at the flush. `queued` is kept by the queue — true from `mark` until the entry is
 * taken or its value made for a merge — so the owner knows whether it may still note changes into it in place.
 */
export interface Deferred<V> {
  queued: boolean;
  /** Makes the value from the source's current state, in one synchronous step. */
  build(): V;
}

interface Entry<V> {
  /** A value already made (a replaced deferred one, or put back after a failed write); older than `deferred`, merged under it. */
  value: V | null;
  deferred: Deferred<V> | null;
  since: number;
}

export interface CoalescedItem<V> {
  key: string;
  value: V;
  since: number;
}

export class CoalescingQueue<V extends object> {
  private readonly entries = new Map<string, Entry<V>>();

  constructor(private readonly merge: (older: V, newer: V) => V) {}

  /**
   * Queues a deferred value (not queued elsewhere): its owner then notes changes into it in place until it is taken,
   * so an update costs no allocation and no lookup here. A value already queued under the key (put back, or another
   * source's) is older: merged under it when taken. Returns the queue size.
   */
  mark(key: string, deferred: Deferred<V>, now: number): number {
    const prior = this.entries.get(key);
    if (prior) {
      if (prior.deferred !== deferred) {
        if (prior.deferred) prior.value = this.made(prior);
        prior.deferred = deferred;
      }
    } else {
      this.entries.set(key, { value: null, deferred, since: now });
    }
    deferred.queued = true;
    return this.entries.size;
  }

  /** Removes up to `max` entries, oldest first, making their deferred values now. */
  take(max: number): Array<CoalescedItem<V>> {
    const out: Array<CoalescedItem<V>> = [];
    for (const [key, entry] of this.entries) {
      if (out.length >= max) break;
      this.entries.delete(key);
      out.push({ key, value: this.made(entry), since: entry.since });
    }
    return out;
  }

  /** Puts a failed batch back; anything queued since is newer and wins the merge. */
  putBack(batch: ReadonlyArray<CoalescedItem<V>>): void {
    const newer = new Map(this.entries);
    this.entries.clear();
    for (const item of batch) this.entries.set(item.key, { value: item.value, deferred: null, since: item.since });
    for (const [key, entry] of newer) {
      const old = this.entries.get(key);
      if (!old) {
        this.entries.set(key, entry);
        continue;
      }
      // Still deferred: made when taken, merged over the put-back value then (it stays marked for its owner).
      if (entry.value) old.value = this.merge(old.value!, entry.value);
      old.deferred = entry.deferred;
    }
  }

  get size(): number {
    return this.entries.size;
  }

  oldestSince(): number | null {
    for (const e of this.entries.values()) return e.since;
    return null;
  }

  /** The entry's value, its deferred part made now (and released by the queue: its owner starts a new one). */
  private made(entry: Entry<V>): V {
    const deferred = entry.deferred;
    if (!deferred) return entry.value!;
    entry.deferred = null;
    deferred.queued = false;
    const built = deferred.build();
    entry.value = entry.value ? this.merge(entry.value, built) : built;
    return entry.value;
  }
}

export interface SpillingQueueOptions {
  /** Items kept in memory before new ones spill to disk. */
  memoryCap: number;
  /** The spill file (JSON Lines). Without one, the cap is not enforced (memory only, e.g. replay). */
  spillPath?: string;
}

/** A FIFO with a memory cap and an on-disk overflow, order preserved. */
export class SpillingQueue<T> {
  private memory: Array<{ item: T; since: number }> = [];
  private head = 0;
  /** Items in the spill file not yet read back. */
  private spilled = 0;
  private spillReadOffset = 0;
  /** Batches handed out by `take` and not yet written (`done`) or returned (`putBack`): they count against the cap. */
  private readonly outstanding = new Set<ReadonlyArray<{ item: T; since: number }>>();
  private outstandingItems = 0;
  spilledTotal = 0;

  constructor(private readonly options: SpillingQueueOptions) {
    // A spill left by a crashed process comes back first: it is older than anything queued now.
    if (options.spillPath && existsSync(options.spillPath)) {
      const lines = readFileSync(options.spillPath, 'utf8').split('\n').filter((l) => l.length > 0);
      this.spilled = lines.length;
    }
  }

  push(item: T, now: number): void {
    if (this.options.spillPath && (this.spilled > 0 || this.memoryHeld >= this.options.memoryCap)) {
      mkdirSync(dirname(this.options.spillPath), { recursive: true });
      appendFileSync(this.options.spillPath, JSON.stringify({ since: now, item }) + '\n');
      this.spilled++;
      this.spilledTotal++;
      return;
    }
    this.memory.push({ item, since: now });
  }

  take(max: number): Array<{ item: T; since: number }> {
    if (this.memory.length - this.head === 0 && this.spilled > 0) this.readBackSpill();
    const end = Math.min(this.memory.length, this.head + max);
    const out = this.memory.slice(this.head, end);
    this.head = end;
    if (out.length > 0) {
      this.outstanding.add(out);
      this.outstandingItems += out.length;
    }
    if (this.head > 4096 && this.head * 2 > this.memory.length) {
      this.memory = this.memory.slice(this.head);
      this.head = 0;
    }
    return out;
  }

  /** Puts a failed batch back at the front, in its order. */
  putBack(batch: Array<{ item: T; since: number }>): void {
    this.memory = [...batch, ...this.memory.slice(this.head)];
    this.head = 0;
    this.release(batch);
  }

  /** A batch from `take` was written: it no longer counts against the memory cap. */
  done(batch: ReadonlyArray<{ item: T; since: number }>): void {
    this.release(batch);
  }

  private release(batch: ReadonlyArray<{ item: T; since: number }>): void {
    if (this.outstanding.delete(batch)) this.outstandingItems -= batch.length;
  }

  /** Items held in memory: queued plus taken by a writer and not yet written. Stays ≤ the cap when spilling. */
  get memoryHeld(): number {
    return this.memory.length - this.head + this.outstandingItems;
  }

  get size(): number {
    return this.memory.length - this.head + this.spilled;
  }

  get spilledNow(): number {
    return this.spilled;
  }

  spillBytes(): number {
    const p = this.options.spillPath;
    return p && existsSync(p) ? statSync(p).size : 0;
  }

  oldestSince(): number | null {
    const first = this.memory[this.head];
    return first ? first.since : null;
  }

  /**
   * Moves everything held in memory to the front of the spill file (shutdown with the database down), so
   * the next process reads it back first, in order: batches still out with a writer that never answered
   * (their write may yet commit; writing them again is harmless), then the queue. Without a spill path
   * nothing can be kept: returns false.
   */
  spillAll(now: number): boolean {
    const path = this.options.spillPath;
    if (!path) return false;
    const inMemory = [...[...this.outstanding].flat(), ...this.memory.slice(this.head)];
    this.outstanding.clear();
    this.outstandingItems = 0;
    if (inMemory.length === 0) return true;
    // The offset counts bytes: slice the bytes, not the decoded string (log lines are not all ASCII).
    const unread = this.spilled > 0 && existsSync(path) ? readFileSync(path).subarray(this.spillReadOffset).toString('utf8') : '';
    const head = inMemory.map((e) => JSON.stringify({ since: e.since ?? now, item: e.item })).join('\n') + '\n';
    mkdirSync(dirname(path), { recursive: true });
    // Written beside and renamed over, so a crash now leaves either the old file or the whole new one.
    writeFileSync(`${path}.tmp`, head + unread);
    renameSync(`${path}.tmp`, path);
    this.spilled += inMemory.length;
    this.spilledTotal += inMemory.length;
    this.spillReadOffset = 0;
    this.memory = [];
    this.head = 0;
    return true;
  }

  /** Moves up to one memory-cap's worth of spilled items back into memory, in order. */
  private readBackSpill(): void {
    const path = this.options.spillPath!;
    // Room left under the cap (a batch out with a writer still counts); at least one item, so draining progresses.
    const room = Math.max(1, this.options.memoryCap - this.outstandingItems);
    this.memory = [];
    this.head = 0;
    let consumed = 0;
    let exhausted = false;
    // Read forward from where the last read-back stopped, a chunk at a time (never the whole file again).
    const fd = openSync(path, 'r');
    try {
      const chunk = Buffer.allocUnsafe(1 << 20);
      let carry: Buffer = Buffer.alloc(0);
      let position = this.spillReadOffset;
      reading: for (;;) {
        const n = readSync(fd, chunk, 0, chunk.length, position);
        if (n === 0) {
          // End of file. A line without its newline was torn by a crash mid-append: skip it.
          if (carry.length > 0) this.spillReadOffset += carry.length;
          exhausted = true;
          break;
        }
        position += n;
        const data = carry.length > 0 ? Buffer.concat([carry, chunk.subarray(0, n)]) : chunk.subarray(0, n);
        let start = 0;
        for (;;) {
          const newline = data.indexOf(10, start);
          if (newline === -1) break;
          const line = data.toString('utf8', start, newline);
          this.spillReadOffset += newline - start + 1;
          start = newline + 1;
          if (line.length === 0) continue;
          try {
            this.memory.push(JSON.parse(line) as { item: T; since: number });
          } catch {
            // A damaged line (a crash mid-write): it cannot be recovered; skip it rather than block the queue.
          }
          consumed++;
          if (consumed >= room) break reading;
        }
        carry = Buffer.from(data.subarray(start));
      }
    } finally {
      closeSync(fd);
    }
    this.spilled = exhausted ? 0 : Math.max(0, this.spilled - consumed);
    if (this.spilled === 0) {
      rmSync(path, { force: true });
      this.spillReadOffset = 0;
    }
  }
}
