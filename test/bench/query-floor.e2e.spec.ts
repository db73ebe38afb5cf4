/**
 * The query probe's floor (bench `floor` column): the probe asks the measured server and an idle floor server on
 * separate connections in the same window, and reports each loop's latency apart. Real sockets and processes: the
 * floor server is the benchmark's own child process, the measured server answers every request 25 ms late.
 */
import { createServer, type Server } from 'node:http';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnFloorServer, type FloorServer } from '../../src/bench/floor-server.js';
import { probe } from '../../src/bench/query-child.js';

const DELAY_MS = 25;
/** The child runs the built file, as the benchmark does (`npm test` builds first). */
const FLOOR_SCRIPT = fileURLToPath(new URL('../../dist/src/bench/floor-server.js', import.meta.url));

describe('query probe with a floor', () => {
  let slow: Server;
  let slowUrl = '';
  let floor: FloorServer;

  beforeAll(async () => {
    slow = createServer((req, res) => {
      req.resume();
      setTimeout(() => res.end('{}'), DELAY_MS);
    });
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
    const address = slow.address();
    slowUrl = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    floor = await spawnFloorServer({ bodyBytes: 900 }, FLOOR_SCRIPT);
  });

  afterAll(async () => {
    floor?.stop();
    await new Promise((resolve) => slow?.close(resolve));
  });

  it('serves a JSON reply of the asked size', async () => {
    const reply = await fetch(floor.url);
    expect(reply.status).toBe(200);
    const body = await reply.text();
    expect(Buffer.byteLength(body)).toBe(900);
    expect(JSON.parse(body)).toHaveProperty('pad');
  });

  it('measures the two loops apart, at the same rate, in the same window', async () => {
    const result = await probe({ baseUrl: slowUrl, paths: ['/t/1', '/t/2'], durationMs: 1_500, rate: 20, floorUrl: floor.url });
    expect(result.errors + result.notOk).toBe(0);
    expect(result.requests).toBeGreaterThan(5);
    // The slow server's delay shows in its loop only.
    expect(result.p50Ms).toBeGreaterThanOrEqual(DELAY_MS);
    expect(result.floor).toBeDefined();
    expect(result.floor!.requests).toBeGreaterThan(5);
    expect(result.floor!.p50Ms).toBeLessThan(DELAY_MS);
    // Paced at the same rate: the idle loop is not faster than asked.
    expect(result.floor!.requests).toBeLessThanOrEqual(Math.ceil(1.5 * 20) + 1);
  });
});
