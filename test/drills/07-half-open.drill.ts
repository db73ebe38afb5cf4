/**
 * Drill 7: a half-open stream versus a quiet healthy one.
 *  - stream-only stall: the master's open SSE stream stops sending (its socket is no longer written or read)
 *    while its REST API still answers and its counters keep moving. The probe's listing shows changes the
 *    stream never carried: replaced as half-open.
 *  - whole-master stall (`master.stall()`: no bytes, no acknowledgement, every request hangs): the probes time
 *    out and the stream is replaced after `probeFailureLimit` failures; once the master answers again the
 *    endpoint reconnects.
 *  - a quiet master (no checkpoints, no logs) beside them: probed, found alive, never reconnected.
 *
 * Probe settings are shortened (probe every 1 s); the probe's request timeout is the runtime's (10 s), so the
 * whole-master case takes about 2 × (1 s + 10 s).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startSimulator, type HostedMaster, type SimulatorHandle } from '../../src/sim/simulator.js';
import { endpointStatePath, isLive, openDrillSchema, reportFigures, startPipeline, waitFor, type DrillSchema, type Pipeline } from './harness.js';

const SETTINGS = { probeIntervalMs: 1_000, probeFailureLimit: 2, reconcileSettleMs: 500, backoffBaseMs: 200, backoffCapMs: 1_000 };

let schema: DrillSchema;
let sim: SimulatorHandle;
let pipeline: Pipeline;

beforeAll(async () => {
  schema = await openDrillSchema('halfopen');
});

afterAll(async () => {
  await pipeline?.stop().catch(() => undefined);
  await sim?.close();
  await schema?.close();
});

/** Stalls only the open SSE streams of a master (the REST API keeps answering). */
function stallStreamsOnly(master: HostedMaster): void {
  for (const sub of (master as unknown as { subscribers: Set<{ stall(): void }> }).subscribers) sub.stall();
}

const liveness = (p: Pipeline, id: number) => {
  const c = p.runtime.endpointState(id)!.context as unknown as {
    connections: number;
    liveness?: { probes: number; probeFailures: number; halfOpenReplaced: number };
    offline: Array<{ reason: string }>;
    disconnected: { reason: string } | null;
  };
  return { connections: c.connections, ...(c.liveness ?? { probes: -1, probeFailures: -1, halfOpenReplaced: -1 }), reasons: [...c.offline, ...(c.disconnected ? [c.disconnected] : [])].map((o) => o.reason) };
};

it('replaces a half-open stream, reconnects after a stalled master, and leaves a quiet healthy stream alone', async () => {
  sim = await startSimulator({
    masters: [
      { name: 'streamstall', reportIntervalMs: 500 },
      { name: 'masterstall', reportIntervalMs: 500 },
      { name: 'quiet', reportIntervalMs: 0 },
    ],
    instances: 2,
    lifecycleLogs: false,
    seed: 'drill-7',
  });
  pipeline = await startPipeline({ url: schema.url, schema: schema.schema, endpointSettings: SETTINGS });
  const ids = {
    streamstall: await pipeline.addEndpoint('streamstall', sim.get('streamstall').url, sim.get('streamstall').apiKey),
    masterstall: await pipeline.addEndpoint('masterstall', sim.get('masterstall').url, sim.get('masterstall').apiKey),
    quiet: await pipeline.addEndpoint('quiet', sim.get('quiet').url, sim.get('quiet').apiKey),
  };
  await waitFor('all live', () => Object.values(ids).every((id) => isLive(pipeline.runtime, id)), 20_000);

  // 1. Only the stream goes silent; the master's counters keep moving and its REST API answers.
  const stalledAt = Date.now();
  stallStreamsOnly(sim.get('streamstall'));
  // 2. The whole master hangs.
  sim.get('masterstall').stall();
  const halfOpenMs = await waitFor('the half-open stream replaced', () => liveness(pipeline, ids.streamstall).connections >= 2 && isLive(pipeline.runtime, ids.streamstall), 30_000);
  await waitFor('the stalled master given up', () => !isLive(pipeline.runtime, ids.masterstall), 60_000);
  const detectedAfterMs = Date.now() - stalledAt;
  sim.get('masterstall').unstall();
  const reconnectMs = await waitFor('the stalled master reconnected', () => liveness(pipeline, ids.masterstall).connections >= 2 && isLive(pipeline.runtime, ids.masterstall), 30_000);
  const quietWatchedMs = Date.now() - stalledAt;

  const s = liveness(pipeline, ids.streamstall);
  const m = liveness(pipeline, ids.masterstall);
  const q = liveness(pipeline, ids.quiet);
  const quietState = endpointStatePath(pipeline.runtime, ids.quiet);
  await pipeline.stop();

  reportFigures('7-half-open', {
    halfOpenReplacedAfterMs: halfOpenMs,
    halfOpenReplacements: s.halfOpenReplaced,
    halfOpenReason: JSON.stringify(s.reasons.at(-1) ?? ''),
    stalledMasterGivenUpAfterMs: detectedAfterMs,
    stalledMasterProbeFailures: m.probeFailures,
    stalledMasterReason: JSON.stringify(m.reasons.at(-1) ?? ''),
    stalledMasterReconnectedAfterUnstallMs: reconnectMs,
    quietWatchedMs,
    quietProbes: q.probes,
    quietConnections: q.connections,
    quietProbeFailures: q.probeFailures,
  });

  expect(s.halfOpenReplaced).toBeGreaterThanOrEqual(1);
  expect(s.reasons).toContain('half-open');
  expect(m.probeFailures).toBeGreaterThanOrEqual(SETTINGS.probeFailureLimit);
  expect(m.reasons).toContain('probe-failed');
  expect(m.connections).toBe(2);
  expect(q.probes).toBeGreaterThanOrEqual(3); // the quiet stream was checked…
  expect(q.probeFailures).toBe(0);
  expect(q.connections).toBe(1); // …and left alone
  expect(quietState).toContain('.live.');
});
