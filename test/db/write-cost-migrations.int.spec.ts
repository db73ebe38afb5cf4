/**
 * Migrations 003 (room for HOT updates) and 004 (`tunnels.resume` as json) on a database that already holds
 * tunnels: nothing stored changes, and the store reads and writes the converted rows as before.
 */
import { describe, expect, it } from 'vitest';
import { loadMigrations, migrate } from '../../src/db/migrate.js';
import { Store } from '../../src/db/store.js';
import { useTestDatabase } from '../support/database.js';
import { bucket, configRecord, counters, HOUR, insertEndpoint, stateRecord, T0 } from './records.js';

const testDb = useTestDatabase({ migrate: false });

describe('migrations 003 and 004', () => {
  it('keep every stored tunnel, bucket and daily count, and the resume bookkeeping exactly', async () => {
    const before = loadMigrations().filter((m) => m.version <= 2);
    expect(before).toHaveLength(2);
    await migrate(testDb.sql, before);
    const endpointId = await insertEndpoint(testDb.sql, 'alpha');
    const store = new Store(testDb.db);
    // Values jsonb would normalise (key order, number spelling) must come back as the same objects.
    const resume = { z: 1, a: { last: counters(1e21, 0.5) }, list: [null, 'x"y\\z ✓'], empty: {} };
    await store.writeTunnelConfigs([configRecord(endpointId, 'aaaa0001', T0)]);
    await store.flushTunnelStates(
      [stateRecord(endpointId, 'aaaa0001', T0 + 1000, { resume }), stateRecord(endpointId, 'aaaa0002', T0 + 1000)],
      [bucket(endpointId, 'aaaa0001', T0, counters(5, 6, 7, 8))],
    );
    const stored = await store.loadTunnels();

    const report = await migrate(testDb.sql);
    expect(report.applied).toEqual(loadMigrations().filter((m) => m.version > 2).map((m) => `${String(m.version).padStart(3, '0')}_${m.name}`));
    expect(await store.loadTunnels()).toEqual(stored);
    const [column] = await testDb.sql<{ type: string; dflt: string }[]>`
      SELECT data_type AS type, column_default AS dflt FROM information_schema.columns
      WHERE table_schema = current_schema() AND table_name = 'tunnels' AND column_name = 'resume'`;
    expect(column).toEqual({ type: 'json', dflt: "'{}'::json" });
    const options = await testDb.sql<{ name: string; options: string[] | null }[]>`
      SELECT relname AS name, reloptions AS options FROM pg_class
      WHERE relnamespace = current_schema()::regnamespace
        AND relname IN ('tunnels', 'traffic_hourly_tunnel', 'log_daily_counts') ORDER BY relname`;
    expect(options).toEqual([
      { name: 'log_daily_counts', options: ['fillfactor=85'] },
      { name: 'traffic_hourly_tunnel', options: ['fillfactor=85'] },
      { name: 'tunnels', options: ['fillfactor=70'] },
    ]);

    // Written after the conversion: a newer state, a configuration without a baseline (the default resume).
    const newer = { ...resume, z: 2 };
    expect(await store.flushTunnelStates([stateRecord(endpointId, 'aaaa0001', T0 + 2000, { resume: newer })], [])).toMatchObject({ states: 1 });
    expect(await store.flushTunnelStates([stateRecord(endpointId, 'aaaa0001', T0 + 1500, { resume })], [])).toMatchObject({ states: 0 });
    await store.writeTunnelConfigs([configRecord(endpointId, 'aaaa0003', T0 + HOUR)]);
    const after = await store.loadTunnels();
    expect(after.map((t) => [t.instanceId, t.state?.resume ?? null])).toEqual([
      ['aaaa0001', newer],
      ['aaaa0002', stateRecord(endpointId, 'aaaa0002', 0).resume],
      ['aaaa0003', null],
    ]);
    const [raw] = await testDb.sql<{ resume: unknown }[]>`SELECT resume FROM tunnels WHERE instance_id = 'aaaa0003'`;
    expect(raw?.resume).toEqual({});
  });
});
