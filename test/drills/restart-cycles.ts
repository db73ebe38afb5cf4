/**
 * Shared by drills 3 (SIGTERM) and 4 (kill -9): the real service as a child process (`tunnelpulse start`,
 * test/support/service-process.ts) against its own schema, watching an in-process simulator, stopped with a
 * signal at a random moment N times and started again; a final graceful run, then the counts.
 *
 * What the service parsed is known exactly: each run records a journal (TUNNELPULSE_JOURNAL), and every log
 * line carries `seq=N`. Lines the master sent while no service was running were never received by anyone
 * (NodePass keeps no backlog); they are not losses of ours and are not expected in the database.
 * Traffic needs no journal: counters are absolute, so the tunnels' lifetime totals must equal the master's
 * counters exactly (the drill drives every checkpoint itself, starting from zero).
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { COUNTER_KEYS, type Counters } from '../../actors/model.js';
import { startSimulator, type SimulatorHandle } from '../../src/sim/simulator.js';
import { startServiceProcess, type ServiceExit, type ServiceProcess } from '../support/service-process.js';
import { openDrillSchema, sleep, waitFor, type DrillSchema } from './harness.js';

export interface CycleOptions {
  signal: 'SIGTERM' | 'SIGKILL';
  cycles: number;
  /** Longest random time a run lives after it is ready (ms). */
  maxLifeMs: number;
  instances: number;
  logRate: number;
  seed: string;
  /** Extra life of the first run before its kill (ms), e.g. past the first state flush. */
  firstLifeMs?: number;
  /** Server schema (default) or the embedded database in the data folder. */
  embedded?: boolean;
  /** Called right before each kill (e.g. to read what is committed through the API). */
  beforeKill?: (service: ServiceProcess, instanceIds: string[]) => Promise<void>;
}

export interface CycleResult {
  exits: ServiceExit[];
  /** Distinct seqs found in the journals (what the service parsed), over all instances. */
  journalled: number;
  rows: number;
  duplicates: number;
  /** Parsed (journalled) but not in the database. */
  lostAfterParse: number;
  /** Largest number of such lines attributable to one kill. */
  worstLossPerKill: number;
  /** In the database but not in any journal (the journal's own tail was lost in a kill). */
  storedNotJournalled: number;
  trafficExact: boolean;
  trafficCounted: Counters;
  trafficTruth: Counters;
  startMs: number[];
  spilledFilesLeft: number;
  /** `instanceId/seq` of every stored line (for the caller's own checks). */
  storedKeys: Set<string>;
}

export async function runRestartCycles(options: CycleOptions): Promise<CycleResult> {
  const dataDir = mkdtempSync(join(tmpdir(), `tp-drill-${options.signal.toLowerCase()}-`));
  let schema: DrillSchema | undefined;
  let sim: SimulatorHandle | undefined;
  let service: ServiceProcess | undefined;
  let checkpoints: NodeJS.Timeout | undefined;
  try {
    if (!options.embedded) schema = await openDrillSchema(options.signal === 'SIGTERM' ? 'sigterm' : 'sigkill');
    sim = await startSimulator({ instances: options.instances, reportIntervalMs: 0, logRate: options.logRate, lifecycleLogs: false, seed: options.seed });
    const master = sim.master;
    // Checkpoints driven from here (no timer before the first connection: the first sample is the zero baseline).
    const endpoints = [{ name: 'm1', url: master.url, apiKey: master.apiKey }];
    const env = { TUNNELPULSE_LOG_LEVEL: 'warn' };
    const start = async (run: number) => {
      const started = Date.now();
      const svc = await startServiceProcess({
        dataDir,
        databaseUrl: schema?.url,
        schema: schema?.schema,
        endpoints,
        env: { ...env, TUNNELPULSE_JOURNAL: join(dataDir, `journal-${String(run).padStart(3, '0')}.jsonl`) },
      });
      startMs.push(Date.now() - started);
      await waitFor('the stream open', () => master.stats().connections > 0, 20_000);
      return svc;
    };
    const startMs: number[] = [];
    const exits: ServiceExit[] = [];
    service = await start(0);
    checkpoints = setInterval(() => master.checkpoint(), 200);
    await sleep(options.firstLifeMs ?? 0);
    for (let cycle = 1; cycle <= options.cycles; cycle++) {
      await sleep(200 + Math.floor(Math.random() * options.maxLifeMs));
      if (options.beforeKill) await options.beforeKill(service, master.instanceIds());
      exits.push(await service.kill(options.signal));
      service = undefined;
      service = await start(cycle);
    }
    await sleep(1_000);
    // Stop the producers, let the last frames arrive, then a graceful stop writes the rest.
    clearInterval(checkpoints);
    checkpoints = undefined;
    master.checkpoint();
    await sleep(500);
    master.shutdown();
    await sleep(500);
    const last = await service.kill('SIGTERM');
    service = undefined;
    if (last.code !== 0) throw new Error(`the final graceful stop exited ${JSON.stringify(last)}`);

    // ---- what was parsed (journals), what was stored (database) -------------------------------------
    const journalled = new Map<string, Set<number>>();
    const perRun: Array<Set<string>> = [];
    for (const file of readdirSync(dataDir).filter((f) => f.startsWith('journal-')).sort()) {
      const run = new Set<string>();
      for (const line of readFileSync(join(dataDir, file), 'utf8').split('\n')) {
        if (!line.includes('"kind":"data"')) continue;
        let entry: { data?: string };
        try {
          entry = JSON.parse(line) as { data?: string };
        } catch {
          continue; // a line torn by the kill
        }
        let payload: { type?: string; instance?: { id?: string }; logs?: string };
        try {
          payload = JSON.parse(entry.data ?? '') as typeof payload;
        } catch {
          continue;
        }
        const seq = payload.type === 'log' ? / seq=(\d+)/.exec(payload.logs ?? '')?.[1] : undefined;
        if (!seq || !payload.instance?.id) continue;
        const set = journalled.get(payload.instance.id) ?? new Set<number>();
        set.add(Number(seq));
        journalled.set(payload.instance.id, set);
        run.add(`${payload.instance.id}/${seq}`);
      }
      perRun.push(run);
    }
    const db = schema?.admin.sql ?? (await openEmbeddedForCheck(dataDir));
    try {
      const rows = await db<{ instance_id: string; message: string }[]>`SELECT instance_id, message FROM tunnel_logs`;
      const stored = new Map<string, number>();
      for (const r of rows) {
        const seq = / seq=(\d+)$/.exec(r.message)?.[1];
        if (seq) stored.set(`${r.instance_id}/${seq}`, (stored.get(`${r.instance_id}/${seq}`) ?? 0) + 1);
      }
      let duplicates = 0;
      for (const n of stored.values()) duplicates += n - 1;
      let lostAfterParse = 0;
      let worstLossPerKill = 0;
      for (const run of perRun) {
        let lost = 0;
        for (const key of run) if (!stored.has(key)) lost++;
        lostAfterParse += lost;
        worstLossPerKill = Math.max(worstLossPerKill, lost);
      }
      const allJournalled = new Set(perRun.flatMap((r) => [...r]));
      let storedNotJournalled = 0;
      for (const key of stored.keys()) if (!allJournalled.has(key)) storedNotJournalled++;

      const [counted] = await db<Counters[]>`
        SELECT coalesce(sum(traffic_tcprx), 0)::bigint AS tcprx, coalesce(sum(traffic_tcptx), 0)::bigint AS tcptx,
               coalesce(sum(traffic_udprx), 0)::bigint AS udprx, coalesce(sum(traffic_udptx), 0)::bigint AS udptx FROM tunnels`;
      const truth: Counters = { tcprx: 0, tcptx: 0, udprx: 0, udptx: 0 };
      for (const id of master.instanceIds()) {
        const inst = master.instance(id)!;
        for (const k of COUNTER_KEYS) truth[k] += inst[k];
      }
      return {
        exits,
        journalled: allJournalled.size,
        rows: rows.length,
        duplicates,
        lostAfterParse,
        worstLossPerKill,
        storedNotJournalled,
        trafficExact: COUNTER_KEYS.every((k) => counted![k] === truth[k]),
        trafficCounted: counted!,
        trafficTruth: truth,
        startMs,
        storedKeys: new Set(stored.keys()),
        spilledFilesLeft: existsSync(join(dataDir, 'spill')) ? readdirSync(join(dataDir, 'spill')).length : 0,
      };
    } finally {
      if (!schema) await db.end();
    }
  } finally {
    if (checkpoints) clearInterval(checkpoints);
    await service?.kill('SIGKILL').catch(() => undefined);
    await sim?.close();
    await schema?.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** The embedded database of a stopped service, opened read-write for the counts. */
async function openEmbeddedForCheck(dataDir: string) {
  const { openDatabase } = await import('../../src/db/connection.js');
  const db = await openDatabase({ dataDir: join(dataDir, 'pglite') });
  const sql = db.sql as typeof db.sql & { end(): Promise<void> };
  return Object.assign(sql, { end: () => db.close() });
}
