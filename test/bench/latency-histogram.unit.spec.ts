/** The receipt→commit histogram the persister fills and the benchmark reads (src/runtime/stats.ts). */
import { describe, expect, it } from 'vitest';
import { LatencyHistogram, Stats } from '../../src/runtime/stats.js';

describe('LatencyHistogram', () => {
  it('reports quantiles within its 5 % bucket width, never above the largest value', () => {
    const h = new LatencyHistogram();
    for (let ms = 1; ms <= 1000; ms++) h.record(ms);
    const { count, p50Ms, p99Ms, maxMs } = h.summary();
    expect(count).toBe(1000);
    expect(maxMs).toBe(1000);
    expect(p50Ms).toBeGreaterThanOrEqual(500);
    expect(p50Ms).toBeLessThanOrEqual(500 * 1.05);
    expect(p99Ms).toBeGreaterThanOrEqual(990);
    expect(p99Ms).toBeLessThanOrEqual(1000);
  });

  it('puts sub-millisecond and zero latencies in the first bucket, and starts over on reset', () => {
    const h = new LatencyHistogram();
    h.record(0);
    h.record(0.4);
    expect(h.summary()).toEqual({ count: 2, p50Ms: 0.4, p99Ms: 0.4, maxMs: 0.4 });
    h.reset();
    expect(h.summary()).toEqual({ count: 0, p50Ms: 0, p99Ms: 0, maxMs: 0 });
  });
});

describe('Stats.committed', () => {
  it('records each entry of a committed batch by its queued time, per queue, and reports it in the snapshot', () => {
    const stats = new Stats();
    stats.committed('log', [{ since: 1_000 }, { since: 1_500 }, { since: 2_900 }], 3_000);
    stats.committed('state', [{ since: 0 }], 2_000);
    const { commitLatency } = stats.snapshot();
    expect(commitLatency.log.count).toBe(3);
    expect(commitLatency.log.maxMs).toBe(2_000);
    expect(commitLatency.log.p50Ms).toBeGreaterThanOrEqual(1_500);
    expect(commitLatency.log.p50Ms).toBeLessThanOrEqual(1_500 * 1.05);
    expect(commitLatency.state).toMatchObject({ count: 1, maxMs: 2_000, p99Ms: 2_000 });
    expect(commitLatency.config.count).toBe(0);
  });
});
