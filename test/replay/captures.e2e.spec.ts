/**
 * `replayFiles` / `tunnelpulse replay --json` over every real capture in fixtures/captures, with every
 * expected value worked out by hand from the capture files (event listings made with throwaway scripts),
 * applying PROTOCOL §5–§7 and the counter rules documented at the top of actors/traffic.ts:
 *   rule 1: the first sample of a tunnel is a baseline (counts nothing); later samples count against the
 *           last accepted one, across reconnects too;
 *   rule 2: a decrease is a reset: the delta is the new value;
 *   rule 3: all four at 0 after any > 0 is the `reset` action (delta 0); after the 2nd reset of a process
 *           run the first non-zero sample is reduced by O = P₁ − base (base 0 when the run start was not
 *           observed), after the n-th (n ≥ 3) by O = Pₙ₋₁;
 *   rule 4: stopped → running starts a new process run (base = counters then, reset count 0).
 * Statuses come from every event with an instance, `log` included (§5.6); the first status seen counts as
 * a status change (from "unknown"). Times are the events' own `time`, which JS keeps to the millisecond
 * (truncated: `09:15:35.08384076Z` → `09:15:35.083Z`).
 *
 * The last two describe blocks are bug reports: they assert the correct values and fail against the
 * current code (same-named files merged into one endpoint; resets and starts inferred from lost events
 * not fed into the reset bookkeeping of traffic.ts).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { replayFiles } from '../../src/replay/replay.js';
import {
  apiKeyRecord,
  capturePath,
  connection,
  counters,
  givenCaptures,
  instance,
  rawFrame,
  removeTmpCaptures,
  REPO_ROOT,
  sseFrame,
  writeTmpCapture,
  type ExpectedEndpoint,
  type ExpectedTunnel,
} from '../support/replay-dsl.js';

const S1 = 'nodepass-s1-main-debug.sse';
const S1_TS = 'nodepass-s1-main-debug.timestamped.txt';
const S1_ROTATED = 'nodepass-s1-after-key-rotation.sse';
const S1_RESTARTED = 'nodepass-s1-after-master-restart.sse';
const S1_SECOND = 'nodepass-s1-second-subscriber.sse';
const S2 = 'nodepass-s2-info-level.sse';
const S2_TS = 'nodepass-s2-info-level.timestamped.txt';
const S3 = 'nodepass-s3-report-interval-1s.sse';

afterAll(removeTmpCaptures);

const S1_MASTER = '1ab781946d30b9c8'; // config of `********` in every s1 capture
const NO_META = { peer: { sid: '', type: '', alias: '' }, tags: {} };
const S1_SERVER_META = { peer: { sid: '550e8400-e29b-41d4-a716-446655440000', type: '2', alias: 'peer-x' }, tags: { env: 'test', owner: 'steering' } };
const S1_SERVER_URL = 'server://127.0.0.1:19100/127.0.0.1:19200?log=debug&max=16&mode=1';

/**
 * Server a236701f over recording s1 (from nodepass-s1-main-debug.sse; the timestamped copy carries the
 * same payloads, only fewer log events).
 * Counters (update/log payloads in wire order; per-instance times never go backwards in s1):
 *   create 0 (baseline, rule 1) → 09:15:51.159 655360/655360/10240/10240 (+655360, +10240)
 *   → 09:16:17.835 819200/…/12800 (+163840, +2560) → 09:16:37.836 849200/…/13300 (+30000, +500); no reset,
 *   no decrease, the action restart at 09:16:04 keeps the counters (§6). traffic = 849200/849200/13300/13300,
 *   the same bytes the client saw (both ends count the target-side bytes, §6).
 * Status (log events included): create stopped 09:15:35.082617241 → update running .08384076 →
 *   restart: stopped 09:16:04.781326062, running 09:16:04.882108596 → the client's stop makes the
 *   server's log say "Server error:" at 09:16:51.655427476 (error, no update, §5.6) → checkpoint running
 *   09:17:03.730474797 → error (log) 09:17:15.692497394 → running 09:17:18.855976 → error (log)
 *   09:17:26.084550094, still error at the end (the after-key-rotation `initial` confirms it).
 */
const S1_SERVER_COMMON = {
  alias: 'np-server-renamed', // PATCH alias at 09:16:00.750
  type: 'server',
  url: S1_SERVER_URL,
  meta: S1_SERVER_META, // PATCH meta at 09:16:00.757
  status: 'error',
  deleted: false,
  counters: counters(849200, 849200, 13300, 13300),
  traffic: counters(849200, 849200, 13300, 13300),
} satisfies ExpectedTunnel;
const S1_SERVER_STATUS: Array<[string, string]> = [
  ['2026-11-26T09:15:35.082Z', 'stopped'],
  ['2026-11-26T09:15:35.083Z', 'running'],
  ['2026-11-26T09:16:04.781Z', 'stopped'],
  ['2026-11-26T09:16:04.882Z', 'running'],
  ['2026-11-26T09:16:51.655Z', 'error'],
  ['2026-11-26T09:17:03.730Z', 'running'],
  ['2026-11-26T09:17:15.692Z', 'error'],
  ['2026-11-26T09:17:18.855Z', 'running'],
  ['2026-11-26T09:17:26.084Z', 'error'],
];

/**
 * Client 5cc1f9b2 over recording s1.
 * Counters: create running 0 (baseline; its run start is not observed, ctx status was unknown, so runBase
 *   is null) → 09:15:51.159 655360/…/10240 (+655360, +10240) → 09:16:17.835 819200/…/12800 (+163840,
 *   +2560) → 09:16:28.471 all 0: reset #1 (rule 3, delta 0; P₁ = 819200/…/12800) → 09:16:37.836
 *   30000/30000/500/500 (+30000, +500: exact after a 1st reset) → 09:16:40.635 all 0: reset #2, so
 *   O = P₁ − base = 819200 − 0 (the master set base 0 at create, so the assumed 0 is also the truth) →
 *   09:16:42.835 819200/…/12800 is the §6 jump: 819200 − 0 − O = 0 counted (and no traffic really moved:
 *   the server, which was not reset, stayed at 849200 then). Then stop/start/PUT keep 819200 (rule 4 just
 *   re-bases the run). traffic = 655360 + 163840 + 30000 = 849200 (tcp), 10240 + 2560 + 500 = 13300 (udp),
 *   equal to the server's, as it must be. Last counters = 819200/819200/12800/12800 (the `delete` payload).
 * Status: create running 09:15:36.099250267 → the server restart breaks the client: a log at
 *   09:16:04.781860883 shows error → checkpoint running 09:16:07.835092623 → stop 09:16:51.655533573 →
 *   start 09:17:03.672000613 → PUT: stopped 09:17:15.692700763, running 09:17:15.795702704 → error (log,
 *   "Client error: … tunnelHandshake failed") 09:17:15.802555365 → running 09:17:18.856099959 → DELETE:
 *   stopped 09:17:26.084664606, then `delete` (stopped, no change) at 09:17:26.084668742.
 */
const S1_CLIENT_COMMON = {
  alias: 'np-client',
  type: 'client',
  url: 'client://127.0.0.1:19100/127.0.0.1:19001?log=debug&min=8&mode=2', // min=8 since the PUT
  meta: NO_META,
  status: 'stopped',
  deleted: true,
  counters: counters(819200, 819200, 12800, 12800),
  traffic: counters(849200, 849200, 13300, 13300),
} satisfies ExpectedTunnel;
const S1_CLIENT_STATUS: Array<[string, string]> = [
  ['2026-11-26T09:15:36.099Z', 'running'],
  ['2026-11-26T09:16:04.781Z', 'error'],
  ['2026-11-26T09:16:07.835Z', 'running'],
  ['2026-11-26T09:16:51.655Z', 'stopped'],
  ['2026-11-26T09:17:03.672Z', 'running'],
  ['2026-11-26T09:17:15.692Z', 'stopped'],
  ['2026-11-26T09:17:15.795Z', 'running'],
  ['2026-11-26T09:17:15.802Z', 'error'],
  ['2026-11-26T09:17:18.856Z', 'running'],
  ['2026-11-26T09:17:26.084Z', 'stopped'],
];

/**
 * nodepass-s1-main-debug.sse: 628 data frames = initial 1 (`********` only: the master was fresh) +
 * create 2 + update 54 + delete 1 + log 569 + shutdown 1 (PROTOCOL §5.5 gives the same counts). Logs by
 * instance: 324 for a236701f, 245 for 5cc1f9b2 (324 + 245 = 569), no byte-identical repeats, and no event
 * after the client's `delete` is for the client (the last two logs, 09:17:29.086, are the server's).
 * One connection; it ends with `shutdown` (09:17:29.103582922) and EOF, so the endpoint is left
 * disconnected since then, and there is no closed offline interval.
 */
const S1_EXPECTED: ExpectedEndpoint = {
  masterId: S1_MASTER,
  connections: 1,
  offline: [],
  disconnectedSince: '2026-11-26T09:17:29.103Z',
  events: { total: 628, byType: { create: 2, delete: 1, initial: 1, log: 569, shutdown: 1, update: 54 }, rejected: 0 },
  tunnels: {
    a236701f: { ...S1_SERVER_COMMON, logLines: 324, statusChanges: S1_SERVER_STATUS },
    '5cc1f9b2': { ...S1_CLIENT_COMMON, logLines: 245, statusChanges: S1_CLIENT_STATUS },
  },
};

describe('replay of each real capture', () => {
  it('nodepass-s1-main-debug.sse: reset bug, restart, stop/start, PUT, DELETE, key rotation', () => {
    givenCaptures(S1).whenReplayed().thenEndpoint(S1, S1_EXPECTED).thenEvents({
      total: 628,
      rejected: 0,
      ignoredAfterTombstone: 0, // nothing for 5cc1f9b2 after its delete
      duplicateLogLines: 0,
    });
  });

  it('nodepass-s1-main-debug.timestamped.txt: the same stream from a second subscriber that lost 22 log lines', () => {
    // 607 data frames. Compared frame by frame (type, time, logs) with the .sse: same payloads where both have
    // a frame, same order, but
    //  - its own `initial` (09:15:34.154381208 instead of .054947825) and `shutdown` (.103810571 instead of .103582922);
    //  - 22 log frames missing (dropped by the master's 10-slot subscriber buffer in debug bursts, §7):
    //    7 at 09:15:49.7289–.7290 and 15 at 09:16:17.4463–.4478; 13 of them the server's (324 → 311),
    //    9 the client's (245 → 236). None of them changed a status or a counter (the change points of
    //    both listings are identical), so statuses and traffic are the same as the .sse's;
    //  - one extra `update` for `********` at 09:17:29.10350852 (alias test-master, new key): the key
    //    rotation update that §2 says is "normally lost" reached this subscriber. Same config = master id.
    // So: update 54 + 1 = 55, log 569 − 22 = 547, total 628 − 22 + 1 = 607.
    // Offline: the `shutdown` is at 09:17:29.103810571 (the EOF header at epoch 1795684649.104 = .104 comes after).
    givenCaptures(S1_TS).whenReplayed().thenEndpoint(S1_TS, {
      ...S1_EXPECTED,
      events: { total: 607, byType: { create: 2, delete: 1, initial: 1, log: 547, shutdown: 1, update: 55 }, rejected: 0 },
      tunnels: {
        a236701f: { ...S1_SERVER_COMMON, logLines: 311, statusChanges: S1_SERVER_STATUS },
        '5cc1f9b2': { ...S1_CLIENT_COMMON, logLines: 236, statusChanges: S1_CLIENT_STATUS },
      },
    });
  });

  it('nodepass-s1-second-subscriber.sse: a snapshot joined mid-run is a baseline, and the stream ends without shutdown', () => {
    // initial 5cc1f9b2 (running, 655360/655360/10240/10240), initial ******** (2nd of 3: random order),
    // initial a236701f (running, already renamed and with meta, same counters) at 09:16:00.7736–.7737, then one
    // checkpoint each at 09:16:01.159 with unchanged counters. Rule 1: the initial values are baselines, and
    // nothing moves after → traffic 0 (we never assume the first value is 0, §6). No shutdown: EOF, and the
    // capture has no close time, so the endpoint is disconnected since its last event (09:16:01.15957827).
    givenCaptures(S1_SECOND).whenReplayed().thenEndpoint(S1_SECOND, {
      masterId: S1_MASTER,
      connections: 1,
      offline: [],
      disconnectedSince: '2026-11-26T09:16:01.159Z',
      events: { total: 5, byType: { initial: 3, update: 2 }, rejected: 0 },
      tunnels: {
        a236701f: {
          alias: 'np-server-renamed', type: 'server', url: S1_SERVER_URL, meta: S1_SERVER_META, status: 'running', deleted: false,
          counters: counters(655360, 655360, 10240, 10240), traffic: counters(0, 0, 0, 0), logLines: 0,
          statusChanges: [['2026-11-26T09:16:00.773Z', 'running']],
        },
        '5cc1f9b2': {
          alias: 'np-client', type: 'client', url: 'client://127.0.0.1:19100/127.0.0.1:19001?log=debug&min=4&mode=2', status: 'running',
          deleted: false, counters: counters(655360, 655360, 10240, 10240), traffic: counters(0, 0, 0, 0), logLines: 0,
          statusChanges: [['2026-11-26T09:16:00.773Z', 'running']],
        },
      },
    });
  });

  it('nodepass-s1-after-key-rotation.sse: the server in error, the client already gone', () => {
    // initial ******** (alias test-master, config 1ab781946d30b9c8), initial a236701f error 849200/…/13300 at
    // 09:17:31.125514321 (baseline → traffic 0), shutdown 09:17:39.124609345. The client is simply absent.
    givenCaptures(S1_ROTATED).whenReplayed().thenEndpoint(S1_ROTATED, {
      masterId: S1_MASTER,
      connections: 1,
      offline: [],
      disconnectedSince: '2026-11-26T09:17:39.124Z',
      events: { total: 3, byType: { initial: 2, shutdown: 1 }, rejected: 0 },
      tunnels: {
        a236701f: {
          ...S1_SERVER_COMMON, traffic: counters(0, 0, 0, 0), logLines: 0,
          statusChanges: [['2026-11-26T09:17:31.125Z', 'error']],
        },
      },
    });
  });

  it('nodepass-s1-after-master-restart.sse: restored counters in the snapshot, then 14 s of silence', () => {
    // initial ******** (config 1ab781946d30b9c8), initial a236701f running 849200/…/13300 at 09:17:41.139935893
    // (the counters survived the master restart, §6; baseline → traffic 0), shutdown 09:17:55.248194992.
    givenCaptures(S1_RESTARTED).whenReplayed().thenEndpoint(S1_RESTARTED, {
      masterId: S1_MASTER,
      connections: 1,
      offline: [],
      disconnectedSince: '2026-11-26T09:17:55.248Z',
      events: { total: 3, byType: { initial: 2, shutdown: 1 }, rejected: 0 },
      tunnels: {
        a236701f: {
          ...S1_SERVER_COMMON, status: 'running', traffic: counters(0, 0, 0, 0), logLines: 0,
          statusChanges: [['2026-11-26T09:17:41.139Z', 'running']],
        },
      },
    });
  });

  /**
   * Recording s2 (log=info), 47 frames: initial 1 (`********`, config bb3e2a4b6ffeaa68), create 3, update 12,
   * delete 3, log 27 (1a9d44a2: 9, 647aee52: 17, 715a8240: 1), shutdown 1 at 09:19:32.193943258.
   *  - 1a9d44a2 single-end client: create stopped 09:19:02.004147628 (0, baseline) → running .005138553 →
   *    0 … → 09:19:17.014 80000/80000/1800/1800 (+80000, +1800) → unchanged → stopped 09:19:30.172998073 →
   *    delete. traffic 80000/80000/1800/1800.
   *  - 715a8240 log=event server waiting for its client: create stopped 09:19:02.019950202 → running
   *    .021524565 → no checkpoint ever (§5.5), its only log is "Init log level: EVENT" → stopped
   *    09:19:30.182174156 → delete. All counters 0.
   *  - 647aee52 broken server (port in use): create stopped 09:19:02.034274398 → running .03570355 → its
   *    log at .042715498 says error ("Server error: … address already in use", no update, §5.6), every later
   *    log stays error → stop gives update stopped 09:19:24.160753465 → delete. All counters 0.
   */
  const S2_TUNNELS: Record<string, ExpectedTunnel> = {
    '1a9d44a2': {
      alias: 'single-end', type: 'client', url: 'client://127.0.0.1:19300/127.0.0.1:19001?log=info&mode=1', meta: NO_META,
      status: 'stopped', deleted: true, counters: counters(80000, 80000, 1800, 1800), traffic: counters(80000, 80000, 1800, 1800),
      logLines: 9,
      statusChanges: [['2026-11-26T09:19:02.004Z', 'stopped'], ['2026-11-26T09:19:02.005Z', 'running'], ['2026-11-26T09:19:30.172Z', 'stopped']],
    },
    '715a8240': {
      alias: 'event-only', type: 'server', url: 'server://127.0.0.1:19110/127.0.0.1:19210?log=event&mode=1', meta: NO_META,
      status: 'stopped', deleted: true, counters: counters(0, 0, 0, 0), traffic: counters(0, 0, 0, 0), logLines: 1,
      statusChanges: [['2026-11-26T09:19:02.019Z', 'stopped'], ['2026-11-26T09:19:02.021Z', 'running'], ['2026-11-26T09:19:30.182Z', 'stopped']],
    },
    '647aee52': {
      alias: 'broken', type: 'server', url: 'server://127.0.0.1:19090/127.0.0.1:19220?log=info&mode=1', meta: NO_META,
      status: 'stopped', deleted: true, counters: counters(0, 0, 0, 0), traffic: counters(0, 0, 0, 0), logLines: 17,
      statusChanges: [
        ['2026-11-26T09:19:02.034Z', 'stopped'],
        ['2026-11-26T09:19:02.035Z', 'running'],
        ['2026-11-26T09:19:02.042Z', 'error'],
        ['2026-11-26T09:19:24.160Z', 'stopped'],
      ],
    },
  };
  const S2_EVENTS = { total: 47, byType: { create: 3, delete: 3, initial: 1, log: 27, shutdown: 1, update: 12 }, rejected: 0 };

  it('nodepass-s2-info-level.sse: single-end traffic, a silent server, error only through logs, three deletes', () => {
    givenCaptures(S2).whenReplayed().thenEndpoint(S2, {
      masterId: 'bb3e2a4b6ffeaa68',
      connections: 1,
      offline: [],
      disconnectedSince: '2026-11-26T09:19:32.193Z',
      events: S2_EVENTS,
      tunnels: S2_TUNNELS,
    });
  });

  it('nodepass-s2-info-level.timestamped.txt: the second subscriber lost nothing at log=info', () => {
    // Frame by frame the same 47 as the .sse apart from its own `initial` (09:19:01.089871342) and `shutdown`
    // (09:19:32.19387332, still .193 in ms): nothing lost, so every number is the .sse's.
    givenCaptures(S2_TS).whenReplayed().thenEndpoint(S2_TS, {
      masterId: 'bb3e2a4b6ffeaa68',
      connections: 1,
      offline: [],
      disconnectedSince: '2026-11-26T09:19:32.193Z',
      events: S2_EVENTS,
      tunnels: S2_TUNNELS,
    });
  });

  it('nodepass-s3-report-interval-1s.sse: one update per second, no traffic', () => {
    // initial ******** (config e4d6a0a3ec968f87); create 5d3a3779 "fast" stopped 09:20:25.544684871 →
    // update running .545259854 → one log (the client's start line) at .549893539 → checkpoints at
    // .551775052 (mode 1), 26.552, 27.552, 28.553, 29.552 all 0 → shutdown 09:20:30.548630365.
    // 10 frames: initial 1, create 1, update 6, log 1, shutdown 1.
    givenCaptures(S3).whenReplayed().thenEndpoint(S3, {
      masterId: 'e4d6a0a3ec968f87',
      connections: 1,
      offline: [],
      disconnectedSince: '2026-11-26T09:20:30.548Z',
      events: { total: 10, byType: { create: 1, initial: 1, log: 1, shutdown: 1, update: 6 }, rejected: 0 },
      tunnels: {
        '5d3a3779': {
          alias: 'fast', type: 'client', url: 'client://127.0.0.1:19301/127.0.0.1:19001?log=info&mode=1', meta: NO_META,
          status: 'running', deleted: false, counters: counters(0, 0, 0, 0), traffic: counters(0, 0, 0, 0), logLines: 1,
          statusChanges: [['2026-11-26T09:20:25.544Z', 'stopped'], ['2026-11-26T09:20:25.545Z', 'running']],
        },
      },
    });
  });
});

describe('the same recording through two subscribers', () => {
  it.each([
    { sse: S1, ts: S1_TS, logDiff: { a236701f: 13, '5cc1f9b2': 9 } },
    { sse: S2, ts: S2_TS, logDiff: { '1a9d44a2': 0, '715a8240': 0, '647aee52': 0 } },
  ])('$ts agrees with $sse on final states and traffic; only lost log lines differ', ({ sse, ts, logDiff }) => {
    const a = givenCaptures(sse).whenReplayed().endpoint(sse);
    const b = givenCaptures(ts).whenReplayed().endpoint(ts);
    const state = (t: (typeof a.tunnels)[number]) => ({
      id: t.instanceId, alias: t.alias, url: t.url, meta: t.meta, status: t.status, deleted: t.deleted,
      counters: t.counters, traffic: t.traffic, statusChanges: t.statusChanges,
    });
    expect(b.tunnels.map(state)).toEqual(a.tunnels.map(state));
    expect(b.masterId).toBe(a.masterId);
    // The differences in log lines are exactly the log frames missing from the timestamped copy (see above).
    const diff = Object.fromEntries(a.tunnels.map((t) => [t.instanceId, t.logLines - b.tunnels.find((x) => x.instanceId === t.instanceId)!.logLines]));
    expect(diff).toEqual(logDiff);
  });
});

describe('determinism', () => {
  it('two in-process replays of the same input give byte-identical JSON', () => {
    const files = [S1, S2_TS, S3].map(capturePath);
    const first = JSON.stringify(replayFiles(files));
    const second = JSON.stringify(replayFiles(files));
    expect(second).toBe(first);
    // And the input order of independent endpoints only changes the order of `endpoints[]`.
    expect(JSON.parse(first).endpoints.map((e: { name: string }) => e.name)).toEqual([S1, S2_TS, S3]);
  });

  describe('through the built CLI', () => {
    beforeAll(() => {
      execFileSync('npm', ['run', 'build', '--silent'], { cwd: REPO_ROOT, stdio: 'pipe' });
    }, 120_000);

    it('`tunnelpulse replay … --json` prints the same bytes twice, and the same report as replayFiles', () => {
      const files = [S1, S1_ROTATED, S1_RESTARTED].map(capturePath);
      const run = () => spawnSync(process.execPath, ['bin/tunnelpulse.js', 'replay', ...files, '--endpoint', 'm', '--json'], { cwd: REPO_ROOT, encoding: 'utf8' });
      const one = run();
      const two = run();
      expect(one.status, one.stderr).toBe(0);
      expect(two.status, two.stderr).toBe(0);
      expect(two.stdout).toBe(one.stdout);
      expect(one.stdout).toBe(JSON.stringify(replayFiles(files, { endpoint: 'm' })) + '\n');
    });
  });
});

describe('nothing is counted twice', () => {
  it('replay s1.sse s1.sse --endpoint x: two connections, the traffic and log lines of one', () => {
    // The second copy is a stale replay: every event is older than (or in the same ms as) what the
    // tunnels hold, so no counter moves (rule 1 compares with the last accepted sample; stale events are not
    // applied); every log line has the same (time, text) as on connection 1 and only one copy there, so it is
    // a duplicate (log-identity.ts); the client is tombstoned, so its events of the second copy are
    // ignored and counted.
    const single = givenCaptures(S1).whenReplayed().endpoint(S1);
    const twice = givenCaptures(S1, S1).asEndpoint('x').whenReplayed();
    const x = twice.endpoint('x');
    expect(x.connections).toBe(2);
    const pick = (ts: typeof x.tunnels) => ts.map((t) => ({ id: t.instanceId, traffic: t.traffic, logLines: t.logLines, counters: t.counters, status: t.status, deleted: t.deleted, statusChanges: t.statusChanges }));
    expect(pick(x.tunnels)).toEqual(pick(single.tunnels));
    expect(x.events.total).toBe(2 * 628);
    // Duplicates: the server's 324 log lines again. The client's whole second copy (1 + 29 + 1 + 245 = 276
    // events) hits its tombstone.
    twice.thenEvents({ duplicateLogLines: 324, ignoredAfterTombstone: 276 });
  });
});

describe('several captures as one endpoint, in order (s1 main, after key rotation, after master restart)', () => {
  it('3 connections, the offline gaps between them, final states, traffic counted once', () => {
    // Connection 1 = s1 main (see S1_EXPECTED), ends with shutdown 09:17:29.103582922.
    // Connection 2 opens at its first event, 09:17:31.125447238 → offline 09:17:29.103 → 09:17:31.125.
    //   Its initial a236701f error 849200/…/13300 = the last known counters → delta 0 (the snapshot after a
    //   reconnect is a baseline against the last counters, rule 1, not a new first sample). Status error =
    //   unchanged. The client is missing from the snapshot but already tombstoned by its `delete`.
    //   shutdown 09:17:39.124609345.
    // Connection 3 opens at 09:17:41.139688091 → offline 09:17:39.124 → 09:17:41.139. initial a236701f running
    //   849200/…/13300 at 09:17:41.139935893: delta 0, status error → running (a 10th status change).
    //   shutdown 09:17:55.248194992: disconnected since then.
    // Events: 628 + 3 + 3 = 634; initial 1 + 2 + 2 = 5, shutdown 3.
    givenCaptures(S1, S1_ROTATED, S1_RESTARTED).asEndpoint('m').whenReplayed().thenEndpoint('m', {
      masterId: S1_MASTER,
      connections: 3,
      offline: [
        ['2026-11-26T09:17:29.103Z', '2026-11-26T09:17:31.125Z'],
        ['2026-11-26T09:17:39.124Z', '2026-11-26T09:17:41.139Z'],
      ],
      disconnectedSince: '2026-11-26T09:17:55.248Z',
      events: { total: 634, byType: { create: 2, delete: 1, initial: 5, log: 569, shutdown: 3, update: 54 }, rejected: 0 },
      tunnels: {
        a236701f: {
          ...S1_SERVER_COMMON, // traffic still 849200/849200/13300/13300: not counted again on reconnect
          status: 'running',
          logLines: 324,
          statusChanges: [...S1_SERVER_STATUS, ['2026-11-26T09:17:41.139Z', 'running']],
        },
        '5cc1f9b2': { ...S1_CLIENT_COMMON, logLines: 245, statusChanges: S1_CLIENT_STATUS },
      },
    });
  });
});

describe('a synthetic two-connection capture with every awkward case', () => {
  const T = (s: string) => `2026-11-26T10:00:${s}Z`;
  const MASTER = 'feedfacecafebeef';
  const LINE_A = '2026-11-26 10:00:02.000  \u001b[32mINFO\u001b[0m  Exchange complete: EOF';
  const LINE_B = '2026-11-26 10:00:02.000  \u001b[32mINFO\u001b[0m  Starting exchange: 127.0.0.1:5 <-> 127.0.0.1:19001';
  const body =
    connection(
      sseFrame('initial', T('00.0000001'), apiKeyRecord(MASTER)),
      sseFrame('initial', T('00.0000002'), instance({ id: 'aaaa0001', tcprx: 1000, tcptx: 2000, udprx: 30, udptx: 40 })),
      sseFrame('initial', T('00.0000003'), instance({ id: 'bbbb0002', tcprx: 500, tcptx: 500 })),
      sseFrame('update', T('01'), instance({ id: 'aaaa0001', tcprx: 1500, tcptx: 2600, udprx: 30, udptx: 40 })),
      sseFrame('create', T('01.5'), instance({ id: 'cccc0003' })),
      // The same log event twice, byte for byte, on one connection: two lines (log-identity.ts).
      sseFrame('log', T('02.000000001'), instance({ id: 'cccc0003' }), LINE_A),
      sseFrame('log', T('02.000000001'), instance({ id: 'cccc0003' }), LINE_A),
      sseFrame('log', T('02.000000002'), instance({ id: 'cccc0003' }), LINE_B),
      // update before its create (§7: the start goroutine's update is queued first; the create's payload is
      // marshalled later, so it is already running too).
      sseFrame('update', T('03'), instance({ id: 'dddd0004', alias: 'early' })),
      sseFrame('create', T('03.001'), instance({ id: 'dddd0004', alias: 'early' })),
      sseFrame('create', T('04'), instance({ id: 'eeee0005' })),
      sseFrame('update', T('05'), instance({ id: 'eeee0005', tcprx: 100, tcptx: 100 })),
      sseFrame('update', T('06.000000001'), instance({ id: 'eeee0005', status: 'stopped', tcprx: 100, tcptx: 100 })),
      sseFrame('delete', T('06.000000002'), instance({ id: 'eeee0005', status: 'stopped', tcprx: 100, tcptx: 100 })),
      // after its delete (§7: a restart racing the DELETE): ignored, counted
      sseFrame('update', T('07'), instance({ id: 'eeee0005', tcprx: 999999, tcptx: 999999 })),
      rawFrame('{not json'),
      sseFrame('update', T('08'), instance({ id: 'aaaa0001', tcprx: '9007199254740993', tcptx: 2600, udprx: 30, udptx: 40 })),
      sseFrame('restart', T('09'), instance({ id: 'aaaa0001', tcprx: 1500, tcptx: 2600, udprx: 30, udptx: 40 })),
      // the stream carries on after the three rejects
      sseFrame('log', T('09.5'), instance({ id: 'aaaa0001', tcprx: 1500, tcptx: 2600, udprx: 30, udptx: 40 }), 'still here'),
    ) +
    `: disconnect ${T('10.000')} network: connection reset\n\n` +
    `: reconnect ${T('15.000')}\n\n` +
    connection(
      sseFrame('initial', T('15.0000001'), apiKeyRecord(MASTER)),
      // traffic moved while disconnected: one delta of 2500/2400/50/50
      sseFrame('initial', T('15.0000002'), instance({ id: 'aaaa0001', tcprx: 4000, tcptx: 5000, udprx: 80, udptx: 90 })),
      sseFrame('initial', T('15.0000003'), instance({ id: 'cccc0003' })),
      sseFrame('initial', T('15.0000004'), instance({ id: 'dddd0004', alias: 'early' })),
      // bbbb0002 is not in the snapshot: it was deleted during the gap
      sseFrame('update', T('16'), instance({ id: 'aaaa0001', tcprx: 4500, tcptx: 5000, udprx: 80, udptx: 90 })),
      sseFrame('log', T('17'), instance({ id: 'cccc0003' }), LINE_B.replace('10:00:02', '10:00:17')),
    );
  const NAME = 'synthetic.sse';

  it('gives the hand-computed report', () => {
    const file = writeTmpCapture(NAME, body);
    const then = givenCaptures(file).whenReplayed();
    then.thenEndpoint(NAME, {
      masterId: MASTER,
      connections: 2,
      // disconnect comment at 10:00:10, reconnect comment at 10:00:15
      offline: [[T('10.000'), T('15.000')]],
      // the file ends with no shutdown and no time: disconnected since the last event (10:00:17)
      disconnectedSince: T('17.000'),
      // 19 frames on connection 1 + 6 on connection 2 = 25; 3 rejected; of the 22 valid:
      // initial 3 + 4 = 7, update 6 (aaaa ×2, dddd, eeee ×3), create 3, delete 1, log 5 (cccc ×4, aaaa ×1)
      events: { total: 25, byType: { create: 3, delete: 1, initial: 7, log: 5, update: 6 }, rejected: 3 },
      tunnels: {
        // 1000/2000/30/40 baseline → +500/+600/0/0 → (2^53 frame rejected, not applied) → reconnect snapshot
        // 4000/5000/80/90: +2500/+2400/+50/+50 once → +500/0/0/0. traffic = last − first = 3500/3000/50/50.
        aaaa0001: { status: 'running', deleted: false, counters: counters(4500, 5000, 80, 90), traffic: counters(3500, 3000, 50, 50), logLines: 1, statusChanges: [[T('00.000'), 'running']] },
        // missing from the 2nd snapshot → tombstone at reconciliation; its last state is kept
        bbbb0002: { status: 'running', deleted: true, counters: counters(500, 500, 0, 0), traffic: counters(0, 0, 0, 0), logLines: 0, statusChanges: [[T('00.000'), 'running']] },
        // two identical lines + one other on connection 1, one more on connection 2
        cccc0003: { status: 'running', deleted: false, traffic: counters(0, 0, 0, 0), logLines: 4, statusChanges: [[T('01.500'), 'running']] },
        // the update made the tunnel; the later create is just another upsert
        dddd0004: { alias: 'early', status: 'running', deleted: false, logLines: 0, statusChanges: [[T('03.000'), 'running']] },
        // 0 baseline → +100/+100 → stopped → delete; the 999999 update after it changes nothing
        eeee0005: {
          status: 'stopped', deleted: true, counters: counters(100, 100, 0, 0), traffic: counters(100, 100, 0, 0), logLines: 0,
          statusChanges: [[T('04.000'), 'running'], [T('06.000'), 'stopped']],
        },
      },
    });
    then.thenEvents({ rejected: 3, ignoredAfterTombstone: 1, duplicateLogLines: 0 });
    // Each rejection names its reason.
    const reasons = Object.keys(then.report.events.rejectedReasons);
    expect(reasons).toHaveLength(3);
    expect(reasons).toContain('not JSON (9 bytes)');
    expect(reasons).toContain('unknown event type "restart"');
    expect(reasons.some((r) => /tcprx/.test(r))).toBe(true);
  });

  it('replaying it twice as one endpoint counts nothing twice', () => {
    const file = writeTmpCapture(NAME, body);
    const once = givenCaptures(file).whenReplayed().endpoint(NAME);
    const twice = givenCaptures(file, file).asEndpoint('x').whenReplayed().endpoint('x');
    const pick = (ts: typeof once.tunnels) => ts.map((t) => ({ id: t.instanceId, traffic: t.traffic, logLines: t.logLines, deleted: t.deleted }));
    expect(pick(twice.tunnels)).toEqual(pick(once.tunnels));
    expect(twice.connections).toBe(4);
  });
});

describe('files with the same name from different folders', () => {
  it('are still one endpoint each (without --endpoint)', () => {
    // replay.ts says "Each file is its own endpoint unless `endpoint` names one for all of them". Two different
    // masters' captures that happen to share a base name (a/x.sse = s3, master e4d6a0a3ec968f87;
    // b/x.sse = s1 after key rotation, master 1ab781946d30b9c8) must not become one endpoint with two
    // connections and a master id that silently changes between them.
    const a = writeTmpCapture('x.sse', readFileSync(capturePath(S3), 'utf8'));
    const b = writeTmpCapture('x.sse', readFileSync(capturePath(S1_ROTATED), 'utf8'));
    const report = replayFiles([a, b]);
    expect(report.endpoints.map((e) => [e.masterId, e.connections, e.tunnels.map((t) => t.instanceId)])).toEqual([
      ['e4d6a0a3ec968f87', 1, ['5d3a3779']],
      ['1ab781946d30b9c8', 1, ['a236701f']],
    ]);
  });
});

/**
 * The counter rules when events are lost (PROTOCOL §7: the 10-slot subscriber buffer drops events; a
 * reconnect loses everything in the gap, §5.9). Expected values come from the master's own arithmetic
 * (§6): value = base + v − reset while v ≥ reset, else value = base + v and reset := 0; the `reset` action
 * sets reset := value − base, value := 0, base := 0; every start sets base := value.
 */
describe('counter rules when a reset or a start was not seen', () => {
  const T = (s: string) => `2026-11-26T11:00:${s}Z`;
  const X = (status: string, n: number) => instance({ id: 'ffff0006', status, tcprx: n, tcptx: n });
  const trafficOf = (file: string, endpoint?: string) => {
    const r = replayFiles([file], endpoint === undefined ? {} : { endpoint });
    return r.endpoints[0]!.tunnels.find((t) => t.instanceId === 'ffff0006')!.traffic;
  };

  it('a reset seen only as a decrease still counts as a reset of the run, so the next reset’s jump is not traffic', () => {
    // Master: create (base 0) → start → v = 5000 → update 5000.
    // Disconnected at :06; during the gap: reset #1 (reset := 5000 − 0 = 5000, value 0), then 1000 bytes
    // (v = 6000 → value 1000). Reconnect: `initial` 1000 — a decrease, so (rule 2) a reset happened: delta
    // 1000. Then reset #2, observed as all 0: the master stores reset := 1000 − 0 = 1000 instead of 6000, and
    // the next checkpoint with no traffic shows 6000 − 1000 = 5000: the §6 jump. It is the run's 2nd reset,
    // so O = P₁ − base with P₁ ≥ 5000 (the last sample before the decrease) and base = 0 (the start was
    // seen): the jump is at most 5000 − 5000 = 0 real bytes. Correct traffic: 5000 + 1000 + 0 = 6000.
    // (Counting the decrease as a reset only in `delta` but not in the run's reset count — resetsInRun and
    // beforePreviousReset in traffic.ts — takes the 5000 jump as traffic: 11000.)
    const body =
      connection(
        sseFrame('create', T('00'), X('stopped', 0)),
        sseFrame('update', T('00.1'), X('running', 0)),
        sseFrame('update', T('05'), X('running', 5000)),
      ) +
      `: disconnect ${T('06.000')} eof\n` +
      `: reconnect ${T('09.000')}\n` +
      connection(
        sseFrame('initial', T('09.0000001'), X('running', 1000)),
        sseFrame('update', T('12'), X('running', 0)),
        sseFrame('update', T('15'), X('running', 5000)),
      );
    expect(trafficOf(writeTmpCapture('reset-in-gap.sse', body))).toEqual(counters(6000, 6000, 0, 0));
  });

  it('the same on one connection when the reset’s all-zero update was dropped', () => {
    // As above, with the all-zero update of reset #1 lost from the buffer instead of a reconnect.
    const body = connection(
      sseFrame('create', T('00'), X('stopped', 0)),
      sseFrame('update', T('00.1'), X('running', 0)),
      sseFrame('update', T('05'), X('running', 5000)),
      sseFrame('update', T('10'), X('running', 1000)),
      sseFrame('update', T('12'), X('running', 0)),
      sseFrame('update', T('15'), X('running', 5000)),
    );
    expect(trafficOf(writeTmpCapture('reset-lost.sse', body))).toEqual(counters(6000, 6000, 0, 0));
  });

  it('stopped → error is a new process run too (its update(running) was lost, or the spawn failed)', () => {
    // Run A: create (base 0), start, 1000 bytes, reset #1 (reset := 1000, base 0), 300 bytes (value 300),
    // stop (counters kept). Start again — run B, base := 300 — but its update(running) was dropped; the next
    // event is a log whose instance says error (e.g. "Client error: … tunnelHandshake failed", as at
    // s1 09:17:15.802). The checkpoint at :15 has v = 0 < reset → value 300, reset := 0. Reset in run B:
    // reset := 300 − 300 = 0, value 0. 50 bytes: value 50, all real. Nothing but a start leaves `stopped`
    // (§3.3, §5.5: start gives update(running), or update(error) if the spawn fails), so the run began at
    // stopped → error and this reset is run B's first: no offset. Correct traffic: 1000 + 300 + 50 = 1350.
    // (Starting runs only on stopped → running takes it as run A's 2nd reset, O = 1000 − 0, and counts
    // max(0, 50 − 1000) = 0: 1300.)
    const body = connection(
      sseFrame('create', T('00'), X('stopped', 0)),
      sseFrame('update', T('00.1'), X('running', 0)),
      sseFrame('update', T('05'), X('running', 1000)),
      sseFrame('update', T('06'), X('running', 0)),
      sseFrame('update', T('10'), X('running', 300)),
      sseFrame('update', T('11'), X('stopped', 300)),
      sseFrame('log', T('12'), X('error', 300), '2026-11-26 11:00:12.000  \u001b[31mERROR\u001b[0m  Client error: commonStart: tunnelHandshake failed'),
      sseFrame('update', T('15'), X('running', 300)),
      sseFrame('update', T('16'), X('running', 0)),
      sseFrame('update', T('20'), X('running', 50)),
    );
    expect(trafficOf(writeTmpCapture('start-unseen.sse', body))).toEqual(counters(1350, 1350, 0, 0));
  });
});
