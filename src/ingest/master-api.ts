/**
 * The two REST calls TunnelPulse makes to a NodePass master (PROTOCOL §3):
 * - `getInfo` (`GET /info`): the liveness probe while the stream is quiet (NodePass has no heartbeat, §5.9)
 *   and the source of the master's id, version and system facts;
 * - `listInstances` (`GET /instances`): periodic reconciliation against events lost by the master's
 *   drop-on-full subscriber buffer (§7).
 *
 * Each call is bounded in time (default 5 s; a real `/info` takes ~100 ms because it samples `/proc/stat`),
 * cancellable through an `AbortSignal`, and reuses a keep-alive connection per endpoint so that a probe every
 * few seconds across thousands of masters does not pay a TCP (and TLS) handshake each time.
 * Failures are thrown as `MasterRequestError` carrying the same classification as the stream's close reasons.
 */
import http from 'node:http';
import https from 'node:https';
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { Instance, MasterInfo } from '../../actors/model.js';
import { API_KEY_RECORD_ID, parseNodePassPayload } from '../protocol/events.js';
import { masterResourceUrl, type MasterResource } from './master-url.js';
import {
  ERROR_BODY_BYTES,
  classifyNetworkError,
  classifyStatus,
  mediaType,
  scrubBody,
  type TransportFailure,
} from './transport-failure.js';

export type MasterRequestFailure =
  | TransportFailure
  /** The caller's `AbortSignal` fired. */
  | { kind: 'aborted' }
  /** 200, but the body is not the JSON shape a NodePass master sends (or is larger than allowed). */
  | { kind: 'invalid-response'; message: string };

export class MasterRequestError extends Error {
  override readonly name = 'MasterRequestError';
  readonly code = 'MASTER_REQUEST_FAILED';
  constructor(
    readonly resource: MasterResource,
    readonly failure: MasterRequestFailure,
  ) {
    super(`GET /${resource} failed: ${describe(failure)}`);
  }
}

function describe(failure: MasterRequestFailure): string {
  switch (failure.kind) {
    case 'aborted':
      return 'aborted';
    case 'auth':
    case 'http':
      return `HTTP ${failure.status}`;
    default:
      return `${failure.kind}: ${failure.message}`;
  }
}

/**
 * Keep-alive agents, one per (origin, TLS verification) pair: an endpoint's probe and reconciliation share a
 * connection, and endpoints never share sockets with each other. Release an endpoint's agent when it is
 * removed or its URL changes; `destroy()` on shutdown.
 */
export class MasterAgentPool {
  private readonly agents = new Map<string, http.Agent>();

  constructor(
    /** An idle pooled socket is closed after this long (NodePass itself never closes idle connections). */
    private readonly idleSocketMs = 60_000,
  ) {}

  agentFor(url: URL, insecureTls: boolean): http.Agent {
    const key = `${url.origin}|${url.protocol === 'https:' && insecureTls ? 'insecure' : 'verified'}`;
    let agent = this.agents.get(key);
    if (!agent) {
      const options: https.AgentOptions = {
        keepAlive: true,
        keepAliveMsecs: 15_000,
        // One probe and one reconciliation may overlap; more would mean the caller has lost track.
        maxSockets: 4,
        maxFreeSockets: 1,
        timeout: this.idleSocketMs,
        scheduling: 'lifo',
      };
      agent = url.protocol === 'https:' ? new https.Agent({ ...options, rejectUnauthorized: !insecureTls }) : new http.Agent(options);
      this.agents.set(key, agent);
    }
    return agent;
  }

  /** Closes the pooled connections of one endpoint (all TLS modes). */
  release(baseUrl: string): void {
    const origin = new URL(baseUrl).origin;
    for (const [key, agent] of this.agents) {
      if (key.startsWith(`${origin}|`)) {
        agent.destroy();
        this.agents.delete(key);
      }
    }
  }

  destroy(): void {
    for (const agent of this.agents.values()) agent.destroy();
    this.agents.clear();
  }
}

/** The pool used when a call does not bring its own. */
export const sharedMasterAgents = new MasterAgentPool();

export interface MasterRequestOptions {
  insecureTls?: boolean;
  /** Whole-request deadline: connect, headers and body. */
  timeoutMs?: number;
  signal?: AbortSignal;
  agents?: MasterAgentPool;
  /** A bigger body is refused as `invalid-response` (a master with 10k instances sends ~10 MB). */
  maxResponseBytes?: number;
}

export const DEFAULT_REQUEST_TIMEOUT_MS = 5_000;
export const DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------------------
// GET /info

const Uint = Type.Number({ minimum: 0 });

/**
 * `GET /info` as NodePass sends it (PROTOCOL §3.6). Only `ver` and `uptime` are required: they identify a
 * NodePass master, and older releases lack some of the rest (`mid` is absent from the docs' example and is
 * `""` on a master's first run). Unknown fields are allowed, for newer releases.
 */
export const MasterInfoResponseSchema = Type.Object({
  ver: Type.String(),
  uptime: Uint,
  mid: Type.Optional(Type.String()),
  alias: Type.Optional(Type.String()),
  name: Type.Optional(Type.String()),
  os: Type.Optional(Type.String()),
  arch: Type.Optional(Type.String()),
  log: Type.Optional(Type.String()),
  tls: Type.Optional(Type.String()),
  /** Paths of the TLS certificate and key files (`tls=2`), not secrets, but kept out of `system`. */
  crt: Type.Optional(Type.String()),
  key: Type.Optional(Type.String()),
  cpu: Type.Optional(Type.Number({ minimum: -1 })),
  mem_total: Type.Optional(Uint),
  mem_used: Type.Optional(Uint),
  swap_total: Type.Optional(Uint),
  swap_used: Type.Optional(Uint),
  netrx: Type.Optional(Uint),
  nettx: Type.Optional(Uint),
  diskr: Type.Optional(Uint),
  diskw: Type.Optional(Uint),
  sysup: Type.Optional(Uint),
});
export type MasterInfoResponse = Static<typeof MasterInfoResponseSchema>;
const infoCheck = TypeCompiler.Compile(MasterInfoResponseSchema);

const SYSTEM_FIELDS = [
  'cpu',
  'mem_total',
  'mem_used',
  'swap_total',
  'swap_used',
  'netrx',
  'nettx',
  'diskr',
  'diskw',
  'sysup',
  'log',
  'tls',
] as const satisfies readonly (keyof MasterInfoResponse)[];

export interface MasterInfoResult {
  /**
   * `masterId` is `""` when the master did not report one (first run, PROTOCOL §3.6): take it from the
   * API-key record (`listInstances().masterId` or the stream's `master` event) instead.
   */
  info: MasterInfo;
  /** The validated response as received. */
  raw: MasterInfoResponse;
}

export async function getInfo(baseUrl: string, apiKey: string, options: MasterRequestOptions = {}): Promise<MasterInfoResult> {
  const body = await getJson(baseUrl, 'info', apiKey, options);
  if (!infoCheck.Check(body)) {
    const first = infoCheck.Errors(body).First();
    const where = first ? `${first.path || '/'}: ${first.message}` : 'not an object';
    throw new MasterRequestError('info', { kind: 'invalid-response', message: `unexpected /info shape (${where})` });
  }
  const system: Record<string, number | string> = {};
  for (const field of SYSTEM_FIELDS) {
    const value = body[field];
    if (value !== undefined) system[field] = value;
  }
  return {
    info: {
      masterId: body.mid ?? '',
      alias: body.alias ?? '',
      version: body.ver,
      os: body.os ?? '',
      arch: body.arch ?? '',
      name: body.name ?? '',
      uptime: body.uptime,
      system,
    },
    raw: body,
  };
}

// ---------------------------------------------------------------------------------------------------------
// GET /instances

export interface InstanceListResult {
  /** Every valid instance, the API-key record excluded. */
  instances: Instance[];
  /** The master id from the API-key record's `config`, or `null` if the record was missing. */
  masterId: string | null;
  masterAlias: string | null;
  /**
   * Entries that failed validation. Reconciliation must not tombstone these ids: the instance exists, we just
   * could not read it.
   */
  rejected: { id: string | null; reason: string }[];
}

// Validation goes through the SSE payload parser so that REST and SSE can never disagree on what a valid
// instance is. The envelope's type and time are placeholders; only `instance` is read back.
const RECONCILIATION_ENVELOPE = { type: 'update', time: '1970-01-01T00:00:00Z', logs: '' } as const;

export async function listInstances(
  baseUrl: string,
  apiKey: string,
  options: MasterRequestOptions = {},
): Promise<InstanceListResult> {
  const body = await getJson(baseUrl, 'instances', apiKey, options);
  if (!Array.isArray(body)) {
    throw new MasterRequestError('instances', { kind: 'invalid-response', message: '/instances did not return an array' });
  }
  const result: InstanceListResult = { instances: [], masterId: null, masterAlias: null, rejected: [] };
  for (const item of body as unknown[]) {
    const record = typeof item === 'object' && item !== null ? (item as Record<string, unknown>) : null;
    const id = typeof record?.['id'] === 'string' ? (record['id'] as string) : null;
    if (record && id === API_KEY_RECORD_ID) {
      // Its `url` is the API key: read `config` (the master id) and `alias` only.
      result.masterId = typeof record['config'] === 'string' ? record['config'] : '';
      result.masterAlias = typeof record['alias'] === 'string' ? record['alias'] : '';
      continue;
    }
    const parsed = parseNodePassPayload(JSON.stringify({ ...RECONCILIATION_ENVELOPE, instance: item }));
    if (parsed.kind === 'instance') result.instances.push(parsed.event.instance);
    else result.rejected.push({ id, reason: parsed.kind === 'rejected' ? parsed.reason : `unexpected ${parsed.kind}` });
  }
  return result;
}

// ---------------------------------------------------------------------------------------------------------
// Transport

async function getJson(baseUrl: string, resource: MasterResource, apiKey: string, options: MasterRequestOptions): Promise<unknown> {
  const url = masterResourceUrl(baseUrl, resource);
  const response = await getWithStaleSocketRetry(url, resource, apiKey, options);
  if (response.status !== 200) {
    throw new MasterRequestError(resource, classifyStatus(response.status, scrubBody(response.body, apiKey)));
  }
  try {
    return JSON.parse(response.body.toString('utf8'));
  } catch {
    const type = response.contentType || 'no content type';
    throw new MasterRequestError(resource, {
      kind: 'invalid-response',
      message: `/${resource} body is not JSON (${type}, ${response.body.length} bytes)`,
    });
  }
}

interface RawResponse {
  status: number;
  contentType: string;
  body: Buffer;
}

/**
 * A pooled socket can have been closed by the peer or a NAT while idle; the first write then fails with a
 * reset before any response. That is not the master's fault, so such a request is retried once on a new socket.
 */
async function getWithStaleSocketRetry(
  url: URL,
  resource: MasterResource,
  apiKey: string,
  options: MasterRequestOptions,
): Promise<RawResponse> {
  try {
    return await getOnce(url, resource, apiKey, options, true);
  } catch (error) {
    if (error instanceof StaleSocketError) return getOnce(url, resource, apiKey, options, false);
    throw error;
  }
}

class StaleSocketError extends Error {}

function getOnce(
  url: URL,
  resource: MasterResource,
  apiKey: string,
  options: MasterRequestOptions,
  mayRetryStaleSocket: boolean,
): Promise<RawResponse> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const maxBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
  const agents = options.agents ?? sharedMasterAgents;
  const signal = options.signal;

  return new Promise<RawResponse>((resolve, reject) => {
    if (signal?.aborted) {
      reject(new MasterRequestError(resource, { kind: 'aborted' }));
      return;
    }
    let settled = false;
    let gotResponse = false;
    const settle = (outcome: RawResponse | Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (outcome instanceof Error) {
        request.destroy();
        reject(outcome);
      } else {
        resolve(outcome);
      }
    };
    const fail = (failure: MasterRequestFailure): void => settle(new MasterRequestError(resource, failure));
    const onAbort = (): void => fail({ kind: 'aborted' });

    const isHttps = url.protocol === 'https:';
    let request: http.ClientRequest;
    try {
      request = (isHttps ? https : http).request(url, {
        method: 'GET',
        headers: { 'X-API-Key': apiKey, Accept: 'application/json' },
        agent: agents.agentFor(url, options.insecureTls ?? false),
      });
    } catch (error) {
      // E.g. a key with a control character (ERR_INVALID_CHAR names the header, never its value).
      reject(new MasterRequestError(resource, classifyNetworkError(error)));
      return;
    }
    const timer = setTimeout(() => fail({ kind: 'timeout', message: `no complete response within ${timeoutMs} ms` }), timeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });

    request.on('socket', (socket) => socket.setNoDelay(true));
    request.on('error', (error) => {
      const classified = classifyNetworkError(error);
      if (mayRetryStaleSocket && !gotResponse && request.reusedSocket && classified.kind === 'reset') settle(new StaleSocketError());
      else fail(classified);
    });
    request.on('response', (response) => {
      gotResponse = true;
      const status = response.statusCode ?? 0;
      // An error body is only ever shown truncated; a success body is bounded by `maxResponseBytes`.
      const limit = status === 200 ? maxBytes : ERROR_BODY_BYTES;
      const parts: Buffer[] = [];
      let size = 0;
      const done = (): void => settle({ status, contentType: mediaType(response.headers), body: Buffer.concat(parts, size) });
      response.on('data', (chunk: Buffer) => {
        if (settled) return;
        if (size + chunk.length > limit) {
          if (status === 200) {
            fail({ kind: 'invalid-response', message: `/${resource} body exceeds ${limit} bytes` });
            return;
          }
          parts.push(chunk.subarray(0, limit - size));
          size = limit;
          // Enough of the error body: report now, and don't keep a socket mid-body in the pool.
          response.destroy();
          done();
          return;
        }
        parts.push(chunk);
        size += chunk.length;
      });
      response.on('end', done);
      response.on('error', (error) => fail(classifyNetworkError(error)));
    });
    request.end();
  });
}
