/**
 * `tunnelpulse bench` at a tiny scale, through the built CLI: simulator processes, TunnelPulse and the reference
 * pipeline on the test database. Checks the report's shape and that the counts agree (every frame the simulators
 * wrote was received, every log line received was committed); no speed is asserted.
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
      ['bench', '--json', '--endpoints', '2', '--tunnels', '20', '--rates', '200,400', '--step-seconds', '2', '--processes', '1', '--memory', '500', '--query-rps', '50', '--every-rate'],
      env,
      140_000,
    );
    expect(code, stderr).toBe(0);
    const report = JSON.parse(stdout) as BenchReport;

    expect(report.meta).toMatchObject({ endpoints: 2, tunnelsPerEndpoint: 20, database: process.env['TEST_DATABASE_URL'] ? 'server' : 'embedded' });
    expect(report.meta.commit).toMatch(/^[0-9a-f]{4,}$|^unknown$/);
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
      expect(run.latency.log.count).toBe(run.totals.logRowsCommitted);
      expect(run.latency.log.p99Ms).toBeGreaterThanOrEqual(run.latency.log.p50Ms);
      expect(run.latency.state.count).toBeGreaterThan(0);
    }
    const tp = report.runs.find((r) => r.pipeline === 'tunnelpulse' && r.query)!;
    expect(tp.query).toBeDefined();
    expect(tp.query!.requests).toBeGreaterThan(0);
    expect(tp.query!.errors + tp.query!.notOk).toBe(0);
    expect(report.consistent).toBe(true);

    expect(report.memory.map((m) => m.pipeline).sort()).toEqual(['reference', 'tunnelpulse']);
    for (const m of report.memory) {
      expect(m.held).toBe(m.tunnels);
      expect(m.gc).toBe(true);
    }
    expect(report.summary.throughput.ratio).not.toBeNull();
    expect(report.targets.map((t) => t.name)).toHaveLength(5);
  });
});
