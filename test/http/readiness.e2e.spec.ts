/**
 * `/readyz` follows the database: the service reaches PostgreSQL through a TCP proxy the test cuts and restores.
 * Needs a PostgreSQL server (TEST_DATABASE_URL); the embedded database cannot be cut from outside.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { openDatabase } from '../../src/db/connection.js';
import { startService, type Service } from '../../src/service/service.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';

const databaseUrl = process.env['TEST_DATABASE_URL'];
const schema = `t_http_ready_${randomBytes(4).toString('hex')}`;
let proxy: TcpProxy | undefined;
let service: Service | undefined;
let dataDir: string | undefined;

afterAll(async () => {
  proxy?.restore();
  await service?.stop();
  await proxy?.close();
  if (databaseUrl) {
    const db = await openDatabase({ url: databaseUrl });
    await db.sql.unsafe(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await db.close();
  }
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

async function readyz(): Promise<{ status: number; body: any }> {
  const res = await fetch(`${service!.address}/readyz`);
  return { status: res.status, body: await res.json() };
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe.skipIf(!databaseUrl)('GET /readyz', () => {
  it('is 503 while the database does not answer and 200 again once it does', async () => {
    const target = new URL(databaseUrl!);
    proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    dataDir = mkdtempSync(join(tmpdir(), 'tp-http-ready-'));
    service = await startService(loadConfig({}, { databaseUrl: proxy.url(databaseUrl!), databaseSchema: schema, dataDir, port: 0, logLevel: 'silent' }));
    expect(await readyz()).toEqual({ status: 200, body: { status: 'ready', checks: { database: true, actorsRestored: true } } });

    proxy.cut('blackhole');
    await until('not ready (hung database)', async () => (await readyz()).status === 503);
    expect((await readyz()).body).toEqual({ status: 'not-ready', checks: { database: false, actorsRestored: true } });
    // Liveness is not readiness: the process still answers.
    expect((await fetch(`${service.address}/healthz`)).status).toBe(200);

    proxy.restore();
    await until('ready again', async () => (await readyz()).status === 200);
    proxy.cut('refuse');
    await until('not ready (refused)', async () => (await readyz()).status === 503);
    proxy.restore();
    await until('ready again after the refusal', async () => (await readyz()).status === 200, 30_000);
  });
});
