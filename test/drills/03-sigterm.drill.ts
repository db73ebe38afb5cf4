/**
 * Drill 3: SIGTERM mid-batch, at random moments, N times (issue 8: 20): every stop exits 0 having stopped
 * reading and written everything it had parsed; the next start persists exactly the rest. Checked against the
 * journals of every run (what each run parsed): no line parsed and not stored, no line stored twice, and the
 * lifetime traffic totals equal to the master's counters.
 *
 * DRILL_SIGTERM_CYCLES (default 5; 20 with DRILL_LONG=1), DRILL_SIGTERM_MAX_LIFE_MS (default 1500).
 */
import { expect, it } from 'vitest';
import { LONG, param, reportFigures } from './harness.js';
import { runRestartCycles } from './restart-cycles.js';

const CYCLES = param('DRILL_SIGTERM_CYCLES', LONG ? 20 : 5);
const MAX_LIFE_MS = param('DRILL_SIGTERM_MAX_LIFE_MS', 1_500);

it(`SIGTERM ×${CYCLES} at random moments: exit 0, and every parsed line stored exactly once`, async () => {
  const r = await runRestartCycles({ signal: 'SIGTERM', cycles: CYCLES, maxLifeMs: MAX_LIFE_MS, instances: 4, logRate: 25, seed: 'drill-3' });
  reportFigures('3-sigterm', {
    cycles: CYCLES,
    exitCodes: JSON.stringify([...new Set(r.exits.map((e) => e.code))]),
    medianStartMs: r.startMs.sort((a, b) => a - b)[Math.floor(r.startMs.length / 2)]!,
    parsedLines: r.journalled,
    logRows: r.rows,
    duplicates: r.duplicates,
    parsedButNotStored: r.lostAfterParse,
    trafficExact: r.trafficExact,
    trafficTcprx: r.trafficCounted.tcprx,
  });
  expect(r.exits.every((e) => e.code === 0 && e.signal === null), JSON.stringify(r.exits)).toBe(true);
  expect(r.journalled).toBeGreaterThan(0);
  expect(r.duplicates).toBe(0);
  expect(r.lostAfterParse).toBe(0);
  expect(r.trafficCounted).toEqual(r.trafficTruth);
});
