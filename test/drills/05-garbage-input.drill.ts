/**
 * Drill 5: garbage from an endpoint. A loopback server of our own (raw bytes, no simulator logic) plays a
 * broken master: non-JSON, a wrong shape, a counter above 2^53, an unknown event type, a 50 MB line with no
 * newline (written in 64 KB chunks with backpressure, so the only place it could pile up is our reader), then
 * a valid event; on the next connections an HTML page with 200 and an empty 200. Beside it a simulated master
 * streams log lines the whole time.
 * Checked: each bad payload counted and skipped (exact counts and reasons), the event after the 50 MB line
 * accepted, memory bounded while the line streams, the healthy endpoint untouched (one connection, every seq
 * stored once), no unhandled rejection.
 *
 * DRILL_HUGE_LINE_MB (default 50).
 */
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { encodeEnvelope, encodeInstance, GoTimeStamper, sseFrame, type WireInstance } from '../../src/sim/go-wire.js';
import { startSimulator, type SimulatorHandle } from '../../src/sim/simulator.js';
import {
  isLive,
  openDrillSchema,
  param,
  reportFigures,
  retainedMb,
  scanSequences,
  sleep,
  startPipeline,
  waitFor,
  watchUnhandled,
  type DrillSchema,
  type Pipeline,
} from './harness.js';

const HUGE_MB = param('DRILL_HUGE_LINE_MB', 50);
const API_KEY = '0123456789abcdef0123456789abcdef';

let schema: DrillSchema;
let sim: SimulatorHandle;
let pipeline: Pipeline;
let raw: Server;
const sockets = new Set<Socket>();

beforeAll(async () => {
  schema = await openDrillSchema('garbage');
});

afterAll(async () => {
  await pipeline?.stop().catch(() => undefined);
  await sim?.close();
  for (const s of sockets) s.destroy();
  await new Promise<void>((resolve) => (raw ? raw.close(() => resolve()) : resolve()));
  await schema?.close();
});

const instance = (tcprx: number | string): string =>
  encodeInstance({
    id: 'badc0de1',
    alias: 'garbage-tunnel',
    type: 'server',
    status: 'running',
    url: 'server://127.0.0.1:10101/127.0.0.1:8080?log=info&mode=1',
    config: 'server://127.0.0.1:10101/127.0.0.1:8080?log=info&mode=1',
    restart: true,
    meta: { peer: { sid: '', type: '', alias: '' }, tags: {} },
    mode: 1,
    ping: 0,
    pool: 0,
    tcps: 0,
    udps: 0,
    tcprx: 0,
    tcptx: 0,
    udprx: 0,
    udptx: 0,
  } as WireInstance).replace('"tcprx":0', `"tcprx":${tcprx}`);

/** Writes `bytes` of 'x' with no newline, 64 KB at a time, waiting for the socket to drain. */
async function writeHugeLine(res: ServerResponse, bytes: number): Promise<void> {
  const chunk = Buffer.alloc(64 * 1024, 'x');
  res.write('data: ');
  for (let sent = 0; sent < bytes; sent += chunk.length) {
    if (!res.write(chunk)) await new Promise((resolve) => res.once('drain', resolve));
    if (res.destroyed) return;
  }
  res.write('\n\n');
}

it(`counts and skips garbage, a ${HUGE_MB} MB line, HTML and empty 200s, and leaves the other endpoint alone`, async () => {
  const unhandled = watchUnhandled();
  const stamper = new GoTimeStamper(Date.now);
  let connection = 0;
  let hugeLineDone = false;
  let retainedDuringHugeLine = 0;
  raw = createServer((req, res) => {
    sockets.add(req.socket);
    req.socket.once('close', () => sockets.delete(req.socket));
    if (!req.url?.endsWith('/v1/events')) {
      res.writeHead(404).end('404 page not found\n');
      return;
    }
    connection++;
    if (connection === 2) {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end('<!DOCTYPE html><html><body><h1>It works!</h1></body></html>\n');
      return;
    }
    if (connection === 3) {
      res.writeHead(200, { 'Content-Length': '0' }).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
    res.write('retry: 3000\n\n');
    res.write(sseFrame(encodeEnvelope('initial', stamper.stamp(), instance(0))));
    if (connection !== 1) {
      res.write(sseFrame(encodeEnvelope('update', stamper.stamp(), instance(2000))));
      return; // stays open
    }
    void (async () => {
      res.write(sseFrame('{"type":"update","time":"2026-01-01T00:00:00Z","instance":{"id":"badc0de1"')); // not JSON
      res.write(sseFrame(encodeEnvelope('update', stamper.stamp(), instance(0).replace('"status":"running"', '"status":42')))); // wrong shape
      res.write(sseFrame(encodeEnvelope('update', stamper.stamp(), instance('18446744073709551615')))); // > 2^53
      res.write(sseFrame(`{"type":"heartbeat","time":"${stamper.stamp()}","instance":${instance(0)},"logs":""}`)); // unknown type
      const sampler = setInterval(() => (retainedDuringHugeLine = Math.max(retainedDuringHugeLine, retainedMb())), 100);
      await writeHugeLine(res, HUGE_MB * 1024 * 1024);
      clearInterval(sampler);
      res.write(sseFrame(encodeEnvelope('update', stamper.stamp(), instance(1000)))); // valid again
      hugeLineDone = true;
    })();
  });
  await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
  const rawUrl = `http://127.0.0.1:${(raw.address() as AddressInfo).port}/api`;

  sim = await startSimulator({ instances: 2, reportIntervalMs: 500, logRate: 20, delivery: 'drop', lifecycleLogs: false, seed: 'drill-5' });
  pipeline = await startPipeline({
    url: schema.url,
    schema: schema.schema,
    persister: { logFlushMs: 250, stateFlushMs: 300 },
    endpointSettings: { backoffBaseMs: 200, backoffCapMs: 1_000 },
  });
  const healthy = await pipeline.addEndpoint('healthy', sim.master.url, sim.master.apiKey);
  await waitFor('healthy live', () => isLive(pipeline.runtime, healthy), 20_000);
  const retainedBefore = retainedMb();
  const broken = await pipeline.addEndpoint('broken', rawUrl, API_KEY);
  const healthyEventsBefore = pipeline.runtime.endpointState(healthy)!.context.events.total;

  await waitFor('the event after the huge line', () => hugeLineDone && pipeline.runtime.tunnel(broken, 'badc0de1')?.counters.tcprx === 1000, 60_000);
  const afterHuge = pipeline.runtime.endpointState(broken)!.context;
  const healthyEventsDuring = pipeline.runtime.endpointState(healthy)!.context.events.total - healthyEventsBefore;
  const rejectedFirstConnection = afterHuge.events.rejected;
  const reasons = Object.keys(afterHuge.events.rejectedReasons);

  // Cut the connection: the next two answers are an HTML page and an empty body, both with 200.
  for (const s of sockets) s.destroy();
  await waitFor('a fourth, healthy connection', () => connection >= 4 && pipeline.runtime.tunnel(broken, 'badc0de1')?.counters.tcprx === 2000, 30_000);
  const brokenContext = pipeline.runtime.endpointState(broken)!.context;
  // Connections 2 and 3 answered 200 but never opened a stream (not text/event-stream).
  const notSse = connection - brokenContext.connections;

  for (const m of sim.masters) m.shutdown();
  await sleep(500);
  const healthyContext = pipeline.runtime.endpointState(healthy)!.context;
  await pipeline.stop();
  const scan = await scanSequences(schema.admin.sql, healthy, (id) => sim.master.logSequence(id));
  const [storedBroken] = await schema.admin.sql<{ tcprx: number }[]>`SELECT tcprx FROM tunnels WHERE endpoint_id = ${broken}`;
  unhandled.stop();

  reportFigures('5-garbage-input', {
    hugeLineMb: HUGE_MB,
    rejectedPayloads: rejectedFirstConnection,
    rejectionReasons: reasons.length,
    notSseConnections: notSse,
    brokenConnections: connection,
    retainedBeforeMb: retainedBefore,
    retainedMaxDuringHugeLineMb: retainedDuringHugeLine,
    healthyEventsDuringHugeLine: healthyEventsDuring,
    healthyConnections: healthyContext.connections,
    healthyLogRows: scan.rows,
    duplicates: scan.duplicates,
    missing: scan.missing,
    unhandledRejections: unhandled.count(),
  });

  // not-json, wrong shape, 2^64-1, unknown type, the oversized line: each counted once, with its own reason.
  expect(rejectedFirstConnection).toBe(5);
  expect(reasons.length).toBe(5);
  expect(reasons.some((r) => /not JSON/i.test(r))).toBe(true);
  expect(reasons.some((r) => /unknown event type/.test(r))).toBe(true);
  expect(reasons.some((r) => /exceeds/.test(r))).toBe(true);
  expect(notSse).toBe(2);
  expect(storedBroken!.tcprx).toBe(2000);
  // The line never sits in memory: holding it would add ≥ HUGE_MB. The growth seen is bimodal, ~1.7 MB or ~17 MB
  // (same code, consecutive runs; cause not yet found — docs/reliability.md findings), so the bound is the line's half.
  expect(retainedDuringHugeLine - retainedBefore).toBeLessThan(HUGE_MB / 2);
  expect(healthyEventsDuring).toBeGreaterThan(0);
  expect(healthyContext.connections).toBe(1);
  expect(scan.duplicates).toBe(0);
  expect(scan.missing).toBe(0);
  expect(unhandled.count()).toBe(0);
});
