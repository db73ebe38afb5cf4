/**
 * The live actor tree as the /inspect page shows it: fleet → endpoints → tunnels, plus the supervisors, each
 * with its machine, state value and status; and a JSON-safe view of any value an actor holds (contexts and
 * events carry actor refs, Maps and arbitrarily long strings).
 */
import { redactUrlCredentials } from '../runtime/change-feed.js';
import type { AnyActorRef } from 'xstate';
import type { Runtime } from '../runtime/runtime.js';
import { BATCHER_SUPERVISORS, SCHEDULED_SUPERVISORS, type MachineName } from './machines.js';

export type ActorKind = 'fleet' | 'endpoint' | 'tunnel' | 'supervisor';

export interface ActorNode {
  id: string;
  kind: ActorKind;
  parent: string | null;
  machine: MachineName;
  /** What the tree shows beside the id: an endpoint's name, a tunnel's alias (untrusted text). */
  label: string | null;
  value: unknown;
  status: string;
}

interface Found {
  ref: AnyActorRef;
  kind: ActorKind;
  parent: string | null;
  machine: MachineName;
}

const SUPERVISORS = [...BATCHER_SUPERVISORS, ...SCHEDULED_SUPERVISORS] as const;

/** Every actor with its ref, parents before children. */
export function listActors(runtime: Runtime): (Found & { id: string })[] {
  const fleet = runtime.fleet.getSnapshot();
  const out: (Found & { id: string })[] = [{ id: 'fleet', ref: runtime.fleet as AnyActorRef, kind: 'fleet', parent: null, machine: 'fleet' }];
  for (const name of SUPERVISORS) {
    const ref = fleet.context.supervisors[name];
    if (ref) out.push({ id: name, ref: ref as AnyActorRef, kind: 'supervisor', parent: 'fleet', machine: name === 'hourlyRollup' || name === 'retention' ? 'scheduled-job' : 'batcher' });
  }
  for (const endpoint of Object.values(fleet.context.endpoints)) {
    out.push({ id: endpoint.id, ref: endpoint as AnyActorRef, kind: 'endpoint', parent: 'fleet', machine: 'endpoint' });
    for (const tunnel of Object.values(endpoint.getSnapshot().context.tunnels)) {
      out.push({ id: tunnel.id, ref: tunnel as AnyActorRef, kind: 'tunnel', parent: endpoint.id, machine: 'tunnel' });
    }
  }
  return out;
}

/** One actor by id, without listing the others (a tunnel is found through its endpoint). */
export function findActor(runtime: Runtime, id: string): (Found & { id: string }) | null {
  const fleet = runtime.fleet.getSnapshot();
  if (id === 'fleet') return { id, ref: runtime.fleet as AnyActorRef, kind: 'fleet', parent: null, machine: 'fleet' };
  if ((SUPERVISORS as readonly string[]).includes(id)) {
    const ref = fleet.context.supervisors[id as (typeof SUPERVISORS)[number]];
    const machine = id === 'hourlyRollup' || id === 'retention' ? 'scheduled-job' : 'batcher';
    return ref ? { id, ref: ref as AnyActorRef, kind: 'supervisor', parent: 'fleet', machine } : null;
  }
  const endpointMatch = /^endpoint:(\d+)$/.exec(id);
  if (endpointMatch) {
    const ref = fleet.context.endpoints[endpointMatch[1]!];
    return ref ? { id, ref: ref as AnyActorRef, kind: 'endpoint', parent: 'fleet', machine: 'endpoint' } : null;
  }
  const tunnelMatch = /^tunnel:(\d+)\/(.+)$/.exec(id);
  if (tunnelMatch) {
    const endpoint = fleet.context.endpoints[tunnelMatch[1]!];
    const ref = endpoint?.getSnapshot().context.tunnels[tunnelMatch[2]!];
    return ref && endpoint ? { id, ref: ref as AnyActorRef, kind: 'tunnel', parent: endpoint.id, machine: 'tunnel' } : null;
  }
  return null;
}

export function labelOf(kind: ActorKind, context: unknown): string | null {
  const c = context as Record<string, unknown> | undefined;
  if (kind === 'endpoint' && typeof c?.['name'] === 'string') return c['name'];
  if (kind === 'tunnel' && typeof c?.['alias'] === 'string' && c['alias'] !== '') return c['alias'];
  return null;
}

export function nodeOf(found: Found & { id: string }, snapshot = found.ref.getSnapshot()): ActorNode {
  return {
    id: found.id,
    kind: found.kind,
    parent: found.parent,
    machine: found.machine,
    label: labelOf(found.kind, snapshot.context),
    value: snapshot.value ?? null,
    status: snapshot.status,
  };
}

export interface SafeJsonLimits {
  maxDepth: number;
  maxArray: number;
  maxKeys: number;
  maxString: number;
}

export const CONTEXT_LIMITS: SafeJsonLimits = { maxDepth: 8, maxArray: 100, maxKeys: 200, maxString: 2_000 };
export const EVENT_LIMITS: SafeJsonLimits = { maxDepth: 6, maxArray: 20, maxKeys: 50, maxString: 500 };


const isActorRef = (v: object): v is AnyActorRef => 'sessionId' in v && 'send' in v && typeof (v as { send: unknown }).send === 'function';

/**
 * A plain, bounded copy of a value for JSON: actor refs become `{ "$actor": id }`, Maps and Sets become
 * objects and arrays, long strings and collections are cut with a visible marker (never silently), and URL
 * userinfo (tunnel passwords) is masked.
 */
export function toSafeJson(value: unknown, limits: SafeJsonLimits = CONTEXT_LIMITS, depth = 0): unknown {
  if (value === null || typeof value === 'boolean') return value;
  if (typeof value === 'number') return Number.isFinite(value) ? value : String(value);
  if (typeof value === 'string') {
    const text = redactUrlCredentials(value); // a tunnel URL may carry its password as userinfo
    return text.length > limits.maxString ? `${text.slice(0, limits.maxString)}… (${text.length} chars)` : text;
  }
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'undefined') return undefined;
  if (typeof value === 'function' || typeof value === 'symbol') return undefined;
  if (isActorRef(value as object)) return { $actor: (value as AnyActorRef).id };
  if (depth >= limits.maxDepth) return '…';
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Map) return toSafeJson(Object.fromEntries([...value.entries()].slice(0, limits.maxKeys)), limits, depth);
  if (value instanceof Set) return toSafeJson([...value], limits, depth);
  if (Array.isArray(value)) {
    const items = value.slice(0, limits.maxArray).map((v) => toSafeJson(v, limits, depth + 1) ?? null);
    if (value.length > limits.maxArray) items.push(`… ${value.length - limits.maxArray} more`);
    return items;
  }
  const out: Record<string, unknown> = {};
  const entries = Object.entries(value as Record<string, unknown>);
  for (const [key, v] of entries.slice(0, limits.maxKeys)) {
    const safe = toSafeJson(v, limits, depth + 1);
    if (safe !== undefined) out[key] = safe;
  }
  if (entries.length > limits.maxKeys) out['…'] = `${entries.length - limits.maxKeys} more keys`;
  return out;
}
