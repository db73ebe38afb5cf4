/**
 * The /inspect page in a real browser (Debian's Chromium, driven by playwright-core), against the real service:
 * `startService` (database, runtime, persistence supervisors, HTTP app with the inspect plugin) with a NodePass
 * simulator registered as an endpoint, and an access token (the page gets it once as `?token=`).
 *
 * It checks what an operator relies on: no console errors, the simulator's endpoint and tunnels in the live
 * tree, a tunnel's diagram with its active state highlighted, its context and recent events, traffic and logs,
 * untrusted aliases shown as text, and the highlight following the tunnel when it is stopped on the simulator.
 * A screenshot is kept in test-artifacts/inspect.png. Without Chromium the test fails: it never skips.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { startService, type Service } from '../../src/service/service.js';
import { startSimulator, type SimulatorHandle } from '../../src/sim/simulator.js';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];
const TOKEN = `inspect-test-${randomBytes(12).toString('hex')}`;
const XSS_ALIAS = '<img src=x onerror="window.__xss=1">edge & <b>bold</b>';
const ARTIFACTS = join(process.cwd(), 'test-artifacts');

describe('/inspect in Chromium', () => {
  let sim: SimulatorHandle;
  let service: Service;
  let browser: Browser;
  let dataDir: string;
  let schema: string | null = null;
  const consoleErrors: string[] = [];

  beforeAll(async () => {
    sim = await startSimulator({
      seed: 'inspect-page',
      reportIntervalMs: 500,
      logRate: 2,
      instances: [
        { id: 'a1b2c3d4', alias: 'web', url: 'server://:10101/127.0.0.1:8080' },
        { id: 'e5f6a7b8', alias: XSS_ALIAS, url: 'client://127.0.0.1:10101/127.0.0.1:8081' },
      ],
    });
    dataDir = mkdtempSync(join(tmpdir(), 'tp-inspect-'));
    const databaseUrl = process.env['TEST_DATABASE_URL'] ?? null;
    if (databaseUrl) schema = `t_inspect_${randomBytes(5).toString('hex')}`;
    const config = loadConfig({}, { host: '127.0.0.1', port: 0, dataDir, databaseUrl, databaseSchema: schema, accessToken: TOKEN, logLevel: 'silent', logFlushMs: 500, stateFlushMs: 500 });
    service = await startService(config);
    await service.registry.create({ name: 'sim', url: sim.master.url, apiKey: sim.master.apiKey });
  });

  afterAll(async () => {
    await browser?.close();
    await service?.stop();
    await sim?.close();
    if (schema && process.env['TEST_DATABASE_URL']) {
      const sql = postgres(process.env['TEST_DATABASE_URL'], { max: 1, onnotice: () => {} });
      await sql.unsafe(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await sql.end();
    }
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  const actorButton = (page: Page, id: string) => page.locator(`#tree button.actor[data-actor-id="${id}"]`);

  it('shows the live tree, the highlighted state, context, events, traffic and logs, and follows a stop', async () => {
    expect(existsSync(CHROMIUM), `Chromium is required at ${CHROMIUM} (apt-get install chromium; .ci/run installs it)`).toBe(true);
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    page.on('console', (message) => {
      if (message.type() === 'error') consoleErrors.push(message.text());
    });
    page.on('pageerror', (error) => consoleErrors.push(`pageerror: ${error.message}`));
    page.on('dialog', (dialog) => {
      consoleErrors.push(`unexpected dialog: ${dialog.message()}`);
      void dialog.dismiss();
    });
    // Nothing may leave loopback: every asset is served by the service itself.
    const outside: string[] = [];
    page.on('request', (request) => {
      const url = new URL(request.url());
      if (url.protocol !== 'data:' && url.hostname !== '127.0.0.1') outside.push(request.url());
    });

    await page.goto(`${service.address}/inspect?token=${TOKEN}`);
    // The token is kept for the tab and removed from the address bar.
    expect(page.url()).not.toContain(TOKEN);

    // The live tree: the fleet, the supervisors, the simulator's endpoint and both tunnels, with their states.
    await expect.poll(() => actorButton(page, 'endpoint:1').count(), { timeout: 20_000 }).toBe(1);
    await expect.poll(() => actorButton(page, 'tunnel:1/a1b2c3d4').count(), { timeout: 20_000 }).toBe(1);
    await expect.poll(() => actorButton(page, 'tunnel:1/e5f6a7b8').count(), { timeout: 20_000 }).toBe(1);
    for (const supervisor of ['configWriter', 'stateFlusher', 'logBatcher', 'hourlyRollup', 'retention']) {
      expect(await actorButton(page, supervisor).count()).toBe(1);
    }
    await expect.poll(() => actorButton(page, 'tunnel:1/a1b2c3d4').getAttribute('data-state'), { timeout: 20_000 }).toBe('running');
    await expect.poll(() => actorButton(page, 'endpoint:1').locator('.actor-label').textContent()).toBe('sim');

    // An alias is text, never markup.
    await expect.poll(() => actorButton(page, 'tunnel:1/e5f6a7b8').locator('.actor-label').textContent()).toBe(XSS_ALIAS);
    expect(await page.locator('#tree img, #tree b').count()).toBe(0);
    expect(await page.evaluate('window.__xss')).toBeUndefined();

    // Select a tunnel: its machine's diagram, with the active state highlighted.
    await actorButton(page, 'tunnel:1/a1b2c3d4').click();
    await expect.poll(() => page.locator('#diagram').getAttribute('data-machine'), { timeout: 10_000 }).toBe('tunnel');
    await expect.poll(() => page.locator('#diagram').getAttribute('data-active'), { timeout: 10_000 }).toBe('running');
    expect(await page.locator('#diagram svg g.active').evaluateAll((gs) => gs.map((g) => g.id))).toEqual(['state:running']);
    // Every state of the tunnel machine is on the picture.
    for (const state of ['pending', 'running', 'stopped', 'error', 'deleted']) {
      expect(await page.locator(`#diagram svg [id="state:${state}"]`).count()).toBe(1);
    }

    // Its context as JSON, and the events that reached it while watched.
    await expect.poll(async () => JSON.parse((await page.locator('#context').textContent()) || 'null')?.instanceId, { timeout: 10_000 }).toBe('a1b2c3d4');
    await expect.poll(() => page.locator('#events li').count(), { timeout: 15_000 }).toBeGreaterThan(0);
    expect(await page.locator('#events .event-type').first().textContent()).toBe('tunnel.observe');

    // Traffic over the last hours (one point per hour, the open hour included) and the latest log lines.
    await expect.poll(() => page.locator('#traffic svg').getAttribute('data-points'), { timeout: 20_000 }).toBe('24');
    expect(await page.locator('#traffic svg rect.rx').count()).toBe(24);
    await expect.poll(() => page.locator('#traffic-live').textContent(), { timeout: 10_000 }).toMatch(/^now: received .*\/s, sent .*\/s · total seen: received /);
    await expect.poll(() => page.locator('#logs tbody tr').count(), { timeout: 30_000 }).toBeGreaterThan(0);

    // Stop the instance on the simulator: the highlight moves to `stopped`.
    const response = await fetch(`${sim.master.apiBase}/instances/a1b2c3d4`, {
      method: 'PATCH',
      headers: { 'X-API-Key': sim.master.apiKey, 'Content-Type': 'application/json' },
      body: JSON.stringify({ action: 'stop' }),
    });
    expect(response.status).toBe(200);
    await expect.poll(() => page.locator('#diagram').getAttribute('data-active'), { timeout: 15_000 }).toBe('stopped');
    expect(await page.locator('#diagram svg g.active').evaluateAll((gs) => gs.map((g) => g.id))).toEqual(['state:stopped']);
    await expect.poll(() => actorButton(page, 'tunnel:1/a1b2c3d4').getAttribute('data-state')).toBe('stopped');
    // The stop reached the actor as an event, shown among the recent ones.
    await expect.poll(() => page.locator('#events li').count(), { timeout: 10_000 }).toBeGreaterThan(1);
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'inspect.png'), fullPage: false });

    // The endpoint's diagram highlights every active state of its nested and parallel states.
    await actorButton(page, 'endpoint:1').click();
    await expect.poll(() => page.locator('#diagram').getAttribute('data-machine'), { timeout: 10_000 }).toBe('endpoint');
    await expect.poll(async () => (await page.locator('#diagram').getAttribute('data-active'))?.split(' ') ?? [], { timeout: 10_000 }).toEqual(
      expect.arrayContaining(['enabled', 'enabled.online', 'enabled.online.live']),
    );
    expect(await page.locator('#tunnel-panel').isVisible()).toBe(true);
    await page.screenshot({ path: join(ARTIFACTS, 'inspect-endpoint.png'), fullPage: false });

    expect(outside).toEqual([]);
    expect(consoleErrors).toEqual([]);

    // XState inspection runs only while the page watches an actor.
    const status = async () => (await (await fetch(`${service.address}/inspect/api/status`, { headers: auth })).json()) as { clients: number; inspecting: boolean; watchedActors: string[] };
    expect(await status()).toMatchObject({ clients: 1, inspecting: true, watchedActors: ['endpoint:1'] });
    await page.close();
    await expect.poll(status, { timeout: 10_000 }).toMatchObject({ clients: 0, inspecting: false, watchedActors: [] });
  }, 120_000);

  const auth = { Authorization: `Bearer ${TOKEN}` };

  it('serves the page and its assets without data; data and the stream only with the token, never echoing it', async () => {
    const pageResponse = await fetch(`${service.address}/inspect`);
    expect(pageResponse.status).toBe(200);
    expect(pageResponse.headers.get('content-security-policy')).toContain("default-src 'self'");
    expect(await pageResponse.text()).toContain('/inspect/assets/inspect.js');
    expect((await fetch(`${service.address}/inspect/assets/inspect.js`)).status).toBe(200);
    expect((await fetch(`${service.address}/inspect/assets/inspect.css`)).status).toBe(200);
    // Only the page's own files are public; anything else under assets is neither public nor served.
    expect((await fetch(`${service.address}/inspect/assets/..%2F..%2F..%2Fpackage.json`)).status).toBe(401);
    expect((await fetch(`${service.address}/inspect/assets/..%2F..%2F..%2Fpackage.json`, { headers: auth })).status).toBe(404);

    const denied = await fetch(`${service.address}/inspect/api/actors`);
    expect(denied.status).toBe(401);
    expect(((await denied.json()) as { error: { code: string } }).error.code).toBe('UNAUTHORIZED');
    expect((await fetch(`${service.address}/inspect/api/machines/tunnel.svg`)).status).toBe(401);
    const actors = (await (await fetch(`${service.address}/inspect/api/actors`, { headers: auth })).json()) as { actors: { id: string; kind: string }[] };
    expect(actors.actors.filter((a) => a.kind === 'tunnel').map((a) => a.id).sort()).toEqual(['tunnel:1/a1b2c3d4', 'tunnel:1/e5f6a7b8']);
    const one = (await (await fetch(`${service.address}/inspect/api/actors/${encodeURIComponent('tunnel:1/a1b2c3d4')}`, { headers: auth })).json()) as { context: { instanceId: string } };
    expect(one.context.instanceId).toBe('a1b2c3d4');
    expect((await fetch(`${service.address}/inspect/api/actors/${encodeURIComponent('tunnel:1/none')}`, { headers: auth })).status).toBe(404);

    expect((await fetch(`${service.address}/inspect/api/stream?token=wrong-token-of-some-length`)).status).toBe(401);
    const controller = new AbortController();
    const stream = await fetch(`${service.address}/inspect/api/stream?token=${TOKEN}`, { signal: controller.signal });
    expect(stream.status).toBe(200);
    expect(stream.headers.get('content-type')).toContain('text/event-stream');
    const reader = stream.body!.getReader();
    let text = '';
    while (!text.includes('event: tree')) text += new TextDecoder().decode((await reader.read()).value);
    expect(text).not.toContain(TOKEN);
    controller.abort();
  });
});
