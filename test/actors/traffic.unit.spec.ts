/**
 * Traffic arithmetic (actors/traffic.ts): deltas from NodePass's absolute counters, resets, the master's
 * second-reset bug (PROTOCOL §6), hour buckets and rates.
 */
import { describe, expect, it } from 'vitest';
import { COUNTER_KEYS, ZERO_COUNTERS, type CounterKey, type Counters } from '../../actors/model.js';
import {
  addCounters,
  addToHourBuckets,
  applySample,
  copyTrack,
  forwardDelta,
  hourOf,
  HOUR_MS,
  isZero,
  keepsHourBucket,
  newCounterTrack,
  putHourBucket,
  ratesOf,
  sampleUnchanged,
  startRun,
  type CounterTrack,
} from '../../actors/traffic.js';
import { intBetween, mulberry32 } from '../support/prng.js';
import { counters } from '../support/instances.js';

const MAX = Number.MAX_SAFE_INTEGER; // 2^53 − 1

/** Applies samples in order and returns the deltas and the final track. */
function run(samples: Counters[], track: CounterTrack = newCounterTrack()) {
  const deltas: Counters[] = [];
  const flags: string[][] = [];
  for (const s of samples) {
    const r = applySample(track, s);
    track = r.track;
    deltas.push(r.delta);
    flags.push(r.flags);
  }
  return { track, deltas, flags };
}

describe('applySample: baseline and plain deltas', () => {
  it('counts nothing for the first sample ever seen (its history is unknown)', () => {
    const r = applySample(newCounterTrack(), counters(655360, 655360, 10240, 10240));
    expect(r.delta).toEqual(ZERO_COUNTERS);
    expect(r.flags).toEqual(['baseline']);
    expect(r.track.last).toEqual(counters(655360, 655360, 10240, 10240));
  });

  it('counts the difference between consecutive samples, per counter', () => {
    const { deltas } = run([counters(100, 200, 10, 20), counters(150, 260, 10, 25), counters(150, 260, 10, 25)]);
    expect(deltas[1]).toEqual({ tcprx: 50, tcptx: 60, udprx: 0, udptx: 5 });
    expect(deltas[2]).toEqual(ZERO_COUNTERS);
  });

  it('keeps only the four counters of a full instance object', () => {
    const r = applySample(newCounterTrack(), { ...counters(1, 2, 3, 4), ping: 9, pool: 3 } as unknown as Counters);
    expect(Object.keys(r.track.last!).sort()).toEqual([...COUNTER_KEYS].sort());
  });

  it('does not mutate the track it is given', () => {
    const track = applySample(newCounterTrack(), counters(10)).track;
    const frozen = JSON.stringify(track);
    applySample(track, counters(20));
    applySample(track, counters(0));
    expect(JSON.stringify(track)).toBe(frozen);
  });
});

describe('applySample: decreases are resets', () => {
  it('takes a decrease as a reset (its all-zero update was lost): the delta of that counter is its new value', () => {
    const { deltas, flags, track } = run([counters(1000, 1000, 50, 50), counters(1200, 300, 60, 50)]);
    expect(deltas[1]!.tcptx).toBe(300);
    expect(flags[1]).toContain('counterDecrease');
    expect(track.resetsInRun).toBe(1);
    // The others count at least their increase and at most their value (all four were reset together, so
    // counting them from 0 is also right; counting more than the value never is).
    const bounds = { tcprx: [200, 1200], udprx: [10, 60], udptx: [0, 50] } as const;
    for (const [k, [lo, hi]] of Object.entries(bounds)) {
      expect(deltas[1]![k as CounterKey]).toBeGreaterThanOrEqual(lo);
      expect(deltas[1]![k as CounterKey]).toBeLessThanOrEqual(hi);
    }
  });

  it('never returns a negative delta', () => {
    const { deltas } = run([counters(5000, 5000, 5000, 5000), counters(1, 0, 4999, 2)]);
    for (const k of COUNTER_KEYS) expect(deltas[1]![k]).toBeGreaterThanOrEqual(0);
  });
});

describe('applySample: the reset action', () => {
  it('takes all four counters at 0 after a non-zero sample as the reset action, counting nothing', () => {
    const { deltas, flags, track } = run([counters(819200, 819200, 12800, 12800), counters(0, 0, 0, 0)]);
    expect(deltas[1]).toEqual(ZERO_COUNTERS);
    expect(flags[1]).toEqual(['reset']);
    expect(track.resetsInRun).toBe(1);
  });

  it('counts up exactly from 0 after the first reset of a run (PROTOCOL §11: 30000 after 30000 bytes)', () => {
    let track = applySample(newCounterTrack(), counters(0, 0, 0, 0)).track;
    track = startRun(track, counters(0, 0, 0, 0));
    const { deltas } = run([counters(819200, 819200, 12800, 12800), counters(0, 0, 0, 0), counters(30000, 30000, 500, 500)], track);
    expect(deltas[2]).toEqual(counters(30000, 30000, 500, 500));
  });

  it('removes the second-reset jump of the s1 recording (0 → 819200 with no traffic counts 0)', () => {
    // Recording s1, client 5cc1f9b2: run started at 0, 819200 → reset → 30000 → reset → 819200 (no traffic).
    let track = applySample(newCounterTrack(), counters(0, 0, 0, 0)).track;
    track = startRun(track, counters(0, 0, 0, 0));
    const { deltas, flags } = run(
      [
        counters(819200, 819200, 12800, 12800),
        counters(0, 0, 0, 0),
        counters(30000, 30000, 500, 500),
        counters(0, 0, 0, 0),
        counters(819200, 819200, 12800, 12800),
        counters(819300, 819200, 12800, 12800),
      ],
      track,
    );
    expect(deltas[4]).toEqual(ZERO_COUNTERS);
    expect(flags[4]).toContain('resetJump');
    expect(flags[4]).not.toContain('jumpUncertain');
    expect(deltas[5]).toEqual(counters(100, 0, 0, 0));
  });

  it('flags the jump as uncertain, and under-counts rather than over-counts, when the run start was not seen', () => {
    // Joined mid-run at 819200 (base unknown, in truth 400000): the offset is taken with base 0.
    const { deltas, flags } = run([
      counters(819200),
      counters(0),
      counters(30000),
      counters(0),
      counters(819200 - 400000 + 7), // true jump O = 819200 − 400000, plus 7 real bytes
    ]);
    expect(flags[4]).toEqual(expect.arrayContaining(['resetJump', 'jumpUncertain']));
    expect(deltas[4]!.tcprx).toBeLessThanOrEqual(7);
    expect(deltas[4]!.tcprx).toBeGreaterThanOrEqual(0);
  });
});

// ───────────────────────── A model of the master's counter arithmetic (PROTOCOL §6) ─────────────────────────

interface MasterCounter {
  /** The instance process's own counter since the process started. */
  v: number;
  /** v at the process's last checkpoint (what the master has seen of it). */
  vAtCheckpoint: number;
  base: number;
  reset: number;
  value: number;
  /** `reset` came from an earlier process and this process has not yet checkpointed. */
  carried: boolean;
}

type Status = 'running' | 'stopped';

/** The master side of one instance, exactly as `internal/master.go` does it (PROTOCOL §6). */
class MasterModel {
  running = true;
  readonly c: Record<CounterKey, MasterCounter>;
  /** A new process's first checkpoint hit `v >= reset` with a carried `reset`: the master lost bytes. */
  underReported = false;

  constructor() {
    const fresh = (): MasterCounter => ({ v: 0, vAtCheckpoint: 0, base: 0, reset: 0, value: 0, carried: false });
    this.c = { tcprx: fresh(), tcptx: fresh(), udprx: fresh(), udptx: fresh() };
  }

  values(): Counters {
    return { tcprx: this.c.tcprx.value, tcptx: this.c.tcptx.value, udprx: this.c.udprx.value, udptx: this.c.udptx.value };
  }

  get resetsPending(): boolean {
    return COUNTER_KEYS.some((k) => this.c[k].reset !== 0);
  }

  traffic(bytes: Counters): void {
    if (!this.running) return;
    for (const k of COUNTER_KEYS) this.c[k].v += bytes[k];
  }

  /** Returns the bytes this checkpoint brought into the reported totals (the true traffic). */
  checkpoint(): Counters {
    const truth = { ...ZERO_COUNTERS };
    for (const k of COUNTER_KEYS) {
      const m = this.c[k];
      if (m.v >= m.reset) {
        if (m.carried && m.reset > 0) this.underReported = true;
        m.value = m.base + m.v - m.reset;
      } else {
        m.value = m.base + m.v;
        m.reset = 0;
      }
      m.carried = false;
      truth[k] = m.v - m.vAtCheckpoint;
      m.vAtCheckpoint = m.v;
    }
    return truth;
  }

  resetAction(): void {
    for (const k of COUNTER_KEYS) {
      const m = this.c[k];
      m.reset = m.value - m.base;
      m.value = 0;
      m.base = 0;
      m.carried = false;
    }
  }

  stop(): void {
    this.running = false;
  }

  start(): void {
    this.running = true;
    for (const k of COUNTER_KEYS) {
      const m = this.c[k];
      m.base = m.value;
      m.v = 0;
      m.vAtCheckpoint = 0;
      m.carried = m.reset !== 0;
    }
  }
}

interface RunTally {
  startObserved: boolean;
  counted: Counters;
  truth: Counters;
  underReported: boolean;
}

/**
 * One random life of an instance. The consumer joins at some point (its first sample is the baseline); it may
 * miss a stop/start pair (a disconnect), in which case it does not know that a new run started.
 */
function simulate(seed: number, steps: number) {
  const random = mulberry32(seed);
  const master = new MasterModel();
  const log: string[] = [];
  let track = newCounterTrack();
  let joined = false;
  let startObserved = false;
  const runs: RunTally[] = [];
  let current: RunTally | null = null;
  const total = { counted: { ...ZERO_COUNTERS }, truth: { ...ZERO_COUNTERS } };
  const negative: string[] = [];

  const newRun = (observed: boolean): void => {
    current = { startObserved: observed, counted: { ...ZERO_COUNTERS }, truth: { ...ZERO_COUNTERS }, underReported: false };
    runs.push(current);
  };

  const deliver = (sample: Counters): void => {
    if (!joined) {
      // Join only when the master holds no reset offset: bytes the master lost or will "pay back" before we
      // joined are unknowable (see the test below for why this precondition is needed).
      if (master.resetsPending || random() < 0.7) return;
      joined = true;
      newRun(false);
      log.push(`join at ${JSON.stringify(sample)}`);
    }
    const r = applySample(track, sample);
    track = r.track;
    for (const k of COUNTER_KEYS) {
      if (r.delta[k] < 0) negative.push(`${k} ${r.delta[k]} at step ${log.length}`);
      current!.counted[k] += r.delta[k];
      total.counted[k] += r.delta[k];
    }
  };

  for (let step = 0; step < steps; step++) {
    const roll = random();
    if (roll < 0.4) {
      const bytes = { ...ZERO_COUNTERS };
      for (const k of COUNTER_KEYS) bytes[k] = random() < 0.25 ? 0 : intBetween(random, 1, 1_000_000);
      master.traffic(bytes);
      log.push(`traffic ${JSON.stringify(bytes)}`);
    } else if (roll < 0.7) {
      if (!master.running) continue;
      const before = master.underReported;
      const truth = master.checkpoint();
      if (joined) {
        for (const k of COUNTER_KEYS) {
          current!.truth[k] += truth[k];
          total.truth[k] += truth[k];
        }
        if (master.underReported && !before) current!.underReported = true;
      }
      log.push(`checkpoint → ${JSON.stringify(master.values())}`);
      deliver(master.values());
    } else if (roll < 0.82) {
      // A reset while the counters already read 0 sends an update identical to the one before it: nobody
      // can see it, and it changes the master's offsets. Its own test is below; the property leaves it out.
      if (isZero(master.values())) continue;
      master.resetAction();
      log.push('reset');
      deliver(master.values());
    } else if (roll < 0.91) {
      if (!master.running) continue;
      master.stop();
      const missed = joined && random() < 0.15; // this stop and the next start happen while we are away
      log.push(missed ? 'stop (missed)' : 'stop');
      if (!missed) deliver(master.values());
      startObserved = !missed;
    } else {
      if (master.running) continue;
      master.underReported = false;
      master.start();
      log.push(startObserved ? 'start' : 'start (missed)');
      if (!joined) continue;
      if (startObserved) {
        track = startRun(track, master.values());
        newRun(true);
        deliver(master.values());
      } else {
        newRun(false);
      }
    }
  }
  return { runs, total, negative, log };
}

describe('applySample + startRun against a model of the master (PROTOCOL §6)', () => {
  const SEEDS = 400;
  const STEPS = 250;

  it('counts exactly the true traffic in every run whose start was observed, never more otherwise, never negative', () => {
    const failures: string[] = [];
    let exactRuns = 0;
    let runsWithSecondReset = 0;
    for (let seed = 1; seed <= SEEDS; seed++) {
      const { runs, total, negative, log } = simulate(seed, STEPS);
      const where = () => `seed ${seed}: ${log.slice(-12).join(' | ')}`;
      if (negative.length > 0) failures.push(`negative delta, ${negative[0]} (${where()})`);
      for (const k of COUNTER_KEYS) {
        if (total.counted[k] > total.truth[k]) failures.push(`total ${k} ${total.counted[k]} > truth ${total.truth[k]} (${where()})`);
      }
      runs.forEach((r, i) => {
        for (const k of COUNTER_KEYS) {
          if (r.startObserved && !r.underReported) {
            if (r.counted[k] !== r.truth[k]) failures.push(`run ${i} ${k}: counted ${r.counted[k]} ≠ truth ${r.truth[k]} (${where()})`);
          } else if (r.counted[k] > r.truth[k]) {
            failures.push(`run ${i} (start unobserved) ${k}: counted ${r.counted[k]} > truth ${r.truth[k]} (${where()})`);
          }
        }
        if (r.startObserved && !r.underReported) exactRuns++;
      });
      if (log.filter((l) => l === 'reset').length >= 2) runsWithSecondReset++;
    }
    expect(failures.slice(0, 5)).toEqual([]);
    // The generator really exercised the interesting paths.
    expect(exactRuns).toBeGreaterThan(SEEDS);
    expect(runsWithSecondReset).toBeGreaterThan(SEEDS / 2);
  });

  it('replays the second-reset jump exactly when several resets follow each other within one run', () => {
    // Deterministic: start at base 5000, traffic, then four resets each followed by traffic and a checkpoint.
    const master = new MasterModel();
    master.traffic(counters(5000, 5000, 5000, 5000));
    master.checkpoint();
    let track = applySample(newCounterTrack(), master.values()).track;
    master.stop();
    track = applySample(track, master.values()).track;
    master.start();
    track = startRun(track, master.values());
    track = applySample(track, master.values()).track;
    let counted = 0;
    let truth = 0;
    for (let i = 1; i <= 5; i++) {
      master.traffic(counters(1000 * i, 1000 * i, 0, 0));
      truth += master.checkpoint().tcprx;
      let r = applySample(track, master.values());
      counted += r.delta.tcprx;
      master.resetAction();
      r = applySample(r.track, master.values());
      counted += r.delta.tcprx;
      track = r.track;
      truth += master.checkpoint().tcprx; // no traffic: the buggy jump shows up here
      r = applySample(track, master.values());
      counted += r.delta.tcprx;
      track = r.track;
      expect(counted).toBe(truth);
    }
    expect(track.resetsInRun).toBe(5);
  });
});

describe('a second reset before the next checkpoint (double-clicked reset)', () => {
  /**
   * The master's arithmetic for: run starting at 0, 100 bytes, checkpoint, reset, reset again before any
   * checkpoint, checkpoint with no traffic. The second reset stores reset := value − base = 0, so the next
   * checkpoint reports the process's whole counter (100) although nothing moved. Both reset updates read 0,
   * so applySample sees 100, 0, 0, 100: the second reset is invisible and the jump counts as 100 bytes.
   */
  function doubleReset() {
    const master = new MasterModel();
    master.stop();
    master.start();
    let track = startRun(applySample(newCounterTrack(), master.values()).track, master.values());
    let counted = 0;
    let truth = 0;
    const step = () => {
      const r = applySample(track, master.values());
      track = r.track;
      counted += r.delta.tcprx;
      return r;
    };
    master.traffic(counters(100));
    truth += master.checkpoint().tcprx;
    step();
    master.resetAction();
    step();
    master.resetAction();
    step();
    truth += master.checkpoint().tcprx;
    const jump = step();
    return { counted, truth, jump, reported: master.values().tcprx };
  }

  it('is what the master does: the next checkpoint jumps up with no traffic (PROTOCOL §6 arithmetic)', () => {
    const { truth, reported } = doubleReset();
    expect(truth).toBe(100);
    expect(reported).toBe(100);
  });

  // Known limitation (see actors/traffic.ts): two all-zero samples in a row are indistinguishable from a
  // reset followed by a quiet checkpoint, so this jump is counted. Marked `fails` so a fix turns it red.
  it.fails('does not count the jump as traffic (never more than the true traffic)', () => {
    // KNOWN BUG (see report): counted is 200, the jump of 100 is counted as traffic.
    const { counted, truth } = doubleReset();
    expect(counted).toBeLessThanOrEqual(truth);
  });
});

describe('values near 2^53', () => {
  it('computes exact deltas just below Number.MAX_SAFE_INTEGER', () => {
    const { deltas } = run([counters(MAX - 1000, MAX - 1, 0, 0), counters(MAX - 1, MAX, 1, 0)]);
    expect(deltas[1]).toEqual({ tcprx: 999, tcptx: 1, udprx: 1, udptx: 0 });
  });

  it('takes a drop from near 2^53 to a small value as a reset, counting the small value', () => {
    const { deltas } = run([counters(MAX, MAX, MAX, MAX), counters(5, 0, 0, 7)]);
    expect(deltas[1]).toEqual({ tcprx: 5, tcptx: 0, udprx: 0, udptx: 7 });
  });

  it('handles the reset action and a buggy jump at that scale without losing precision', () => {
    const big = MAX - 10_000;
    let track = applySample(newCounterTrack(), counters(0)).track;
    track = startRun(track, counters(0));
    const { deltas } = run([counters(big), counters(0), counters(3000), counters(0), counters(big + 5)], track);
    expect(deltas.map((d) => d.tcprx)).toEqual([big, 0, 3000, 0, 5]);
  });
});

describe('hour buckets', () => {
  const t = Date.parse('2026-11-26T09:15:51.159Z');

  it('hourOf gives the start of the UTC hour', () => {
    expect(hourOf(t)).toBe(Date.parse('2026-11-26T09:00:00.000Z'));
    expect(hourOf(Date.parse('2026-11-26T09:00:00.000Z'))).toBe(Date.parse('2026-11-26T09:00:00.000Z'));
    expect(hourOf(Date.parse('2026-11-26T09:59:59.999Z'))).toBe(Date.parse('2026-11-26T09:00:00.000Z'));
    expect(hourOf(0)).toBe(0);
  });

  it('adds deltas into the bucket of their hour, and a new bucket for a new hour', () => {
    let b = addToHourBuckets({}, t, counters(100, 200, 1, 2));
    b = addToHourBuckets(b, t + 60_000, counters(10, 20, 0, 0));
    b = addToHourBuckets(b, t + HOUR_MS, counters(5));
    expect(b).toEqual({
      [String(hourOf(t))]: counters(110, 220, 1, 2),
      [String(hourOf(t) + HOUR_MS)]: counters(5, 5, 0, 0),
    });
  });

  it('returns the same object for a zero delta and never mutates its input', () => {
    const b = addToHourBuckets({}, t, counters(1));
    expect(addToHourBuckets(b, t, ZERO_COUNTERS)).toBe(b);
    const frozen = JSON.stringify(b);
    addToHourBuckets(b, t, counters(7));
    addToHourBuckets(b, t + 5 * HOUR_MS, counters(7));
    expect(JSON.stringify(b)).toBe(frozen);
  });

  it('keeps only the newest N buckets (numerically, not as strings)', () => {
    let b: Record<string, Counters> = {};
    // Hours chosen so that string order and numeric order differ (9… < 10… numerically, not as text).
    const hours = [9 * HOUR_MS, 10 * HOUR_MS, 11 * HOUR_MS, 12 * HOUR_MS, 100 * HOUR_MS];
    for (const h of hours) b = addToHourBuckets(b, h + 1, counters(1), 3);
    expect(Object.keys(b).map(Number).sort((x, y) => x - y)).toEqual([11 * HOUR_MS, 12 * HOUR_MS, 100 * HOUR_MS]);
    b = addToHourBuckets(b, 101 * HOUR_MS, counters(1), 2);
    expect(Object.keys(b).map(Number).sort((x, y) => x - y)).toEqual([100 * HOUR_MS, 101 * HOUR_MS]);
  });

  it('drops a late delta for an hour older than the kept ones rather than evicting a newer bucket', () => {
    let b: Record<string, Counters> = {};
    for (const h of [10, 11, 12]) b = addToHourBuckets(b, h * HOUR_MS, counters(1), 3);
    b = addToHourBuckets(b, 2 * HOUR_MS, counters(50), 3);
    expect(Object.keys(b).map(Number).sort((x, y) => x - y)).toEqual([10 * HOUR_MS, 11 * HOUR_MS, 12 * HOUR_MS]);
  });
});

describe('hour buckets in place (a tunnel keeps its own record)', () => {
  it('putHourBucket leaves a record equal to what addToHourBuckets returns, and keepsHourBucket says whether the bucket stays', () => {
    const rand = mulberry32(11);
    for (let i = 0; i < 2000; i++) {
      const keep = intBetween(rand, 1, 4);
      // 0–5 held hours out of a small range, so that new hours fall before, between and after them.
      const held: Record<string, Counters> = {};
      for (let k = intBetween(rand, 0, 5); k > 0; k--) held[String(intBetween(rand, 0, 8) * HOUR_MS)] = counters(intBetween(rand, 1, 9));
      const at = intBetween(rand, 0, 8) * HOUR_MS + intBetween(rand, 0, HOUR_MS - 1);
      const delta = counters(intBetween(rand, 1, 100));
      const key = String(hourOf(at));
      const expected = addToHourBuckets(held, at, delta, keep);
      const own = { ...held };
      const kept = keepsHourBucket(own, key, keep);
      putHourBucket(own, key, addCounters(held[key] ?? ZERO_COUNTERS, delta), keep);
      expect(own, `case ${i}`).toEqual(expected);
      expect(kept, `case ${i}`).toBe(key in expected);
    }
  });
});

describe('sampleUnchanged (the no-op fast path callers test first)', () => {
  const base = { ...newCounterTrack(), last: counters(100, 200, 3, 4) };

  it('is true for the same four counters as the last accepted sample, extra fields aside', () => {
    expect(sampleUnchanged(base, counters(100, 200, 3, 4))).toBe(true);
    expect(sampleUnchanged(base, { ...counters(100, 200, 3, 4), ping: 7 } as Counters)).toBe(true);
  });

  it('is false before the baseline, when any counter differs, and while an overstatement is still to be removed', () => {
    expect(sampleUnchanged(newCounterTrack(), counters(0, 0, 0, 0))).toBe(false);
    for (const k of COUNTER_KEYS) expect(sampleUnchanged(base, { ...counters(100, 200, 3, 4), [k]: 0 }), k).toBe(false);
    // Same counters, but a pending offset: applySample must see it (rule 3), so it is not a no-op.
    expect(sampleUnchanged({ ...base, pendingOffset: counters(5) }, counters(100, 200, 3, 4))).toBe(false);
  });
});

describe('forwardDelta (the in-place fast path of a sample that moves the counters forward)', () => {
  it('is exactly applySample whenever it answers: same delta, no flag, a track that differs only by its last sample', () => {
    const random = mulberry32(2026);
    let answered = 0;
    let declined = 0;
    for (let n = 0; n < 20_000; n++) {
      const value = () => (random() < 0.2 ? 0 : intBetween(random, 0, 1_000_000));
      const last = random() < 0.1 ? null : counters(value(), value(), value(), value());
      const track: CounterTrack = {
        ...newCounterTrack(),
        last,
        resetsInRun: intBetween(random, 0, 3),
        pendingOffset: random() < 0.2 ? counters(value(), 0, value(), 0) : null,
        runBase: random() < 0.5 ? counters(value()) : null,
      };
      // Mostly forward moves; now and then a counter down, all zero, or unchanged.
      const move = () => (random() < 0.1 ? -intBetween(random, 1, 500) : random() < 0.3 ? 0 : intBetween(random, 1, 5_000));
      const sample = random() < 0.05 ? counters(0, 0, 0, 0) : last ? counters(Math.max(0, last.tcprx + move()), Math.max(0, last.tcptx + move()), Math.max(0, last.udprx + move()), Math.max(0, last.udptx + move())) : counters(value());
      const before = structuredClone(track);
      const fast = forwardDelta(track, sample);
      const full = applySample(track, sample);
      expect(track).toEqual(before); // neither mutates the track
      if (fast === null) {
        declined++;
        const decreased = last !== null && COUNTER_KEYS.some((k) => sample[k] < last[k]);
        expect(last === null || track.pendingOffset !== null || decreased).toBe(true);
        continue;
      }
      answered++;
      expect(fast).toEqual(full.delta);
      expect(full.flags).toEqual([]);
      expect(full.track).toEqual({ ...track, last: { tcprx: sample.tcprx, tcptx: sample.tcptx, udprx: sample.udprx, udptx: sample.udptx } });
    }
    expect(answered).toBeGreaterThan(5_000);
    expect(declined).toBeGreaterThan(2_000);
  });

  it('copyTrack copies the last sample and keeps the key order (the resume JSON is stored as text)', () => {
    const track = { ...newCounterTrack(), last: counters(1, 2, 3, 4), runBase: counters(1) };
    const copy = copyTrack(track);
    expect(copy).toEqual(track);
    expect(copy.last).not.toBe(track.last);
    expect(JSON.stringify(copy)).toBe(JSON.stringify(track));
    track.last.tcprx = 99;
    expect(copy.last!.tcprx).toBe(1);
    expect(copyTrack(newCounterTrack())).toEqual(newCounterTrack());
  });
});

describe('ratesOf', () => {
  it('gives bytes per second over the span, rounded', () => {
    expect(ratesOf(counters(655360, 655360, 10240, 0), 5000)).toEqual({ tcprx: 131072, tcptx: 131072, udprx: 2048, udptx: 0 });
    expect(ratesOf(counters(1, 2, 3, 0), 3000)).toEqual({ tcprx: 0, tcptx: 1, udprx: 1, udptx: 0 });
  });

  it('gives zero rates for an empty or negative span instead of Infinity or NaN', () => {
    expect(ratesOf(counters(100), 0)).toEqual(ZERO_COUNTERS);
    expect(ratesOf(counters(100), -5)).toEqual(ZERO_COUNTERS);
  });
});
