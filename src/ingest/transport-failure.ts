/**
 * How a request to a NodePass master failed, classified so that the endpoint state machine can act on it
 * without parsing error strings: `auth` parks the endpoint until a new key arrives, `refused`/`dns`/`timeout`/
 * `reset`/`network` back off and retry, `tls` usually needs an operator (certificate or `insecureTls`), and
 * `http`/`not-sse`/`invalid-response` mean something other than a NodePass master answered.
 *
 * Shared by the SSE stream and the REST calls, so both report the same words for the same trouble.
 */
import type { IncomingHttpHeaders } from 'node:http';

export type NetworkFailureKind = 'refused' | 'dns' | 'timeout' | 'tls' | 'reset' | 'network';

export type TransportFailure =
  /** 401 or 403: the key is missing, wrong or rotated (PROTOCOL §2). `body` is NodePass's `{"error":…}`. */
  | { kind: 'auth'; status: 401 | 403; body: string }
  /** Any other status we did not ask for. `body` is the first bytes of the response body only. */
  | { kind: 'http'; status: number; body: string }
  | { kind: NetworkFailureKind; message: string };

/** At most this much of an error body is kept: enough for NodePass's `{"error":"…"}`, too little for a page. */
export const ERROR_BODY_BYTES = 200;

const REFUSED = new Set(['ECONNREFUSED']);
const DNS = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_NONAME', 'EAI_NODATA', 'EAI_FAIL']);
const TIMEOUT = new Set(['ETIMEDOUT', 'ESOCKETTIMEDOUT']);
const RESET = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE']);
// OpenSSL verification codes as Node reports them on `error.code`.
const TLS = new Set([
  'EPROTO',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REVOKED',
  'CERT_SIGNATURE_FAILURE',
  'HOSTNAME_MISMATCH',
]);

/** Maps a Node socket/TLS/DNS error to a failure kind by its `code` (never by its message text). */
export function classifyNetworkError(error: unknown): { kind: NetworkFailureKind; message: string } {
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  const message = error instanceof Error ? error.message : String(error);
  if (typeof code !== 'string') return { kind: 'network', message };
  if (REFUSED.has(code)) return { kind: 'refused', message };
  if (DNS.has(code)) return { kind: 'dns', message };
  if (TIMEOUT.has(code)) return { kind: 'timeout', message };
  if (RESET.has(code)) return { kind: 'reset', message };
  if (TLS.has(code) || code.startsWith('ERR_TLS_') || code.startsWith('ERR_SSL_') || code.startsWith('CERT_')) {
    return { kind: 'tls', message };
  }
  return { kind: 'network', message };
}

/** Classifies a non-success status; `body` must already be truncated and scrubbed (`scrubBody`). */
export function classifyStatus(status: number, body: string): TransportFailure {
  if (status === 401 || status === 403) return { kind: 'auth', status, body };
  return { kind: 'http', status, body };
}

/**
 * Turns the first bytes of an error body into text safe to log: at most `ERROR_BODY_BYTES`, and with the API
 * key blanked should a proxy or a debugging endpoint reflect our request headers into its body.
 */
export function scrubBody(bytes: Buffer, apiKey: string): string {
  let text = bytes.subarray(0, ERROR_BODY_BYTES).toString('utf8');
  if (apiKey.length > 0) text = text.split(apiKey).join('[redacted]');
  return text;
}

/** The media type of a response (`text/event-stream; charset=utf-8` → `text/event-stream`), or `""`. */
export function mediaType(headers: IncomingHttpHeaders): string {
  const value = headers['content-type'] ?? '';
  return value.split(';', 1)[0]!.trim().toLowerCase();
}

/** A failure as one short line for logs and journals (no bodies of unknown size, no secrets). */
export function describeFailure(failure: TransportFailure): string {
  switch (failure.kind) {
    case 'auth':
    case 'http':
      return `HTTP ${failure.status}${failure.body ? `: ${failure.body.slice(0, 80)}` : ''}`;
    default:
      return `${failure.kind}: ${failure.message}`;
  }
}
