/**
 * A simulated clock for XState's `clock` option that advances in steps and fires every timer at its own
 * due time, in due order. (xstate's `SimulatedClock.set(t)` fires all due timers at once with the clock
 * already at `t`, so a chain such as backoff → reconnect → snapshot-quiet would run at the wrong times.)
 * Timers with an infinite delay never fire, which is how replay switches liveness probes off.
 */
interface Timer {
  id: number;
  due: number;
  fn: () => void;
}

export class SteppedClock {
  private current: number;
  private nextId = 1;
  private readonly timers = new Map<number, Timer>();

  constructor(start = 0) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimeout(fn: (...args: unknown[]) => void, timeout: number): number {
    const id = this.nextId++;
    if (Number.isFinite(timeout)) this.timers.set(id, { id, due: this.current + Math.max(0, timeout), fn });
    return id;
  }

  clearTimeout(id: unknown): void {
    this.timers.delete(id as number);
  }

  /** Moves the clock forward to `time` (never backward), firing each due timer at its due time. */
  advanceTo(time: number): void {
    for (;;) {
      let next: Timer | undefined;
      for (const t of this.timers.values()) {
        if (t.due <= time && (!next || t.due < next.due || (t.due === next.due && t.id < next.id))) next = t;
      }
      if (!next) break;
      this.timers.delete(next.id);
      if (next.due > this.current) this.current = next.due;
      next.fn();
    }
    if (time > this.current) this.current = time;
  }

  /** Number of pending timers (for tests). */
  get pending(): number {
    return this.timers.size;
  }
}
