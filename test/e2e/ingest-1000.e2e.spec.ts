/**
 * The 1,000-endpoint check (issue 4, "done when"): 1,000 masters served by one `tunnelpulse sim` child process,
 * registered and streamed from this one process through the real registry, Runtime and Persister on a real
 * database. Prints the figures (time to all live, RSS, open fds) for docs/performance.md.
 *
 * Heavy for a shared 2-core machine, so it runs only when asked:
 *   TUNNELPULSE_SCALE=1 TEST_DATABASE_URL=… npx vitest run test/e2e/ingest-1000.e2e.spec.ts
 * It needs a build (`npm run build`): the simulator runs as `node bin/tunnelpulse.js sim`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import type { SimReadyLine } from '../../src/sim/command.js';
import { useTestDatabase } from '../support/database.js';
import { startIngest, waitFor, type Ingest } from './support/ingest.js';

const ENDPOINTS = 1_000;
const CLI = fileURLToPath(new URL('../../bin/tunnelpulse.js', import.meta.url));
const testDb = useTestDatabase();
let child: ChildProcess | undefined;
let ingest: Ingest | undefined;

afterAll(async () => {
  await ingest?.stop();
  child?.kill('SIGTERM');
});

const openFds = (): number => readdirSync('/proc/self/fd').length;
const fdLimit = (): string => readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'))?.replace(/\s+/g, ' ') ?? '?';
const rssMb = (): number => Math.round(process.memoryUsage().rss / 1048576);

describe.runIf(process.env['TUNNELPULSE_SCALE'] === '1')('1,000 endpoints from one process', () => {
  it('registers and streams all of them, every tunnel live', { timeout: 180_000 }, async () => {
    child = spawn(process.execPath, [CLI, 'sim', '--masters', String(ENDPOINTS), '--instances', '2', '--interval', '5000', '--seed', 'scale-1000'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const ready = await new Promise<SimReadyLine>((resolve, reject) => {
      child!.once('exit', (code) => reject(new Error(`sim exited with ${code}`)));
      createInterface({ input: child!.stdout! }).on('line', (line) => {
        const parsed = JSON.parse(line) as { type: string };
        if (parsed.type === 'ready') resolve(parsed as SimReadyLine);
      });
    });
    expect(ready.masters).toHaveLength(ENDPOINTS);

    const before = { rss: rssMb(), fds: openFds() };
    ingest = await startIngest(testDb, {
      // Production liveness timings, short backoff so an early refusal does not dominate the figure.
      backoffBaseMs: 200,
      backoffCapMs: 2_000,
    });
    const i = ingest;
    const started = Date.now();
    const ids: number[] = [];
    for (const m of ready.masters) ids.push((await i.add(m.name, m.url, m.apiKey)).id);
    const registeredMs = Date.now() - started;
    await waitFor('every stream live', () => ids.every((id) => i.stateOf(id) === 'streaming'), 120_000, 200);
    const liveMs = Date.now() - started;
    await waitFor('every tunnel seen', () => ids.every((id) => i.runtime.tunnels(id).length === 2), 60_000, 200);
    // One report interval later every running tunnel has had a checkpoint update over its stream.
    const updatesAt = (): number => i.runtime.endpoints().reduce((n, e) => n + (e.events.byType['update'] ?? 0), 0);
    await waitFor('a checkpoint round', () => updatesAt() >= 2 * ENDPOINTS, 30_000, 200);
    const after = { rss: rssMb(), fds: openFds() };

    const contexts = i.runtime.endpoints();
    expect(contexts.every((c) => c.connections === 1)).toBe(true);
    expect(contexts.reduce((n, c) => n + c.events.rejected, 0)).toBe(0);
    await i.persister.drain();
    expect(await i.store.loadTunnels()).toHaveLength(2 * ENDPOINTS);

    // A restart: every endpoint restored from the database at once (as `startService` does), all connecting together.
    await i.stop();
    ingest = await startIngest(testDb, { backoffBaseMs: 200, backoffCapMs: 2_000 });
    const r = ingest;
    const restartAt = Date.now();
    expect(await r.registry.restoreAll()).toEqual({ endpoints: ENDPOINTS, unreadableKeys: [] });
    const restoredMs = Date.now() - restartAt;
    await waitFor('every stream live again', () => ids.every((id) => r.stateOf(id) === 'streaming'), 120_000, 100);
    const restartLiveMs = Date.now() - restartAt;
    expect(r.runtime.endpoints().every((c) => c.connections === 1 && Object.keys(c.tunnels).length === 2)).toBe(true);
    console.info(
      JSON.stringify({
        endpoints: ENDPOINTS,
        registeredMs,
        allLiveMs: liveMs,
        restart: { restoredMs, allLiveMs: restartLiveMs, rssMb: rssMb(), fds: openFds() },
        rssMb: { before: before.rss, after: after.rss },
        fds: { before: before.fds, after: after.fds },
        fdLimit: fdLimit(),
      }),
    );
  });
});
