/**
 * Drill 8: counter edge cases and clock problems, against a ground truth.
 *
 * The drill moves every byte itself (`addTraffic` + `checkpoint` on the simulator, no random traffic), so it
 * knows exactly how much traffic each checkpoint carries and in which hour (of our clock) it was received:
 * that is the reference. The simulator reproduces NodePass's counter arithmetic, second-reset bug included.
 *  - tunnel A starts near 2^53 (counters 2^53 − 2^30), is reset twice (the second reset makes the master
 *    over-report: the jump), keeps moving;
 *  - tunnel B is reset once;
 *  - the master's clock runs an hour ahead of ours;
 *  - our clock steps backwards by 10 minutes;
 *  - an hour boundary (of our clock) is crossed while the database is unreachable.
 * Checked: no negative value anywhere, no traffic counted twice, every tunnel/hour bucket, every hourly rollup
 * (endpoint and global) and every lifetime total equal to the reference, after a rollup run twice.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { COUNTER_KEYS, type Counters } from '../../actors/model.js';
import { startSimulator, type SimulatorHandle } from '../../src/sim/simulator.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';
import { isLive, openDrillSchema, persistenceSettled, reportFigures, sleep, startPipeline, waitFor, type DrillSchema, type Pipeline } from './harness.js';

const HOUR = 3_600_000;
/** Our clock: a stepped clock the drill sets, starting at 10:58 on a fixed day. */
const H0 = Date.UTC(2026, 0, 15, 10);
const NEAR_2_53 = 2 ** 53 - 2 ** 30;

let schema: DrillSchema;
let proxy: TcpProxy;
let sim: SimulatorHandle;
let pipeline: Pipeline;

beforeAll(async () => {
  schema = await openDrillSchema('counters');
  const target = new URL(schema.url);
  proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
});

afterAll(async () => {
  proxy?.restore();
  await pipeline?.stop().catch(() => undefined);
  await sim?.close();
  await proxy?.close();
  await schema?.close();
});

const zero = (): Counters => ({ tcprx: 0, tcptx: 0, udprx: 0, udptx: 0 });
const add = (a: Counters, b: Counters): Counters => ({ tcprx: a.tcprx + b.tcprx, tcptx: a.tcptx + b.tcptx, udprx: a.udprx + b.udprx, udptx: a.udptx + b.udptx });

it('keeps traffic exact through resets, the second-reset jump, 2^53, a skewed and a backward clock, and an hour crossed offline', async () => {
  let ourNow = H0 + 58 * 60_000;
  const masterClock = () => Date.now() + HOUR; // the master is an hour ahead (and runs on real time)
  sim = await startSimulator({
    instances: [
      { id: 'a0000001', alias: 'near-2^53', url: 'server://127.0.0.1:19101/127.0.0.1:19201?mode=1', status: 'stopped', counters: { tcprx: NEAR_2_53, tcptx: NEAR_2_53, udprx: NEAR_2_53, udptx: NEAR_2_53 } },
      { id: 'b0000002', alias: 'plain', url: 'client://127.0.0.1:19101/127.0.0.1:20001?mode=2', status: 'stopped' },
    ],
    reportIntervalMs: 0,
    autoTraffic: false,
    lifecycleLogs: false,
    clock: masterClock,
    seed: 'drill-8',
  });
  const master = sim.master;
  pipeline = await startPipeline({ url: proxy.url(schema.url), schema: schema.schema, now: () => ourNow, persister: { stateFlushMs: 200, logFlushMs: 200 } });
  const ep = await pipeline.addEndpoint('m1', master.url, master.apiKey);
  await waitFor('live', () => isLive(pipeline.runtime, ep), 20_000);

  const reference = new Map<string, Map<number, Counters>>(); // instance → hour → bytes
  let totalSteps = 0;
  const arrived = (id: string) => async () => {
    const want = master.instance(id)!;
    await waitFor(`${id} counters delivered`, () => {
      const got = pipeline.runtime.tunnel(ep, id);
      return !!got && COUNTER_KEYS.every((k) => got.counters[k] === want[k]) && got.status === want.status;
    }, 10_000, 5);
  };
  /** Moves bytes through one checkpoint and books them in the reference under our clock's hour. */
  const move = async (id: string, bytes: Counters) => {
    master.addTraffic(id, bytes);
    master.checkpoint(id);
    await arrived(id)();
    const hour = Math.floor(ourNow / HOUR) * HOUR;
    const perHour = reference.get(id) ?? new Map<number, Counters>();
    perHour.set(hour, add(perHour.get(hour) ?? zero(), bytes));
    reference.set(id, perHour);
    totalSteps++;
  };
  const reset = async (id: string) => {
    master.resetCounters(id);
    await arrived(id)();
  };
  const b = (n: number): Counters => ({ tcprx: n, tcptx: n * 2 + 1, udprx: Math.floor(n / 3), udptx: n % 977 });

  for (const id of ['a0000001', 'b0000002']) {
    master.startInstance(id); // the run start is observed, so the jump's offset is known exactly
    await arrived(id)();
  }
  // Hour H0 (10:58 → 10:59).
  await move('a0000001', b(100_000));
  await move('b0000002', b(7_000));
  await reset('a0000001');
  await move('a0000001', b(250_000));
  await reset('b0000002');
  await move('b0000002', b(3_333));
  ourNow += 60_000;
  await reset('a0000001'); // the second reset of this run: the master will over-report the next checkpoint
  await move('a0000001', b(40_000));
  await move('b0000002', b(12_345));

  // The database goes away; our clock crosses into the next hour meanwhile.
  proxy.cut('refuse');
  ourNow = H0 + HOUR + 30_000;
  await move('a0000001', b(1_000_000));
  await move('b0000002', b(77));
  ourNow = H0 + HOUR + 20 * 60_000;
  await move('a0000001', b(555));
  ourNow -= 10 * 60_000; // our clock steps backwards
  await move('a0000001', b(999));
  await move('b0000002', b(4_242));
  await sleep(1_000); // flushes are attempted meanwhile, and cannot commit
  // Nothing of the new hour reached the database before it came back.
  const [offlineHour] = await schema.admin.sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM traffic_hourly_tunnel WHERE endpoint_id = ${ep} AND hour = to_timestamp(${(H0 + HOUR) / 1000})`;
  const refusedConnections = proxy.stats.refused;
  const dbErrors = pipeline.stats.snapshot().databaseErrors;
  proxy.restore();
  await waitFor('everything committed', () => persistenceSettled(pipeline), 60_000);

  // Close both hours: a rollup with our clock past them, twice (the second run must change nothing).
  ourNow = H0 + 2 * HOUR + 5 * 60_000;
  const first = await pipeline.persister.rollup();
  const second = await pipeline.persister.rollup();
  const memory = {
    a: pipeline.runtime.tunnel(ep, 'a0000001')!,
    b: pipeline.runtime.tunnel(ep, 'b0000002')!,
  };
  await pipeline.stop();

  const { sql } = schema.admin;
  const buckets = await sql<Array<Counters & { instance_id: string; hour: Date; closed: boolean }>>`
    SELECT instance_id, hour, tcprx, tcptx, udprx, udptx, closed FROM traffic_hourly_tunnel WHERE endpoint_id = ${ep} ORDER BY hour, instance_id`;
  const globals = await sql<Array<Counters & { hour: Date }>>`SELECT hour, tcprx, tcptx, udprx, udptx FROM traffic_hourly_global ORDER BY hour`;
  const endpointRows = await sql<Array<Counters & { hour: Date }>>`SELECT hour, tcprx, tcptx, udprx, udptx FROM traffic_hourly_endpoint WHERE endpoint_id = ${ep} ORDER BY hour`;
  const totals = await sql<Array<{ instance_id: string; tcprx: number; tcptx: number; udprx: number; udptx: number }>>`
    SELECT instance_id, traffic_tcprx AS tcprx, traffic_tcptx AS tcptx, traffic_udprx AS udprx, traffic_udptx AS udptx FROM tunnels WHERE endpoint_id = ${ep}`;
  const [negatives] = await sql<{ n: number }[]>`
    SELECT (SELECT count(*) FROM traffic_hourly_tunnel WHERE least(tcprx, tcptx, udprx, udptx) < 0)
         + (SELECT count(*) FROM traffic_hourly_global WHERE least(tcprx, tcptx, udprx, udptx) < 0)
         + (SELECT count(*) FROM tunnels WHERE least(traffic_tcprx, traffic_tcptx, traffic_udprx, traffic_udptx) < 0) AS n`;

  const referenceBuckets = [...reference.entries()].flatMap(([id, hours]) => [...hours.entries()].map(([hour, c]) => ({ instance_id: id, hour, ...c })));
  referenceBuckets.sort((x, y) => x.hour - y.hour || x.instance_id.localeCompare(y.instance_id));
  const referenceGlobal = new Map<number, Counters>();
  for (const r of referenceBuckets) referenceGlobal.set(r.hour, add(referenceGlobal.get(r.hour) ?? zero(), r));
  const referenceTotal = (id: string) => [...reference.get(id)!.values()].reduce(add, zero());
  const strip = (c: Counters) => ({ tcprx: c.tcprx, tcptx: c.tcptx, udprx: c.udprx, udptx: c.udptx });

  reportFigures('8-counters-and-clocks', {
    checkpoints: totalSteps,
    hours: referenceGlobal.size,
    buckets: buckets.length,
    negatives: negatives!.n,
    dbErrorsDuringOutage: dbErrors,
    refusedDbConnectionsDuringOutage: refusedConnections,
    rollupRowsFirst: first.rows,
    rollupRowsSecond: second.rows,
    masterReportsTcprxA: master.instance('a0000001')!.tcprx,
    anomaliesA: JSON.stringify(memory.a.anomalies),
    totalTcprxA: referenceTotal('a0000001').tcprx,
  });

  expect(offlineHour!.n).toBe(0);
  expect(refusedConnections).toBeGreaterThan(0); // the outage was real
  expect(negatives!.n).toBe(0);
  expect(buckets.map((r) => ({ instance_id: r.instance_id, hour: r.hour.getTime(), ...strip(r) }))).toEqual(referenceBuckets);
  expect(buckets.every((r) => r.closed)).toBe(true);
  expect(globals.map((g) => ({ hour: g.hour.getTime(), ...strip(g) }))).toEqual([...referenceGlobal.entries()].map(([hour, c]) => ({ hour, ...c })));
  expect(endpointRows.map((g) => ({ hour: g.hour.getTime(), ...strip(g) }))).toEqual([...referenceGlobal.entries()].map(([hour, c]) => ({ hour, ...c })));
  for (const t of totals) expect(strip(t), t.instance_id).toEqual(referenceTotal(t.instance_id));
  expect(strip(memory.a.traffic)).toEqual(referenceTotal('a0000001'));
  expect(strip(memory.b.traffic)).toEqual(referenceTotal('b0000002'));
  expect(second.rows).toBe(0);
});
