/**
 * Instance URLs as the master rewrites them (PROTOCOL §3.2): `url` is the "enhanced" URL (query re-encoded with
 * sorted keys plus `log=<master level>`), `config` is the same URL with every default filled in.
 */

export type InstanceType = 'server' | 'client';

export interface ParsedInstanceUrl {
  type: InstanceType;
  /** `[userinfo@]host:port`, kept verbatim. */
  authority: string;
  /** `/target-host:port`, kept verbatim. */
  path: string;
  query: Map<string, string>;
}

export class InvalidInstanceUrl extends Error {
  constructor(readonly reason: 'invalid-body' | 'invalid-scheme') {
    super(reason === 'invalid-scheme' ? 'Invalid URL scheme' : 'Invalid request body');
  }
}

const SERVER_DEFAULTS: Record<string, string> = {
  block: '0', dial: 'auto', dns: '5m0s', max: '1024', mode: '0', notcp: '0', noudp: '0',
  proxy: '0', rate: '0', read: '0s', slot: '65536', type: '0',
};
const CLIENT_DEFAULTS: Record<string, string> = {
  block: '0', dial: 'auto', dns: '5m0s', min: '64', mode: '0', notcp: '0', noudp: '0',
  proxy: '0', rate: '0', read: '0s', slot: '65536', sni: 'none',
};

/** Go's `url.QueryEscape`. */
function goQueryEscape(value: string): string {
  return encodeURIComponent(value)
    .replace(/[!'()*]/g, (ch) => `%${ch.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%20/g, '+');
}

function goQueryUnescape(value: string): string {
  try {
    return decodeURIComponent(value.replace(/\+/g, ' '));
  } catch {
    return value;
  }
}

/** Go's `url.Values.Encode()`: keys sorted, `k=v` joined by `&`. */
function encodeQuery(query: Map<string, string>): string {
  return [...query.keys()]
    .sort()
    .map((k) => `${goQueryEscape(k)}=${goQueryEscape(query.get(k)!)}`)
    .join('&');
}

export function parseInstanceUrl(raw: string): ParsedInstanceUrl {
  const match = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^?#]*)(?:\?([^#]*))?/.exec(raw.trim());
  if (!match) throw new InvalidInstanceUrl(raw.includes('://') ? 'invalid-body' : 'invalid-scheme');
  const scheme = match[1]!.toLowerCase();
  if (scheme !== 'server' && scheme !== 'client') throw new InvalidInstanceUrl('invalid-scheme');
  const query = new Map<string, string>();
  for (const part of (match[4] ?? '').split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const key = goQueryUnescape(eq === -1 ? part : part.slice(0, eq));
    if (!query.has(key)) query.set(key, goQueryUnescape(eq === -1 ? '' : part.slice(eq + 1)));
  }
  return { type: scheme, authority: match[2]!, path: match[3]!, query };
}

function build(parsed: ParsedInstanceUrl, query: Map<string, string>): string {
  return `${parsed.type}://${parsed.authority}${parsed.path}?${encodeQuery(query)}`;
}

/** The `url` the master stores: sorted query, `log` added unless the instance sets its own. */
export function enhanceInstanceUrl(parsed: ParsedInstanceUrl, masterLogLevel: string): string {
  const query = new Map(parsed.query);
  if (!query.has('log')) query.set('log', masterLogLevel);
  return build(parsed, query);
}

/** The `config` the master reports: the enhanced URL with every default filled in. */
export function instanceConfig(parsed: ParsedInstanceUrl, masterLogLevel: string): string {
  const defaults = parsed.type === 'server' ? SERVER_DEFAULTS : CLIENT_DEFAULTS;
  const query = new Map(Object.entries(defaults));
  query.set('log', masterLogLevel);
  for (const [k, v] of parsed.query) query.set(k, v);
  return build(parsed, query);
}

/** The tunnel's `mode` query value as a number (0 = auto when absent or not numeric). */
export function configuredMode(parsed: ParsedInstanceUrl): number {
  const mode = Number(parsed.query.get('mode') ?? '0');
  return Number.isInteger(mode) ? mode : 0;
}
