/**
 * The one configuration object, read once at start-up from the environment (and CLI flags layered on top),
 * validated, and passed down. Nothing else reads `process.env`.
 */
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

const EndpointSeed = Type.Object({
  name: Type.String({ minLength: 1 }),
  url: Type.String({ minLength: 1 }),
  apiKey: Type.String({ minLength: 1 }),
  insecureTls: Type.Optional(Type.Boolean()),
  enabled: Type.Optional(Type.Boolean()),
});
export type EndpointSeed = Static<typeof EndpointSeed>;

export const ConfigFileSchema = Type.Object({ endpoints: Type.Optional(Type.Array(EndpointSeed)) });

export interface Config {
  /** A PostgreSQL server; absent: the embedded database in `dataDir`. */
  databaseUrl: string | null;
  /** Server only: the schema every connection uses (`search_path`), created if missing; absent: the server's default. */
  databaseSchema: string | null;
  dataDir: string;
  /** Key for API keys at rest (hex or base64 of 32 bytes); absent: `<dataDir>/secret.key`, generated. */
  secretKey: string | null;
  host: string;
  port: number;
  /** Required when `host` is not a loopback address. */
  accessToken: string | null;
  /** Origins allowed to call the HTTP API from a browser (TUNNELPULSE_CORS_ORIGINS, comma-separated); empty: CORS off. */
  corsOrigins: string[];
  /** Endpoints seeded at start-up (JSON file: `{ "endpoints": [{ name, url, apiKey, insecureTls? }] }`). */
  configFile: string | null;
  /** Journal everything received to this file (JSON Lines, replayable). */
  journalPath: string | null;
  logLevel: string;
  logBatchSize: number;
  logFlushMs: number;
  stateFlushMs: number;
  logDailyCap: number;
  logsRetentionDays: number;
  trafficRetentionDays: number;
  memoryCapRows: number;
  /** Shutdown: how long to keep trying to write what is queued before spilling it to disk (and exiting 1). */
  shutdownFlushMs: number;
  eventRingSize: number;
  /** Endpoint liveness and reconciliation (docs/actors.md): quiet time before a probe, `GET /instances` and `/info` periods, backoff cap. */
  probeIntervalMs: number;
  reconcileIntervalMs: number;
  infoRefreshMs: number;
  backoffCapMs: number;
  demo: boolean;
  /**
   * Several processes on one database divide the endpoints through leases (TUNNELPULSE_LEASES=1; docs/database.md,
   * "Several processes"). Off: this process watches every enabled endpoint.
   */
  leases: boolean;
  /** This process's name in the leases (TUNNELPULSE_LEASE_OWNER; default `hostname:pid:random`, unique per run). */
  leaseOwner: string;
  /** How long a lease lasts without renewal (TUNNELPULSE_LEASE_TTL_MS, default 30 s), and the renewal period (…_RENEW_MS, 10 s). */
  leaseTtlMs: number;
  leaseRenewMs: number;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

function int(env: Record<string, string | undefined>, key: string, fallback: number, min = 0): number {
  const raw = env[key];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new ConfigError(`${key} must be an integer ≥ ${min}, got "${raw}"`);
  return n;
}

function flag(env: Record<string, string | undefined>, key: string): boolean {
  const raw = (env[key] ?? '').trim().toLowerCase();
  if (raw === '' || raw === '0' || raw === 'false' || raw === 'off') return false;
  if (raw === '1' || raw === 'true' || raw === 'on') return true;
  throw new ConfigError(`${key} must be 1 or 0 (true/false, on/off), got "${env[key]}"`);
}

export function loadConfig(env: Record<string, string | undefined> = process.env, overrides: Partial<Config> = {}): Config {
  const dataDir = overrides.dataDir ?? env['TUNNELPULSE_DATA_DIR'] ?? './data';
  const config: Config = {
    databaseUrl: env['DATABASE_URL'] || null,
    databaseSchema: env['TUNNELPULSE_DATABASE_SCHEMA'] || null,
    dataDir,
    secretKey: env['TUNNELPULSE_SECRET_KEY'] || null,
    host: env['TUNNELPULSE_HOST'] || '127.0.0.1',
    port: int(env, 'TUNNELPULSE_PORT', 8080),
    accessToken: env['TUNNELPULSE_TOKEN'] || null,
    corsOrigins: (env['TUNNELPULSE_CORS_ORIGINS'] ?? '').split(',').map((o) => o.trim()).filter((o) => o.length > 0),
    configFile: env['TUNNELPULSE_CONFIG'] || null,
    journalPath: env['TUNNELPULSE_JOURNAL'] || null,
    logLevel: env['TUNNELPULSE_LOG_LEVEL'] || 'info',
    logBatchSize: int(env, 'TUNNELPULSE_LOG_BATCH_SIZE', 100, 1),
    logFlushMs: int(env, 'TUNNELPULSE_LOG_FLUSH_MS', 2_000, 1),
    stateFlushMs: int(env, 'TUNNELPULSE_STATE_FLUSH_MS', 2_000, 1),
    logDailyCap: int(env, 'TUNNELPULSE_LOG_DAILY_CAP', 10_000, 1),
    logsRetentionDays: int(env, 'TUNNELPULSE_LOG_RETENTION_DAYS', 7, 1),
    trafficRetentionDays: int(env, 'TUNNELPULSE_TRAFFIC_RETENTION_DAYS', 30, 1),
    memoryCapRows: int(env, 'TUNNELPULSE_MEMORY_CAP_ROWS', 200_000, 1_000),
    shutdownFlushMs: int(env, 'TUNNELPULSE_SHUTDOWN_FLUSH_MS', 30_000, 0),
    eventRingSize: int(env, 'TUNNELPULSE_EVENT_RING', 1_000, 0),
    probeIntervalMs: int(env, 'TUNNELPULSE_PROBE_INTERVAL_MS', 30_000, 1_000),
    reconcileIntervalMs: int(env, 'TUNNELPULSE_RECONCILE_INTERVAL_MS', 60_000, 1_000),
    infoRefreshMs: int(env, 'TUNNELPULSE_INFO_REFRESH_MS', 300_000, 1_000),
    backoffCapMs: int(env, 'TUNNELPULSE_BACKOFF_CAP_MS', 30_000, 1_000),
    demo: false,
    leases: flag(env, 'TUNNELPULSE_LEASES'),
    leaseOwner: env['TUNNELPULSE_LEASE_OWNER'] || `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`,
    leaseTtlMs: int(env, 'TUNNELPULSE_LEASE_TTL_MS', 30_000, 1_000),
    leaseRenewMs: int(env, 'TUNNELPULSE_LEASE_RENEW_MS', 10_000, 100),
    ...overrides,
  };
  // A renewal must land well before the lease runs out, or a healthy process would lose its endpoints.
  if (config.leases && config.leaseRenewMs * 2 > config.leaseTtlMs) {
    throw new ConfigError(`TUNNELPULSE_LEASE_RENEW_MS (${config.leaseRenewMs}) must be at most half of TUNNELPULSE_LEASE_TTL_MS (${config.leaseTtlMs})`);
  }
  if (config.accessToken !== null && config.accessToken.length < 16) throw new ConfigError('TUNNELPULSE_TOKEN must be at least 16 characters');
  return config;
}

export function readConfigFile(path: string): EndpointSeed[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new ConfigError(`cannot read config file ${path}: ${(error as Error).message}`);
  }
  if (!Value.Check(ConfigFileSchema, raw)) {
    const first = Value.Errors(ConfigFileSchema, raw).First();
    throw new ConfigError(`config file ${path}: ${first?.path ?? ''} ${first?.message ?? 'invalid'}`);
  }
  return raw.endpoints ?? [];
}

export const secretKeyFile = (config: Config): string => join(config.dataDir, 'secret.key');
export const embeddedDataDir = (config: Config): string => join(config.dataDir, 'pglite');
export const spillDir = (config: Config): string => join(config.dataDir, 'spill');

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
