/**
 * Recovering from a database outage, through a cuttable TCP proxy on loopback (server only):
 *  - postgres.js's reconnects back off (src/db/reconnect-backoff.ts) while connections are accepted and closed
 *    at once, where postgres.js alone reconnects hundreds of times a second (measured beside it, as a control);
 *  - a supervisor whose write failed and that sits in a long retry backoff is woken by the persister's recovery
 *    probe as soon as the database answers again, instead of sleeping out its backoff.
 */
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../src/db/connection.js';
import { migrate } from '../../src/db/migrate.js';
import { DEFAULT_SUPERVISORS } from '../../src/runtime/runtime.js';
import { DEFAULT_PERSISTER_SETTINGS } from '../../src/persistence/persister.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';
import { createEndpointRow, logLine, startPersistence, storeOf } from './harness.js';

const SERVER = process.env['TEST_DATABASE_URL'];
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, probe: () => Promise<boolean> | boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

async function setUp(): Promise<{ direct: Database; proxied: Database; proxy: TcpProxy }> {
  const schema = `t_${randomBytes(6).toString('hex')}`;
  const direct = await openDatabase({ url: SERVER!, schema, max: 2 });
  cleanups.push(async () => {
    await direct.sql.unsafe(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await direct.close();
  });
  await migrate(direct.sql);
  const target = new URL(SERVER!);
  const proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
  cleanups.push(() => proxy.close());
  const proxied = await openDatabase({ url: proxy.url(SERVER!), schema, max: 2 });
  cleanups.push(() => proxied.sql.end({ timeout: 0 }));
  return { direct, proxied, proxy };
}

describe.skipIf(!SERVER)('recovery from an outage', () => {
  it('reconnects back off while connections are accepted and dropped at once; queries work again after', async () => {
    const { proxied, proxy } = await setUp();
    expect((await proxied.sql<{ one: number }[]>`SELECT 1 AS one`)[0]!.one).toBe(1);

    // A caller that retries at once whenever a query fails, for `ms`: the worst case for a reconnect storm.
    // (Whether a dropped connection fails its query or postgres.js keeps it for the next connection depends on
    // whether the startup message reached the proxy before it closed: both happen.)
    const hammer = async (sql: postgres.Sql, ms: number) => {
      const until = Date.now() + ms;
      let failed = 0;
      let answered = 0;
      const one = async () => {
        try {
          await sql`SELECT 1`;
          answered++;
        } catch {
          failed++;
        }
      };
      while (Date.now() < until) await Promise.race([one(), sleep(until - Date.now())]);
      return { failed, answered };
    };

    proxy.cut('refuse');
    // Let the pooled connection see its reset first.
    await sleep(300);
    const before = proxy.stats.refused;
    const oursResult = await hammer(proxied.sql as unknown as postgres.Sql, 2_000);
    const ours = proxy.stats.refused - before;

    // Control: postgres.js on its own, same proxy, a quarter of the time.
    const control = postgres(proxy.url(SERVER!), { max: 1, onnotice: () => {}, fetch_types: false });
    const controlBefore = proxy.stats.refused;
    await hammer(control, 500);
    const controlAttempts = proxy.stats.refused - controlBefore;

    proxy.restore();
    const restoredAt = Date.now();
    let one = 0;
    while (one !== 1 && Date.now() - restoredAt < 5_000) {
      one = await proxied.sql<{ one: number }[]>`SELECT 1 AS one`.then((rows) => rows[0]!.one, () => 0);
    }
    const landedMs = Date.now() - restoredAt;
    await control.end({ timeout: 0 }).catch(() => {});
    process.stderr.write(
      `reconnects while dropped: ours ${ours} in 2 s (${oursResult.failed} queries failed), postgres.js alone ${controlAttempts} in 0.5 s; ` +
        `a query answered ${landedMs} ms after restore\n`,
    );

    expect(one).toBe(1);
    expect(oursResult.answered).toBe(0);
    expect(ours).toBeGreaterThan(0);
    expect(ours).toBeLessThanOrEqual(25);
    // Per second, postgres.js alone tries far more often (hundreds a second on an idle box).
    expect(controlAttempts * 4).toBeGreaterThan(ours * 10);
  });

  it('a supervisor in a long retry backoff is woken by the recovery probe once the database answers', async () => {
    const { direct, proxied, proxy } = await setUp();
    const endpointId = await createEndpointRow(direct.sql, 'recovery');
    const RETRY_MS = 20_000;
    const settings = { ...DEFAULT_PERSISTER_SETTINGS, logFlushMs: 100, recoveryProbeMs: 200 };
    const h = startPersistence(storeOf(proxied.sql), {
      settings,
      supervisors: {
        ...DEFAULT_SUPERVISORS(settings),
        logBatcher: { name: 'logBatcher', batchSize: 100, intervalMs: 100, retryBaseMs: RETRY_MS, retryCapMs: RETRY_MS },
      },
    });
    cleanups.push(() => h.stop());
    const stored = async () => (await direct.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM tunnel_logs`)[0]!.n;

    h.persister.tunnelEffects.queueLog(undefined, logLine(endpointId, 'aaaa0001', 1, Date.now()));
    await waitFor('the first line stored', async () => (await stored()) === 1, 10_000);

    // Hold the next insert inside PostgreSQL, then cut the connection under it: the write fails.
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let locked!: () => void;
    const isLocked = new Promise<void>((r) => (locked = r));
    const holder = direct.sql.begin(async (tx) => {
      await tx`LOCK TABLE tunnel_logs IN EXCLUSIVE MODE`;
      locked();
      await released;
    });
    await isLocked;
    h.persister.tunnelEffects.queueLog(undefined, logLine(endpointId, 'aaaa0001', 2, Date.now()));
    await waitFor('the insert to be waiting on the lock', async () => {
      const [row] = await direct.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted`;
      return row!.n > 0;
    }, 10_000);
    proxy.cut('refuse');
    await waitFor('the log batcher to be in its retry backoff', () => h.supervisor('logBatcher').value === 'retrying', 10_000);
    release();
    await holder;
    await sleep(1_000); // the outage goes on: the probe finds the database unreachable

    proxy.restore();
    const restoredAt = Date.now();
    await waitFor('the backlog to drain', () => h.persister.pendingRows === 0 && !h.persister.busy, RETRY_MS / 2);
    const drainedMs = Date.now() - restoredAt;
    process.stderr.write(`woken by the probe: drained ${drainedMs} ms after restore (retry backoff ${RETRY_MS} ms)\n`);
    expect(await stored()).toBe(2); // the retried batch inserted nothing twice
    expect(h.supervisor('logBatcher').context['failures']).toBeGreaterThanOrEqual(1);
    expect(h.supervisor('logBatcher').value).not.toBe('retrying');
  });
});
