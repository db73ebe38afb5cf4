/** Record builders for the database tests: a valid record with only what a test cares about overridden. */
import type { Counters } from '../../actors/model.js';
import type {
  HourBucketRecord,
  LogRecord,
  TunnelConfigRecord,
  TunnelStateRecord,
} from '../../actors/records.js';
import type { Sql } from '../../src/db/connection.js';

/** 2025-01-15T10:00:00Z, the start of an hour. */
export const T0 = Date.UTC(2025, 0, 15, 10);
export const HOUR = 3_600_000;
export const DAY = 86_400_000;

export async function insertEndpoint(sql: Sql, name: string): Promise<number> {
  const [row] = await sql<{ id: number }[]>`
    INSERT INTO endpoints (name, url, api_key_enc) VALUES (${name}, ${`https://${name}.test/api`}, 'unused')
    RETURNING id`;
  return row!.id;
}

export function counters(tcprx: number, tcptx = 0, udprx = 0, udptx = 0): Counters {
  return { tcprx, tcptx, udprx, udptx };
}

export function configRecord(endpointId: number, instanceId: string, at: number, overrides: Partial<TunnelConfigRecord> = {}): TunnelConfigRecord {
  return {
    endpointId,
    instanceId,
    alias: `alias-${instanceId}`,
    type: 'server',
    url: 'server://:10101/127.0.0.1:8080',
    config: '',
    restart: true,
    meta: { peer: { sid: '', type: '', alias: '' }, tags: { team: 'ops' } },
    status: 'running',
    deleted: false,
    deletedAt: null,
    at,
    ...overrides,
  };
}

export function stateRecord(endpointId: number, instanceId: string, at: number, overrides: Partial<TunnelStateRecord> = {}): TunnelStateRecord {
  return {
    endpointId,
    instanceId,
    at,
    status: 'running',
    mode: 1,
    ping: 12,
    pool: 4,
    tcps: 2,
    udps: 0,
    counters: counters(1000, 2000),
    traffic: counters(100, 200),
    resume: { lastCounters: { tcprx: 1000 }, resets: 0 },
    ...overrides,
  };
}

export function bucket(endpointId: number, instanceId: string, hour: number, traffic: Counters): HourBucketRecord {
  return { endpointId, instanceId, hour, traffic };
}

/** `count` log lines of one instance, one millisecond apart from `from`. */
export function logLines(endpointId: number, instanceId: string, from: number, count: number, level = 'info'): LogRecord[] {
  return Array.from({ length: count }, (_, i) => ({
    endpointId,
    instanceId,
    at: from + i,
    time: `${BigInt(from + i) * 1_000_000n}`,
    lineHash: `hash-${instanceId}-${from + i}`,
    ordinal: 1,
    level,
    message: `${level.toUpperCase()} line ${i} of ${instanceId}`,
  }));
}
