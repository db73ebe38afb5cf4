/**
 * Traffic arithmetic: turning NodePass's absolute, cumulative counters into deltas that are never negative
 * and never counted twice, and into hour buckets. Plain functions over plain JSON, tested on their own
 * (test/actors/traffic.unit.spec.ts); the tunnel machine only calls them.
 *
 * The rules (PROTOCOL §6):
 * 1. The first sample ever seen for a tunnel is a baseline: it counts nothing (its history is unknown).
 *    Later samples, across reconnects too, count against the last accepted sample, so traffic during a
 *    disconnected gap arrives once, as one larger delta.
 * 2. A counter that goes down was reset: its delta is its new value (it counted up from 0 since the reset).
 * 3. The `reset` action shows up as one sample with all four counters at 0 after a sample with any above 0.
 *    NodePass's master has a bug (§6): the second and later resets within one process run store the wrong
 *    offset, so the first sample after such a reset jumps up by a constant overstatement O. Modelling the
 *    master exactly (value = base + v − reset, with reset := value − base on each reset action):
 *      - after the 1st reset of a run, reported values are exact;
 *      - after the 2nd reset, O = P₁ − base, where P₁ is the value just before the 1st reset and base the
 *        value when the process run started (the master sets base := value on every start);
 *      - after the n-th reset (n ≥ 3), O = Pₙ₋₁, the value just before the previous reset (base is 0 by then).
 *    So for the first non-zero sample after a 2nd-or-later reset we count `max(0, value − O)` and flag a
 *    jump; later samples differ from the truth by the same constant O, so consecutive differences are exact.
 *    When the run's start was not observed, base is taken as 0: O is then an upper bound and the jump
 *    sample under-counts rather than over-counts (flagged as `jumpUncertain`).
 *    Known limit: a second reset clicked before any checkpoint is invisible (two all-zero samples look the
 *    same as a reset followed by a quiet checkpoint), so its jump is counted as traffic.
 * 4. A new process run starts when the status leaves `stopped` (to `running`, or to `error` when the start
 *    failed or its `update(running)` was lost — only a start leaves `stopped`); the run's base is the counters
 *    at that moment and its reset count starts at 0.
 * 2b. A decrease that is not the all-zero reset sample (the reset's update was lost) is booked as a reset
 *    of the run as well, so rule 3 still recognises a later jump.
 */
import { COUNTER_KEYS, ZERO_COUNTERS, type Counters } from './model.js';

export const HOUR_MS = 3_600_000;

/** Reset bookkeeping for one tunnel. Plain JSON; persisted with the tunnel state so a restart resumes it. */
export interface CounterTrack {
  /** Last accepted absolute counters, or null before the first sample (the baseline). */
  last: Counters | null;
  /** Counters when the current process run started, if that start was observed. */
  runBase: Counters | null;
  /** Resets observed in the current process run. */
  resetsInRun: number;
  /** Absolute counters just before the previous reset in this run (Pₙ₋₁), if any. */
  beforePreviousReset: Counters | null;
  /** Overstatement still to subtract from the first non-zero sample of each counter, after a 2nd+ reset. */
  pendingOffset: Counters | null;
  /** Whether pendingOffset rests on an unobserved run start (base assumed 0). */
  offsetUncertain: boolean;
}

export const newCounterTrack = (): CounterTrack => ({
  last: null,
  runBase: null,
  resetsInRun: 0,
  beforePreviousReset: null,
  pendingOffset: null,
  offsetUncertain: false,
});

export type SampleFlag = 'baseline' | 'reset' | 'counterDecrease' | 'resetJump' | 'jumpUncertain';

export interface SampleResult {
  track: CounterTrack;
  delta: Counters;
  flags: SampleFlag[];
}

/** Shared by every ordinary sample (callers read flags, never push to them). */
const NO_FLAGS: SampleFlag[] = Object.freeze([]) as unknown as SampleFlag[];
/** The delta of a sample that moved nothing (shared, frozen: consumers only read deltas). */
const NO_DELTA: Counters = Object.freeze({ tcprx: 0, tcptx: 0, udprx: 0, udptx: 0 });

const allZero = (c: Counters): boolean => c.tcprx === 0 && c.tcptx === 0 && c.udprx === 0 && c.udptx === 0;

export const pickCounters = (c: Counters): Counters => ({ tcprx: c.tcprx, tcptx: c.tcptx, udprx: c.udprx, udptx: c.udptx });

export function addCounters(a: Counters, b: Counters): Counters {
  return { tcprx: a.tcprx + b.tcprx, tcptx: a.tcptx + b.tcptx, udprx: a.udprx + b.udprx, udptx: a.udptx + b.udptx };
}

export const isZero = allZero;

/**
 * Adds `delta` into `target`, in place. For values one tunnel owns (its traffic total, its hour buckets), which are
 * updated on every counter move: a new object per event kept until the tunnel's next event was most of what the
 * young generation copied and promoted at 20,000 events/s (docs/performance.md, Session 5).
 */
export function addCountersInto(target: Counters, delta: Counters): void {
  target.tcprx += delta.tcprx;
  target.tcptx += delta.tcptx;
  target.udprx += delta.udprx;
  target.udptx += delta.udptx;
}

/** Marks the start of a new process run (status stopped → running) at the given counters. */
export function startRun(track: CounterTrack, counters: Counters): CounterTrack {
  return {
    ...track,
    runBase: pickCounters(counters),
    resetsInRun: 0,
    beforePreviousReset: null,
    pendingOffset: null,
    offsetUncertain: false,
  };
}

/**
 * Whether a sample changes nothing: the same counters as the last accepted sample and no offset pending. Such a
 * sample (every log line, every gauge-only update) leaves the track as it is with a zero delta and no flag, which
 * is what `applySample` returns for it; callers on the hot path test this first and skip the call.
 */
export function sampleUnchanged(track: CounterTrack, sample: Counters): boolean {
  const last = track.last;
  return (
    last !== null &&
    track.pendingOffset === null &&
    sample.tcprx === last.tcprx &&
    sample.tcptx === last.tcptx &&
    sample.udprx === last.udprx &&
    sample.udptx === last.udptx
  );
}

/**
 * The delta of the common sample — counters moving forward from the last one, no reset pending or seen — without
 * building anything but the delta: what `applySample` computes for it, whose new track differs only by its last
 * sample. Null when the sample needs `applySample` (a baseline, a reset, a decrease, a pending offset). The tunnel
 * then writes the sample into its own `track.last` in place (tunnel.machine.ts `commitObservation`).
 */
export function forwardDelta(track: CounterTrack, sample: Counters): Counters | null {
  const last = track.last;
  if (last === null || track.pendingOffset !== null) return null;
  // A decrease (the all-zero reset sample included) is a reset: `applySample`'s.
  if (sample.tcprx < last.tcprx || sample.tcptx < last.tcptx || sample.udprx < last.udprx || sample.udptx < last.udptx) return null;
  return {
    tcprx: sample.tcprx - last.tcprx,
    tcptx: sample.tcptx - last.tcptx,
    udprx: sample.udprx - last.udprx,
    udptx: sample.udptx - last.udptx,
  };
}

/** A copy of a track and of its last sample (its other values are replaced, never mutated): what a record keeps. */
export function copyTrack(track: CounterTrack): CounterTrack {
  return { ...track, last: track.last === null ? null : pickCounters(track.last) };
}

/**
 * A copy of `track` with a new last sample. Written out rather than spread: the object then holds its six fields
 * itself (a spread copy keeps most of them in a separate property array, ~50 bytes more on every idle tunnel).
 */
function withLast(track: CounterTrack, last: Counters, pendingOffset: Counters | null = track.pendingOffset): CounterTrack {
  return {
    last,
    runBase: track.runBase,
    resetsInRun: track.resetsInRun,
    beforePreviousReset: track.beforePreviousReset,
    pendingOffset,
    offsetUncertain: track.offsetUncertain,
  };
}

/** Applies one absolute sample. Never returns a negative delta. */
export function applySample(track: CounterTrack, sample: Counters): SampleResult {
  // Nothing moved: the track stays as it is, no copy.
  if (sampleUnchanged(track, sample)) return { track, delta: NO_DELTA, flags: NO_FLAGS };
  const last = track.last;
  const value = pickCounters(sample);
  if (last === null) {
    return { track: withLast(track, value), delta: { ...ZERO_COUNTERS }, flags: ['baseline'] };
  }

  if (allZero(value) && !allZero(last)) {
    // The `reset` action (rule 3). Everything before it was already counted.
    const reset = registerReset(track, last);
    return { track: withLast(reset, value), delta: { ...ZERO_COUNTERS }, flags: ['reset'] };
  }

  // A counter that went down was reset (rule 2) even if the all-zero update of the reset was lost: it is a
  // reset of the run too, so a later reset's jump is recognised. If it is the run's second or later reset,
  // this very sample may carry the jump.
  const decreased = value.tcprx < last.tcprx || value.tcptx < last.tcptx || value.udprx < last.udprx || value.udptx < last.udptx;
  if (!decreased && track.pendingOffset === null) {
    // The common case (every sample while traffic flows): plain differences, written out for speed.
    const delta: Counters = {
      tcprx: value.tcprx - last.tcprx,
      tcptx: value.tcptx - last.tcptx,
      udprx: value.udprx - last.udprx,
      udptx: value.udptx - last.udptx,
    };
    return { track: withLast(track, value), delta, flags: NO_FLAGS };
  }
  let current = track;
  if (decreased) current = registerReset(track, last);

  const delta = { ...ZERO_COUNTERS };
  const flags: SampleFlag[] = decreased ? ['counterDecrease'] : [];
  let pendingOffset = current.pendingOffset;
  for (const k of COUNTER_KEYS) {
    const now = value[k];
    const before = now < last[k] ? 0 : last[k]; // a counter that went down counts up from 0 since its reset
    const offset = pendingOffset ? pendingOffset[k] : 0;
    if (offset > 0 && now > 0) {
      // First sample of this counter after a buggy reset: remove the overstatement once (rule 3).
      delta[k] = Math.max(0, now - before - offset);
      if (!flags.includes('resetJump')) flags.push('resetJump');
      if (current.offsetUncertain && !flags.includes('jumpUncertain')) flags.push('jumpUncertain');
      pendingOffset = { ...pendingOffset!, [k]: 0 };
    } else {
      delta[k] = Math.max(0, now - before);
    }
  }
  if (pendingOffset && allZero(pendingOffset)) pendingOffset = null;
  return { track: withLast(current, value, pendingOffset), delta, flags };
}

/** Books a reset into the run: the run's reset count, and the overstatement the master will add after it. */
function registerReset(track: CounterTrack, valueBefore: Counters): CounterTrack {
  const resetsInRun = track.resetsInRun + 1;
  let pendingOffset: Counters | null = null;
  let offsetUncertain = false;
  if (resetsInRun >= 2 && track.beforePreviousReset) {
    const previous = track.beforePreviousReset;
    const base = resetsInRun === 2 ? track.runBase : ZERO_COUNTERS;
    offsetUncertain = resetsInRun === 2 && track.runBase === null;
    pendingOffset = { ...ZERO_COUNTERS };
    for (const k of COUNTER_KEYS) pendingOffset[k] = Math.max(0, previous[k] - (base ? base[k] : 0));
  }
  return { ...track, resetsInRun, beforePreviousReset: pickCounters(valueBefore), pendingOffset, offsetUncertain };
}

/** Start of the UTC hour that contains `ms`. */
export const hourOf = (ms: number): number => Math.floor(ms / HOUR_MS) * HOUR_MS;

// The bucket key of the current hour, kept: formatting a 13-digit number on every event is measurable.
let lastHour = NaN;
let lastHourKey = '';

/** The hour-bucket key (start of the UTC hour, epoch ms, as a string) of `ms`. */
export function hourKeyOf(ms: number): string {
  const hour = hourOf(ms);
  if (hour !== lastHour) {
    lastHour = hour;
    lastHourKey = String(hour);
  }
  return lastHourKey;
}

/** How many hour buckets a tunnel keeps in memory (older ones were checkpointed long before). */
export const HOUR_BUCKETS_KEPT = 3;

/**
 * Adds a delta to the hour bucket of `at`, keeping at most `keepHours` buckets (the oldest are dropped:
 * the state flusher has checkpointed them long before, as every change is queued with its bucket values).
 * Returns a new record and never mutates its input; `putHourBucket` is the in-place step it is made of.
 */
export function addToHourBuckets(
  buckets: Record<string, Counters>,
  at: number,
  delta: Counters,
  keepHours = HOUR_BUCKETS_KEPT,
): Record<string, Counters> {
  if (allZero(delta)) return buckets;
  const key = hourKeyOf(at);
  const next: Record<string, Counters> = { ...buckets };
  putHourBucket(next, key, addCounters(buckets[key] ?? ZERO_COUNTERS, delta), keepHours);
  return next;
}

/**
 * Sets the bucket `key` of a record its caller owns, in place, then drops the oldest buckets beyond `keepHours`
 * (the new one too, when its hour is older than every one kept). A tunnel's own record is changed this way instead
 * of being copied on every counter move.
 */
export function putHourBucket(buckets: Record<string, Counters>, key: string, bucket: Counters, keepHours = HOUR_BUCKETS_KEPT): void {
  const held = buckets[key] !== undefined;
  buckets[key] = bucket;
  // The common case, the current hour's bucket already held and no more buckets than kept: none to drop.
  if (held && countAtMost(buckets, keepHours)) return;
  const keys = Object.keys(buckets);
  if (keys.length > keepHours) {
    keys.sort((a, b) => Number(a) - Number(b));
    for (const old of keys.slice(0, keys.length - keepHours)) delete buckets[old];
  }
}

/**
 * Whether `putHourBucket(buckets, key, …, keepHours)` would keep the bucket `key` (without doing it): held or not,
 * it survives unless it is among the oldest that exceed the number kept.
 */
export function keepsHourBucket(buckets: Record<string, Counters>, key: string, keepHours = HOUR_BUCKETS_KEPT): boolean {
  let count = buckets[key] === undefined ? 1 : 0;
  for (const _ in buckets) count++;
  // The common case, nothing to drop: no key is converted to a number.
  if (count <= keepHours) return true;
  const hour = Number(key);
  let older = 0;
  for (const k in buckets) if (Number(k) < hour) older++;
  // The sort drops the `count - keepHours` numerically smallest keys.
  return older >= count - keepHours;
}

/** Whether `record` has at most `max` keys (without building the key list). */
function countAtMost(record: Record<string, unknown>, max: number): boolean {
  let n = 0;
  for (const _ in record) if (++n > max) return false;
  return true;
}

/** Bytes per second between two samples, for the "current rate" of a tunnel. */
export function ratesOf(delta: Counters, spanMs: number): Counters {
  if (spanMs <= 0) return { ...ZERO_COUNTERS };
  const rates = { ...ZERO_COUNTERS };
  writeRates(rates, delta, spanMs);
  return rates;
}

/** `ratesOf` written into `target` (a tunnel's own rates), in place; `spanMs` > 0. */
export function writeRates(target: Counters, delta: Counters, spanMs: number): void {
  target.tcprx = Math.round((delta.tcprx * 1000) / spanMs);
  target.tcptx = Math.round((delta.tcptx * 1000) / spanMs);
  target.udprx = Math.round((delta.udprx * 1000) / spanMs);
  target.udptx = Math.round((delta.udptx * 1000) / spanMs);
}
