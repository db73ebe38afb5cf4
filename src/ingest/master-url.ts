/**
 * Normalising what an operator types as a master URL into the master's API base (PROTOCOL §1):
 * `http[s]://host:port<prefix>/v1`, where `<prefix>` defaults to `/api`.
 *
 * Accepted forms, all giving `http://h:9090/api/v1`: `http://h:9090/api/v1`, `http://h:9090/api/v1/`,
 * `http://h:9090/api`, `http://h:9090`, and a pasted endpoint such as `http://h:9090/api/v1/events`.
 * A custom prefix keeps its path: `https://h/admin` → `https://h/admin/v1`.
 *
 * Rejected: anything but http(s); credentials in the URL (the API key travels in the `X-API-Key` header and
 * is stored encrypted, never in a URL that ends up in logs); query strings and fragments (NodePass ignores
 * them and they are a classic place to paste a key by mistake).
 */

export class InvalidMasterUrlError extends Error {
  override readonly name = 'InvalidMasterUrlError';
  readonly code = 'INVALID_MASTER_URL';
}

/** The REST and SSE resources under the API base that TunnelPulse uses. */
export type MasterResource = 'events' | 'info' | 'instances';

const DEFAULT_PREFIX = '/api';
// A URL pasted from a browser or the master's docs often points at a resource rather than the base.
const PASTED_RESOURCE = /\/v1\/(?:events|info|instances|docs|openapi\.json)$/;

/**
 * Returns the canonical API base (`<scheme>://<host>[:port]<prefix>/v1`, no trailing slash), or throws
 * `InvalidMasterUrlError` with a message fit to show the operator. The message never repeats the input,
 * which could hold a secret the operator pasted by mistake.
 */
export function normaliseMasterUrl(input: string): string {
  const text = input.trim();
  if (text.length === 0) throw new InvalidMasterUrlError('master URL is empty');

  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new InvalidMasterUrlError('master URL is not a valid absolute URL (expected http(s)://host:port/api/v1)');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new InvalidMasterUrlError(`master URL must use http or https, not ${url.protocol.replace(/:$/, '')}`);
  }
  if (url.username !== '' || url.password !== '') {
    throw new InvalidMasterUrlError('master URL must not contain credentials; the API key is configured separately');
  }
  // `URL.search` is "" for a bare "?", so look at the text as well.
  if (url.search !== '' || text.includes('?')) {
    throw new InvalidMasterUrlError('master URL must not contain a query string');
  }
  if (url.hash !== '' || text.includes('#')) {
    throw new InvalidMasterUrlError('master URL must not contain a fragment');
  }
  if (url.hostname === '') throw new InvalidMasterUrlError('master URL has no host');

  let path = url.pathname.replace(/\/+$/, '');
  if (PASTED_RESOURCE.test(path)) path = path.slice(0, path.lastIndexOf('/'));
  if (path === '') path = DEFAULT_PREFIX;
  if (!path.endsWith('/v1')) path += '/v1';

  // `url.host` keeps IPv6 brackets and drops a default port; the hostname is already lower-cased by URL.
  return `${url.protocol}//${url.host}${path}`;
}

/** The same check as a result, for validating operator input without exceptions. */
export function tryNormaliseMasterUrl(input: string): { ok: true; baseUrl: string } | { ok: false; reason: string } {
  try {
    return { ok: true, baseUrl: normaliseMasterUrl(input) };
  } catch (error) {
    if (error instanceof InvalidMasterUrlError) return { ok: false, reason: error.message };
    throw error;
  }
}

/** `<baseUrl>/<resource>` as a URL object; `baseUrl` must come from `normaliseMasterUrl`. */
export function masterResourceUrl(baseUrl: string, resource: MasterResource): URL {
  return new URL(`${baseUrl}/${resource}`);
}
