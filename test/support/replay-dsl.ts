/**
 * A small given-capture-then-expect DSL for replay tests (emmett style):
 *
 *   givenCaptures('a.sse').whenReplayed().thenEndpoint('a.sse', { masterId: …, tunnels: { … } });
 *   givenCaptures('a.sse', 'b.sse').asEndpoint('m').whenReplayed().thenEndpoint('m', { … });
 *
 * Expectations list only the keys they care about; every listed key is compared exactly (`toEqual`), and
 * `tunnels` must name exactly the tunnels the report has. Also builds synthetic NodePass SSE bodies
 * (`sseFrame`, `instance`, `connection`) for tests that need a situation no capture has.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { replayFiles } from '../../src/replay/replay.js';
import type { EndpointReport, ReplayReport, TunnelReport } from '../../src/replay/report.js';
import type { Counters } from '../../actors/model.js';

export const CAPTURES_DIR = fileURLToPath(new URL('../../fixtures/captures/', import.meta.url));
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** A capture in fixtures/captures, or an absolute path as is. */
export const capturePath = (name: string): string => (name.startsWith('/') ? name : join(CAPTURES_DIR, name));

/** The four counters in wire order: tcprx, tcptx, udprx, udptx. */
export const counters = (tcprx: number, tcptx: number, udprx: number, udptx: number): Counters => ({ tcprx, tcptx, udprx, udptx });

export type StatusChange = [at: string, status: string];
export type Interval = [from: string, to: string];

export interface ExpectedTunnel {
  alias?: string;
  type?: string;
  url?: string;
  meta?: TunnelReport['meta'];
  status?: string | null;
  deleted?: boolean;
  counters?: Counters;
  traffic?: Counters;
  logLines?: number;
  statusChanges?: StatusChange[];
}

export interface ExpectedEndpoint {
  masterId?: string;
  connections?: number;
  offline?: Interval[];
  disconnectedSince?: string | null;
  events?: { total: number; byType: Record<string, number>; rejected: number };
  /** Exactly the tunnels of the endpoint, by instance id. */
  tunnels?: Record<string, ExpectedTunnel>;
}

/** The parts of a tunnel report that an expectation names, in the expectation's own shape. */
function tunnelView(t: TunnelReport, expected: ExpectedTunnel): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(expected) as Array<keyof ExpectedTunnel>) {
    out[key] = key === 'statusChanges' ? t.statusChanges.map((s) => [s.at, s.status]) : t[key];
  }
  return out;
}

export class ReplayThen {
  constructor(readonly report: ReplayReport) {}

  endpoint(name: string): EndpointReport {
    const ep = this.report.endpoints.find((e) => e.name === name);
    if (!ep) throw new Error(`no endpoint "${name}" in the report (have: ${this.report.endpoints.map((e) => e.name).join(', ')})`);
    return ep;
  }

  tunnel(endpoint: string, instanceId: string): TunnelReport {
    const t = this.endpoint(endpoint).tunnels.find((x) => x.instanceId === instanceId);
    if (!t) throw new Error(`no tunnel ${instanceId} on endpoint "${endpoint}"`);
    return t;
  }

  thenEndpoint(name: string, expected: ExpectedEndpoint): this {
    const ep = this.endpoint(name);
    if (expected.masterId !== undefined) expect(ep.masterId, `${name}: masterId`).toBe(expected.masterId);
    if (expected.connections !== undefined) expect(ep.connections, `${name}: connections`).toBe(expected.connections);
    if (expected.offline !== undefined) expect(ep.offline.map((o) => [o.from, o.to]), `${name}: offline`).toEqual(expected.offline);
    if (expected.disconnectedSince !== undefined) expect(ep.disconnectedSince, `${name}: disconnectedSince`).toBe(expected.disconnectedSince);
    if (expected.events !== undefined) expect(ep.events, `${name}: events`).toEqual(expected.events);
    if (expected.tunnels !== undefined) {
      expect(ep.tunnels.map((t) => t.instanceId).sort(), `${name}: tunnel ids`).toEqual(Object.keys(expected.tunnels).sort());
      for (const [id, want] of Object.entries(expected.tunnels)) {
        expect(tunnelView(this.tunnel(name, id), want), `${name}: tunnel ${id}`).toEqual(want);
      }
    }
    return this;
  }

  thenEvents(expected: Partial<ReplayReport['events']>): this {
    const got: Record<string, unknown> = {};
    for (const key of Object.keys(expected) as Array<keyof ReplayReport['events']>) got[key] = this.report.events[key];
    expect(got, 'report.events').toEqual(expected);
    return this;
  }
}

export class ReplayGiven {
  private endpointName: string | undefined;
  constructor(private readonly files: string[]) {}

  /** All the files are consecutive connections of one endpoint (`--endpoint NAME`). */
  asEndpoint(name: string): this {
    this.endpointName = name;
    return this;
  }

  whenReplayed(): ReplayThen {
    return new ReplayThen(replayFiles(this.files, this.endpointName === undefined ? {} : { endpoint: this.endpointName }));
  }
}

export const givenCaptures = (...names: string[]): ReplayGiven => new ReplayGiven(names.map(capturePath));

const tmpDirs: string[] = [];

/** Writes a synthetic capture to a fresh temporary directory and returns its path. */
export function writeTmpCapture(fileName: string, body: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'tunnelpulse-replay-'));
  tmpDirs.push(dir);
  const path = join(dir, fileName);
  writeFileSync(path, body);
  return path;
}

/** Removes every directory `writeTmpCapture` made (call from `afterAll`). */
export function removeTmpCaptures(): void {
  for (const dir of tmpDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

// ---- synthetic NodePass SSE -------------------------------------------------------------------------

export interface InstanceFields {
  id: string;
  alias?: string;
  type?: string;
  status?: string;
  url?: string;
  restart?: boolean;
  tcprx?: number | string;
  tcptx?: number | string;
  udprx?: number | string;
  udptx?: number | string;
}

/** A full NodePass instance object (PROTOCOL §4) as JSON text; counters may be given as raw JSON text. */
export function instance(f: InstanceFields): string {
  const url = f.url ?? `client://127.0.0.1:19100/127.0.0.1:19001?log=info&mode=1`;
  const obj = {
    id: f.id,
    alias: f.alias ?? `alias-${f.id}`,
    type: f.type ?? 'client',
    status: f.status ?? 'running',
    url,
    config: url,
    restart: f.restart ?? true,
    meta: { peer: { sid: '', type: '', alias: '' }, tags: {} },
    mode: 1,
    ping: 0,
    pool: 0,
    tcps: 0,
    udps: 0,
    tcprx: '@tcprx@',
    tcptx: '@tcptx@',
    udprx: '@udprx@',
    udptx: '@udptx@',
  };
  return JSON.stringify(obj)
    .replace('"@tcprx@"', String(f.tcprx ?? 0))
    .replace('"@tcptx@"', String(f.tcptx ?? 0))
    .replace('"@udprx@"', String(f.udprx ?? 0))
    .replace('"@udptx@"', String(f.udptx ?? 0));
}

/** The API-key record (`********`): `url` is the key, `config` the master id. */
export const apiKeyRecord = (masterId: string): string =>
  JSON.stringify({
    id: '********', alias: '', type: '', status: '', url: '0123456789abcdef0123456789abcdef', config: masterId, restart: false,
    meta: { peer: { sid: '', type: '', alias: '' }, tags: {} },
    mode: 0, ping: 0, pool: 0, tcps: 0, udps: 0, tcprx: 0, tcptx: 0, udprx: 0, udptx: 0,
  });

/** One SSE frame exactly as NodePass writes it: `event: instance`, one `data:` line, a blank line. */
export function sseFrame(type: string, time: string, instanceJson: string | null, logs = ''): string {
  return `event: instance\ndata: {"type":${JSON.stringify(type)},"time":${JSON.stringify(time)},"instance":${instanceJson ?? 'null'},"logs":${JSON.stringify(logs)}}\n\n`;
}

/** A raw frame with any data text (for malformed input). */
export const rawFrame = (data: string): string => `event: instance\ndata: ${data}\n\n`;

/** One connection's body: NodePass's `retry:` line and then the frames. */
export const connection = (...frames: string[]): string => `retry: 3000\n\n${frames.join('')}`;
