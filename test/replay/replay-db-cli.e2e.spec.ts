/**
 * `tunnelpulse replay … --db` as a command (the built dist/), into the embedded database in a folder of the
 * test's own (`--db embedded:<folder>`) and into a PostgreSQL schema (`--db <url> --db-schema`, with
 * TEST_DATABASE_URL): it prints the same report as the in-memory replay; then `tunnelpulse start` on that
 * database restores the replayed tunnels with the report's traffic, and does not try to connect to them.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/connection.js';
import type { ReplayReport } from '../../src/replay/report.js';
import { capturePath, REPO_ROOT } from '../support/replay-dsl.js';
import { startServiceProcess } from '../support/service-process.js';

const SERVER = process.env['TEST_DATABASE_URL'];
const CAPTURES = ['nodepass-s1-main-debug.sse', 'nodepass-s3-report-interval-1s.sse'].map(capturePath);

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

function tunnelpulse(args: string[], env: Record<string, string>): { stdout: string } {
  const stdout = execFileSync(process.execPath, [join(REPO_ROOT, 'bin/tunnelpulse.js'), ...args], {
    env: { PATH: process.env['PATH'] ?? '', ...env },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 120_000,
  });
  return { stdout };
}

describe('tunnelpulse replay --db', () => {
  const targets: Array<{ name: string; make: (dataDir: string) => { args: string[]; env: Record<string, string> } | null }> = [
    { name: 'embedded:<folder>', make: (dataDir) => ({ args: ['--db', `embedded:${join(dataDir, 'pglite')}`], env: {} }) },
    {
      name: 'a PostgreSQL schema',
      make: () => {
        if (!SERVER) return null;
        const schema = `t_${randomBytes(6).toString('hex')}`;
        cleanups.push(async () => {
          const admin = await openDatabase({ url: SERVER, max: 1 });
          await admin.sql.unsafe(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
          await admin.close();
        });
        return { args: ['--db', SERVER, '--db-schema', schema], env: { DATABASE_URL: SERVER, TUNNELPULSE_DATABASE_SCHEMA: schema } };
      },
    },
  ];

  for (const target of targets) {
    it(`${target.name}: the same report, and the service restores it`, async (ctx) => {
      const dataDir = mkdtempSync(join(tmpdir(), 'tp-replay-db-'));
      cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
      const t = target.make(dataDir);
      if (!t) return ctx.skip();
      const env = { TUNNELPULSE_DATA_DIR: dataDir };

      const inMemory = JSON.parse(tunnelpulse(['replay', ...CAPTURES, '--json'], env).stdout) as ReplayReport;
      const intoDb = JSON.parse(tunnelpulse(['replay', ...CAPTURES, '--json', ...t.args], env).stdout) as ReplayReport;
      expect(intoDb).toEqual(inMemory);
      expect(inMemory.endpoints.length).toBe(2);

      // The service on that database: the replayed endpoints are there (disabled), their tunnels restored.
      const svc = await startServiceProcess({
        dataDir,
        databaseUrl: t.env['DATABASE_URL'],
        schema: t.env['TUNNELPULSE_DATABASE_SCHEMA'],
        env: { TUNNELPULSE_LOG_LEVEL: 'warn' },
      });
      cleanups.push(async () => void (await svc.kill('SIGKILL')));
      const endpoints = await svc.getJson<Array<{ id: number; name: string }>>('/api/endpoints');
      expect(endpoints.map((e) => e.name).sort()).toEqual(inMemory.endpoints.map((e) => e.name).sort());
      for (const e of endpoints) {
        const expected = inMemory.endpoints.find((r) => r.name === e.name)!;
        const tunnels = await svc.getJson<Array<{ instanceId: string; traffic: unknown; logLines: number }>>(`/api/endpoints/${e.id}/tunnels`);
        expect(
          tunnels.map((x) => ({ instanceId: x.instanceId, traffic: x.traffic, logLines: x.logLines })).sort((a, b) => (a.instanceId < b.instanceId ? -1 : 1)),
        ).toEqual(expected.tunnels.map((x) => ({ instanceId: x.instanceId, traffic: x.traffic, logLines: x.logLines })));
      }
      expect(await svc.kill('SIGTERM')).toEqual({ code: 0, signal: null });
    }, 180_000);
  }
});
