/**
 * Drill 6: HTTP-level failures, one endpoint each, beside a healthy one:
 *  - 401 after key rotation  → parked in `authFailed` (no request at all while parked), back to live on the new key;
 *  - 404 (wrong path), 500 (the master errors), connection refused, TLS failure (https to a plain-HTTP port)
 *    → backing off: still retrying, never faster than the backoff allows, each with its own error kind;
 *  - the healthy endpoint connects at once and stores every seq exactly once meanwhile.
 *
 * DRILL_HTTP_WINDOW_MS: how long the failures are watched (default 6 s).
 */
import { createServer } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { normaliseMasterUrl } from '../../src/ingest/master-url.js';
import { startSimulator, type SimulatorHandle } from '../../src/sim/simulator.js';
import {
  LONG,
  endpointStatePath,
  isLive,
  openDrillSchema,
  param,
  reportFigures,
  scanSequences,
  sleep,
  startPipeline,
  waitFor,
  type DrillSchema,
  type Pipeline,
} from './harness.js';

const WINDOW_MS = param('DRILL_HTTP_WINDOW_MS', LONG ? 60_000 : 6_000);
const BACKOFF = { backoffBaseMs: 200, backoffCapMs: 2_000 };

let schema: DrillSchema;
let sim: SimulatorHandle;
let pipeline: Pipeline;

beforeAll(async () => {
  schema = await openDrillSchema('http');
});

afterAll(async () => {
  await pipeline?.stop().catch(() => undefined);
  await sim?.close();
  await schema?.close();
});

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** The most connection attempts equal-jitter backoff allows in `windowMs` (every delay at its minimum, step/2). */
function maxAttemptsWithin(windowMs: number): number {
  let elapsed = 0;
  let attempt = 0;
  while (elapsed <= windowMs) {
    attempt++;
    elapsed += Math.min(BACKOFF.backoffCapMs, BACKOFF.backoffBaseMs * 2 ** (attempt - 1)) / 2;
  }
  return attempt + 1;
}

it('parks a rotated key, backs off 404/500/refused/TLS, and does not delay the healthy endpoint', async () => {
  sim = await startSimulator({
    masters: [{ name: 'rotated' }, { name: 'errors' }, { name: 'healthy', logRate: 20 }],
    instances: 2,
    reportIntervalMs: 500,
    delivery: 'drop',
    lifecycleLogs: false,
    seed: 'drill-6',
  });
  pipeline = await startPipeline({ url: schema.url, schema: schema.schema, persister: { logFlushMs: 250, stateFlushMs: 300 }, endpointSettings: BACKOFF });
  const [rotatedM, errorsM, healthyM] = [sim.get('rotated'), sim.get('errors'), sim.get('healthy')];

  const rotated = await pipeline.addEndpoint('rotated', rotatedM.url, rotatedM.apiKey);
  await waitFor('rotated live', () => isLive(pipeline.runtime, rotated), 20_000);
  errorsM.setHttpFailure(500);
  const failing = {
    http404: await pipeline.addEndpoint('http404', `${sim.origin}/nope/api`, healthyM.apiKey),
    http500: await pipeline.addEndpoint('http500', errorsM.url, errorsM.apiKey),
    refused: await pipeline.addEndpoint('refused', `http://127.0.0.1:${await closedPort()}/api`, healthyM.apiKey),
    tls: await pipeline.addEndpoint('tls', `https://127.0.0.1:${sim.port}/healthy/api`, healthyM.apiKey),
  };
  const newKey = rotatedM.rotateKey();
  const healthy = await pipeline.addEndpoint('healthy', healthyM.url, healthyM.apiKey);
  const healthyLiveMs = await waitFor('healthy live', () => isLive(pipeline.runtime, healthy), 20_000, 10);

  await waitFor('rotated parked', () => endpointStatePath(pipeline.runtime, rotated).includes('authFailed'), 10_000);
  const requestsWhenParked = rotatedM.stats().requests;
  const windowStart = Date.now();
  await sleep(WINDOW_MS);
  const requestsWhileParked = rotatedM.stats().requests - requestsWhenParked;
  const elapsed = Date.now() - windowStart + 1_000; // attempts may have started up to a second before the window
  const states = Object.fromEntries(Object.entries(failing).map(([name, id]) => [name, pipeline.runtime.endpointState(id)!.context]));
  const allowed = maxAttemptsWithin(elapsed);

  // The operator enters the new key: the parked endpoint comes back.
  pipeline.runtime.updateEndpoint({ id: rotated, name: 'rotated', baseUrl: normaliseMasterUrl(rotatedM.url), apiKey: newKey, insecureTls: false, enabled: true });
  const recoveredMs = await waitFor('rotated live on the new key', () => isLive(pipeline.runtime, rotated), 10_000, 10);

  for (const m of sim.masters) m.shutdown();
  await sleep(500);
  const healthyContext = pipeline.runtime.endpointState(healthy)!.context;
  await pipeline.stop();
  const scan = await scanSequences(schema.admin.sql, healthy, (id) => healthyM.logSequence(id));

  const figures: Record<string, number | string> = {
    windowMs: WINDOW_MS,
    requestsWhileParked,
    recoveredOnNewKeyMs: recoveredMs,
    healthyLiveMs,
    healthyConnections: healthyContext.connections,
    healthyLogRows: scan.rows,
    duplicates: scan.duplicates,
    missing: scan.missing,
    maxAttemptsAllowed: allowed,
  };
  for (const [name, c] of Object.entries(states)) {
    figures[`${name}Attempts`] = c.attempt;
    figures[`${name}Error`] = JSON.stringify((c.lastError ?? '').split(':')[0]);
  }
  reportFigures('6-http-failures', figures);

  expect(requestsWhileParked).toBe(0);
  const kinds: Record<keyof typeof failing, RegExp> = { http404: /^http: HTTP 404/, http500: /^http: HTTP 500/, refused: /^refused/, tls: /^tls/ };
  for (const [name, c] of Object.entries(states)) {
    expect(c.lastError, name).toMatch(kinds[name as keyof typeof failing]);
    expect(c.connections, name).toBe(0);
    expect(c.attempt, name).toBeGreaterThanOrEqual(3); // still retrying
    expect(c.attempt, name).toBeLessThanOrEqual(allowed); // never faster than the backoff
  }
  expect(healthyLiveMs).toBeLessThan(3_000);
  expect(healthyContext.connections).toBe(1);
  expect(scan.duplicates).toBe(0);
  expect(scan.missing).toBe(0);
});
