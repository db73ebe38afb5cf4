/**
 * `tunnelpulse start` as a real child process (`node bin/tunnelpulse.js start`, i.e. the built dist/), for
 * restart, crash and signal tests: start it against a database (a server schema of the test's own, or the
 * embedded database in the data folder), wait until it serves /readyz, stop it with a chosen signal.
 *
 *   const svc = await startServiceProcess({ dataDir, databaseUrl, schema, endpoints: [{ name, url, apiKey }] });
 *   await fetch(`${svc.address}/api/stats`);
 *   const exit = await svc.kill('SIGKILL');   // { code: null, signal: 'SIGKILL' }
 *   const again = await startServiceProcess({ ...same options });   // restores from the database
 *
 * Needs `npm run build` first (the CLI runs dist/). Output is kept (stdout/stderr) for failure messages.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const BIN = resolve(fileURLToPath(new URL('../../bin/tunnelpulse.js', import.meta.url)));

export interface ServiceProcessOptions {
  /** Data folder (secret key, spill files, embedded database). Reuse it across restarts. */
  dataDir: string;
  /** A PostgreSQL server URL; absent: the embedded database in `dataDir`. */
  databaseUrl?: string;
  /** Server only: the schema to run in (created if missing; `TUNNELPULSE_DATABASE_SCHEMA`). */
  schema?: string;
  /** Endpoints to register at start-up (written to `<dataDir>/endpoints.json`, seeded by name). */
  endpoints?: Array<{ name: string; url: string; apiKey: string }>;
  /** Extra environment (batch sizes, flush intervals…). */
  env?: Record<string, string>;
  /** Extra `start` arguments. */
  args?: string[];
  /** How long to wait for /readyz (default 30 s). */
  readyTimeoutMs?: number;
}

export interface ServiceExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ServiceProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** `http://127.0.0.1:<port>` */
  readonly address: string;
  /** Everything printed so far (pino logs are JSON lines on stdout). */
  output(): { stdout: string; stderr: string };
  /** Resolves when the process has exited (by itself or by a signal). */
  readonly exited: Promise<ServiceExit>;
  /** Sends `signal` (default SIGTERM) and waits for the exit; SIGKILLs it after `timeoutMs` (default 30 s). */
  kill(signal?: NodeJS.Signals, timeoutMs?: number): Promise<ServiceExit>;
  /** GET a path as JSON (throws on a non-2xx answer). */
  getJson<T = unknown>(path: string): Promise<T>;
}

export async function startServiceProcess(options: ServiceProcessOptions): Promise<ServiceProcess> {
  mkdirSync(options.dataDir, { recursive: true });
  const env: Record<string, string> = {
    PATH: process.env['PATH'] ?? '',
    HOME: process.env['HOME'] ?? '',
    TUNNELPULSE_DATA_DIR: options.dataDir,
    TUNNELPULSE_PORT: '0',
    TUNNELPULSE_HOST: '127.0.0.1',
    TUNNELPULSE_LOG_LEVEL: 'info',
    ...options.env,
  };
  if (options.databaseUrl) env['DATABASE_URL'] = options.databaseUrl;
  if (options.schema) env['TUNNELPULSE_DATABASE_SCHEMA'] = options.schema;
  if (options.endpoints) {
    const file = join(options.dataDir, 'endpoints.json');
    writeFileSync(file, JSON.stringify({ endpoints: options.endpoints }), { mode: 0o600 });
    env['TUNNELPULSE_CONFIG'] = file;
  }

  const child = spawn(process.execPath, [BIN, 'start', ...(options.args ?? [])], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<ServiceExit>((done) => child.once('exit', (code, signal) => done({ code, signal })));
  let exit: ServiceExit | null = null;
  void exited.then((e) => (exit = e));
  const describe = () => `\n--- stdout ---\n${stdout.slice(-4000)}\n--- stderr ---\n${stderr.slice(-4000)}`;

  // The command prints `TunnelPulse on http://…` once it listens; then /readyz says whether actors are restored.
  const deadline = Date.now() + (options.readyTimeoutMs ?? 30_000);
  let address: string | null = null;
  while (Date.now() < deadline) {
    if (exit) throw new Error(`tunnelpulse start exited early (${JSON.stringify(exit)})${describe()}`);
    address ??= /TunnelPulse on (http:\/\/\S+)/.exec(stdout)?.[1] ?? null;
    if (address) {
      const ready = await fetch(`${address}/readyz`).then((r) => r.ok, () => false);
      if (ready) break;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  if (!address || Date.now() >= deadline) {
    child.kill('SIGKILL');
    throw new Error(`tunnelpulse start was not ready in time${describe()}`);
  }
  const base = address;

  return {
    child,
    pid: child.pid!,
    address: base,
    output: () => ({ stdout, stderr }),
    exited,
    async kill(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 30_000) {
      if (exit) return exit;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
    async getJson<T>(path: string): Promise<T> {
      const response = await fetch(`${base}${path}`);
      if (!response.ok) throw new Error(`GET ${path}: HTTP ${response.status}`);
      return (await response.json()) as T;
    },
  };
}
