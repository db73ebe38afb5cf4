/**
 * `tunnelpulse bench` at a tiny scale, through the built CLI: simulator processes, TunnelPulse and the reference
 * pipeline on the test database. Checks the report's shape and that the counts agree (every frame the simulators
 * wrote was received, every log line received was committed), the per-writer statement split adding up to the
 * total, a warm-up before every window, a query probe in every TunnelPulse window; no speed is asserted.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { BenchReport } from '../../src/bench/bench.js';

const CLI = fileURLToPath(new URL('../../bin/tunnelpulse.js', import.meta.url));

function runCli(args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('tunnelpulse bench', () => {
  it('runs both pipelines on the same load and reports consistent counts', { timeout: 150_000 }, async () => {
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env['DATABASE_URL'];
    if (process.env['TEST_DATABASE_URL']) env['DATABASE_URL'] = process.env['TEST_DATABASE_URL'];
    const { code, stdout, stderr } = await runCli(
      ['bench', '--json', '--endpoints', '2', '--tunnels', '20', '--rates', '200,400', '--step-seconds', '3', '--processes', '1', '--memory', '500', '--query-rps', '50', '--every-rate', '--no-adaptive'],
      env,
      140_000,
    );
    expect(code, stderr).toBe(0);
    const report = JSON.parse(stdout) as BenchReport;

    expect(report.meta).toMatchObject({ endpoints: 2, tunnelsPerEndpoint: 20, database: process.env['TEST_DATABASE_URL'] ? 'server' : 'embedded' });
    expect(report.meta.commit).toMatch(/^[0-9a-f]{4,}$|^unknown$/);
    expect(report.meta).toMatchObject({ rates: [200, 400], adaptiveStep: false });
    expect(report.runs.map((r) => `${r.pipeline}@${r.offeredRate}`).sort()).toEqual(['reference@200', 'reference@400', 'tunnelpulse@200', 'tunnelpulse@400']);
    for (const run of report.runs) {
      // Every frame the simulators wrote arrived (initial snapshot, checkpoints, log lines, the final shutdown)…
      expect(run.totals.framesSent).toBeGreaterThan(2 * 21);
      expect(run.totals.received).toBe(run.totals.framesSent);
      // …and every log line received became a row.
      expect(run.totals.logEventsReceived).toBeGreaterThan(0);
      expect(run.totals.logRowsCommitted).toBe(run.totals.logEventsReceived);
      expect(run.totals.rejected).toBe(0);
      expect(run.consistent).toBe(true);
      expect(run.error).toBeUndefined();
      expect(run.window.events).toBeGreaterThan(0);
      expect(run.window.logs + run.window.updates).toBeLessThanOrEqual(run.window.events);
      // Latency covers the window's commits (3 s: at least one log batch and one state flush of the 2 s periods).
      expect(run.latency.log.count).toBeGreaterThan(0);
      expect(run.latency.log.count).toBeLessThanOrEqual(run.totals.logRowsCommitted);
      expect(run.latency.log.p99Ms).toBeGreaterThanOrEqual(run.latency.log.p50Ms);
      expect(run.latency.state.count).toBeGreaterThan(0);
      expect(run.step).toBe('ladder');
      // The statements split by kind of write add up to the total, and the per-kind rates are read from them.
      const w = run.window.writes;
      expect(w.state.statements + w.log.statements + w.config.statements + w.jobs.statements).toBe(run.window.statements);
      expect(w.state.rows + w.log.rows + w.config.rows + w.jobs.rows).toBe(run.window.rows);
      expect(w.state.statements).toBeGreaterThan(0);
      expect(w.log.statements).toBeGreaterThan(0);
      expect(run.stateStatementsPer1000Updates).toBeCloseTo((w.state.statements / run.window.updates) * 1000, 1);
      expect(run.logStatementsPer1000Logs).toBeCloseTo((w.log.statements / run.window.logs) * 1000, 1);
      // The window starts after the warm-up: the initial snapshot, then caught up (a tiny load always is).
      expect(run.warmUp.outcome).toBe('caught-up');
      expect(run.warmUp.seconds).toBeGreaterThanOrEqual(run.warmUp.snapshotSeconds);
      // The window's cost: some of the loop was busy, and the busy time per event is that share over the events.
      expect(run.cost.loopUtilization).toBeGreaterThan(0);
      expect(run.cost.loopUtilization).toBeLessThanOrEqual(1);
      expect(run.cost.busyUsPerEvent).toBeCloseTo((run.cost.loopUtilization * run.windowSeconds * 1e6) / run.window.events, -1);
      expect(run.cost.cpuUsPerEvent).toBeGreaterThan(0);
      if (run.pipeline === 'tunnelpulse') {
        // Every TunnelPulse window has its query probe; the per-writer counters are reported as Stats keeps them.
        expect(run.query, `query at ${run.offeredRate}`).toBeDefined();
        expect(run.query!.requests).toBeGreaterThan(0);
        expect(run.query!.errors + run.query!.notOk).toBe(0);
        // The floor loop ran alongside, against the idle floor server, and was answered.
        expect(run.query!.floor, `floor at ${run.offeredRate}`).toBeDefined();
        expect(run.query!.floor!.requests).toBeGreaterThan(0);
        expect(run.window.byWriter!.stateFlusher).toEqual(w.state);
        expect(run.window.byWriter!.logBatcher).toEqual(w.log);
      } else {
        expect(run.query).toBeUndefined();
        expect(w.config.statements + w.jobs.statements).toBe(0);
      }
    }
    expect(report.consistent).toBe(true);
    // Both normally hold both rates of a tiny load: neither limit was reached, and the report says so (no bound).
    const sustained = report.summary.sustained;
    if (report.runs.every((r) => r.held)) {
      expect(sustained.kind).toBe('unbounded');
      expect(sustained.reference.limit).toBe('ladder-top');
      expect(sustained.reference.held!.offered).toBe(400);
    }
    expect(sustained.needed).toBe(Math.round(0.7 * sustained.reference.held!.produced));
    expect(sustained.adaptiveRate).toBeNull();

    expect(report.memory.map((m) => m.pipeline).sort()).toEqual(['reference', 'tunnelpulse']);
    for (const m of report.memory) {
      expect(m.held).toBe(m.tunnels);
      expect(m.gc).toBe(true);
    }
    expect(report.summary.throughput.ratio).not.toBeNull();
    // The cost comparison is read at the step both ran, and the rate at that cost is its inverse.
    const cost = report.summary.busyUsPerEvent;
    expect(cost.tunnelpulse).toBeGreaterThan(0);
    expect(report.summary.capacityByCost.tunnelpulse).toBe(Math.round(1_000_000 / cost.tunnelpulse!));
    expect(report.summary.capacityByCost.reference).toBe(Math.round(1_000_000 / cost.reference!));
    expect(report.targets.map((t) => t.name)).toHaveLength(5);
  });
});
