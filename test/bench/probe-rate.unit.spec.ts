/**
 * The query probe runs in every TunnelPulse window, at the full rate up to the query target's offer and lightly
 * above it, so that the throughput comparison with the reference (which is never queried) is not skewed by it.
 */
import { describe, expect, it } from 'vitest';
import { probeRate } from '../../src/bench/bench.js';

describe('probeRate', () => {
  const options = { queryRate: 20_000, queryRequestsPerSecond: 200 };

  it('probes at the full rate up to the query target and at a tenth above it', () => {
    expect(probeRate(5_000, options)).toBe(200);
    expect(probeRate(20_000, options)).toBe(200);
    expect(probeRate(25_000, options)).toBe(20);
    expect(probeRate(120_000, options)).toBe(20);
  });

  it('never probes above the target at fewer than 10 requests per second', () => {
    expect(probeRate(30_000, { queryRate: 20_000, queryRequestsPerSecond: 50 })).toBe(10);
    expect(probeRate(300, { queryRate: 200, queryRequestsPerSecond: 50 })).toBe(10);
  });
});
