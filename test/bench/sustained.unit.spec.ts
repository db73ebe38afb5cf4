/**
 * The throughput target's answer from the ladder (bench.ts): which rates each pipeline held, where it fell behind,
 * what that proves about the ratio, and the extra TunnelPulse step offered to answer "0.7 × the reference?".
 * Hand-made step results; the figures are the arithmetic's expected outcomes, worked out in the comments.
 */
import { describe, expect, it } from 'vitest';
import { adaptiveRate, bestHeldRun, sustainedThroughput, throughputVerdict, type RunResult } from '../../src/bench/bench.js';

const run = (pipeline: RunResult['pipeline'], offeredRate: number, produced: number, held: boolean): RunResult =>
  ({ pipeline, offeredRate, produced, held, step: 'ladder' }) as RunResult;

describe('the best held step', () => {
  it('is the held step that produced the most, not the highest offer held', () => {
    // As in the 19:49 ladder of Session 5: the 0.7× step (60,500 offered) held with less than the 60,000 step.
    const runs = [run('tunnelpulse', 50_000, 48_817, true), run('tunnelpulse', 60_000, 56_450, true), run('tunnelpulse', 80_000, 67_204, false), { ...run('tunnelpulse', 60_500, 53_468, true), step: 'adaptive' as const }];
    expect(bestHeldRun(runs)).toMatchObject({ offeredRate: 60_000, produced: 56_450 });
    // Equal production: the higher offer.
    expect(bestHeldRun([run('reference', 100_000, 84_000, true), run('reference', 120_000, 84_000, true)])).toMatchObject({ offeredRate: 120_000 });
    expect(bestHeldRun([run('reference', 5_000, 4_000, false)])).toBeUndefined();
  });
});

describe('sustained throughput from the ladder', () => {
  it('both fell behind: the capacity ratio is bracketed', () => {
    const runs = [
      run('reference', 5_000, 5_000, true),
      run('tunnelpulse', 5_000, 4_900, true),
      run('reference', 14_000, 14_000, true),
      run('tunnelpulse', 14_000, 12_000, false),
      run('reference', 20_000, 18_000, false),
    ];
    const s = sustainedThroughput(runs, false, null);
    expect(s.tunnelpulse).toEqual({ held: { offered: 5_000, produced: 4_900 }, failedAt: { offered: 14_000, produced: 12_000 }, limit: 'fell-behind' });
    expect(s.reference).toEqual({ held: { offered: 14_000, produced: 14_000 }, failedAt: { offered: 20_000, produced: 18_000 }, limit: 'fell-behind' });
    expect(s.kind).toBe('bracketed');
    expect(s.heldRatio).toBe(0.35); // 4,900 / 14,000
    // TunnelPulse sustains [4,900, 12,000), the reference [14,000, 18,000): ratio in (4,900/18,000, 12,000/14,000).
    expect(s.capacityRatio).toEqual({ low: 0.27, high: 0.86 });
    expect(s.needed).toBe(9_800);
  });

  it('the reference never fell behind: the held ratio is an upper bound, and the reason is named', () => {
    const runs = [run('reference', 5_000, 5_000, true), run('tunnelpulse', 5_000, 5_000, true), run('reference', 20_000, 19_000, true), run('tunnelpulse', 20_000, 15_000, false)];
    const bySimulators = sustainedThroughput(runs, true, null);
    expect(bySimulators.kind).toBe('upper-bound');
    expect(bySimulators.reference.limit).toBe('simulators');
    expect(bySimulators.capacityRatio).toEqual({ low: null, high: 0.79 }); // 15,000 / 19,000
    expect(bySimulators.explanation).toContain('the simulators could not produce more');
    expect(sustainedThroughput(runs, false, null).reference.limit).toBe('ladder-top');
  });

  it('TunnelPulse never fell behind: a lower bound; no rate held by the reference: undetermined', () => {
    const lower = sustainedThroughput([run('reference', 5_000, 5_000, true), run('tunnelpulse', 5_000, 5_000, true), run('reference', 10_000, 9_000, false), run('tunnelpulse', 10_000, 10_000, true)], false, null);
    expect(lower.kind).toBe('lower-bound');
    expect(lower.capacityRatio).toEqual({ low: 1.11, high: null }); // 10,000 / 9,000
    const none = sustainedThroughput([run('reference', 5_000, 5_000, false), run('tunnelpulse', 5_000, 5_000, true)], false, null);
    expect(none.kind).toBe('undetermined');
    expect(none.heldRatio).toBeNull();
    expect(none.needed).toBeNull();
  });

  it('the simulators fell short at the held step that was to answer: the target is left undecided, and said why', () => {
    // A loaded machine: reference held 5,000 (4,775 produced); needed 3,343; TunnelPulse held 3,600 offered, but the
    // simulators produced 3,230 (under 90 %). TunnelPulse fell behind only above (5,000).
    const runs = [run('reference', 5_000, 4_775, true), run('tunnelpulse', 5_000, 4_638, false), run('reference', 14_000, 11_942, false), { ...run('tunnelpulse', 3_600, 3_230, true), step: 'adaptive' as const, simulatorsShort: true }];
    const s = sustainedThroughput(runs, false, 3_600);
    expect(s.heldRatio).toBe(0.68);
    expect(s.undecidedBecauseSimulatorsShort).toBe(true);
    expect(s.explanation).toContain('not decided');
    // The same figures with the simulators at the offer: decided (no).
    expect(sustainedThroughput([...runs.slice(0, 3), run('tunnelpulse', 3_600, 3_230, true)], false, 3_600).undecidedBecauseSimulatorsShort).toBe(false);
  });

  it('TunnelPulse held nothing while the reference held: the ratio is 0, not unknown', () => {
    const s = sustainedThroughput([run('reference', 5_000, 5_000, true), run('tunnelpulse', 5_000, 4_000, false)], false, null);
    expect(s.heldRatio).toBe(0);
    expect(s.tunnelpulse.held).toBeNull();
  });
});

describe('the adaptive step', () => {
  it('offers 0.7 × the reference held rate (+5 %) when no TunnelPulse step answered it', () => {
    // Reference held 20,000 offered (19,000 produced): needed 13,300; offered ceil(13,965 / 100) × 100.
    const runs = [run('reference', 5_000, 5_000, true), run('tunnelpulse', 5_000, 5_000, true), run('reference', 20_000, 19_000, true), run('tunnelpulse', 20_000, 14_000, false)];
    expect(adaptiveRate(runs)).toBe(14_000);
  });

  it('none when a held step already reached the needed rate, or TunnelPulse fell behind below the offer', () => {
    const answered = [run('reference', 20_000, 19_000, true), run('tunnelpulse', 14_000, 13_400, true)];
    expect(adaptiveRate(answered)).toBeNull();
    const fellBehindLower = [run('reference', 20_000, 19_000, true), run('tunnelpulse', 5_000, 5_000, true), run('tunnelpulse', 10_000, 8_000, false)];
    expect(adaptiveRate(fellBehindLower)).toBeNull();
    // …unless every rate is asked for.
    expect(adaptiveRate(fellBehindLower, true)).toBe(14_000);
    // Held, but the simulators produced a little less than needed: the step asks again, 5 % higher.
    expect(adaptiveRate([run('reference', 20_000, 19_000, true), run('tunnelpulse', 13_000, 12_900, true)])).toBe(14_000);
    expect(adaptiveRate([run('tunnelpulse', 5_000, 5_000, true)])).toBeNull();
  });
});

describe('the throughput target verdict', () => {
  const verdict = (runs: RunResult[]) => throughputVerdict(sustainedThroughput(runs, false, null));
  it('yes only when the lower bound of the capacity ratio reaches 0.7', () => {
    // TunnelPulse in [15k, 20k), the reference in [20k, 25k): ratio in [0.6, 1.0): undecided.
    expect(verdict([run('reference', 20_000, 20_000, true), run('reference', 25_000, 25_000, false), run('tunnelpulse', 15_000, 15_000, true), run('tunnelpulse', 20_000, 20_000, false)])).toBeNull();
    // TunnelPulse in [18k, 20k), the reference in [20k, 25k): ratio in [0.72, 1.0): yes.
    expect(verdict([run('reference', 20_000, 20_000, true), run('reference', 25_000, 25_000, false), run('tunnelpulse', 18_000, 18_000, true), run('tunnelpulse', 20_000, 20_000, false)])).toBe(true);
    // TunnelPulse in [10k, 14k), the reference in [25k, 30k): ratio below 0.56: no.
    expect(verdict([run('reference', 25_000, 25_000, true), run('reference', 30_000, 30_000, false), run('tunnelpulse', 10_000, 10_000, true), run('tunnelpulse', 14_000, 14_000, false)])).toBe(false);
  });

  it('undecided when the reference still held the top of the ladder, however the held rates compare', () => {
    expect(verdict([run('reference', 20_000, 20_000, true), run('tunnelpulse', 14_700, 14_500, true), run('tunnelpulse', 20_000, 19_500, false)])).toBeNull();
    // …unless even TunnelPulse's upper bound falls short.
    expect(verdict([run('reference', 20_000, 20_000, true), run('tunnelpulse', 5_000, 5_000, true), run('tunnelpulse', 10_000, 10_000, false)])).toBe(false);
  });

  it('bounds the reference by its held step when it fell behind at a rate it produced less of (starved by the simulators)', () => {
    const s = sustainedThroughput([run('reference', 60_000, 48_738, true), run('reference', 80_000, 36_713, false), run('tunnelpulse', 25_000, 23_646, true), run('tunnelpulse', 30_000, 25_460, false)], false, null);
    expect(s.capacityRatio).toEqual({ low: 0.49, high: 0.52 });
    expect(throughputVerdict(s)).toBe(false);
  });

  it('bounds TunnelPulse the same way: its ceiling is never below what it held', () => {
    // Session 6's ladder (21:18): TunnelPulse held 50,000/s (44,501 produced) and fell behind at 60,000/s having
    // produced less (42,853); the reference held 60,000/s (55,850) and fell behind at 80,000/s (46,930).
    const runs = [
      run('reference', 60_000, 55_850, true),
      run('reference', 80_000, 46_930, false),
      run('tunnelpulse', 50_000, 44_501, true),
      run('tunnelpulse', 60_000, 42_853, false),
    ];
    const s = sustainedThroughput(runs, false, null);
    // Both capacities are bounded by their held steps: 44,501 / 55,850 on both sides (not low 0.8 > high 0.77).
    expect(s.capacityRatio).toEqual({ low: 0.8, high: 0.8 });
    expect(throughputVerdict(s)).toBe(true);
  });

  it('takes the held step that carried the most, not the highest offer (simulators short at the top)', () => {
    // 2026-11-26 16:53: the reference held 100,000/s (92,162 produced) and 120,000/s (86,118: the simulators short).
    const runs = [
      run('reference', 100_000, 92_162, true),
      run('reference', 120_000, 86_118, true),
      run('tunnelpulse', 50_000, 48_750, true),
      run('tunnelpulse', 60_000, 58_137, false),
    ];
    const s = sustainedThroughput(runs, true, null);
    expect(s.reference.held).toEqual({ offered: 100_000, produced: 92_162 });
    // TunnelPulse's capacity is below 58,137, the reference's at least 92,162: at most 0.63.
    expect(throughputVerdict(s)).toBe(false);
  });
});
