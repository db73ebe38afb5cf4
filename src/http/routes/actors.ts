/** Raw actor snapshots: every actor of the system (summary) and any one of them with its context. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { AnyActorRef } from 'xstate';
import { actorId } from '../../../actors/model.js';
import { redactUrlCredentials } from '../../runtime/change-feed.js';
import type { HttpDeps } from '../deps.js';
import { notFound } from '../errors.js';
import { ActorDetail, ActorParams, ActorsResponse, errorResponses } from '../schemas.js';

type Kind = 'fleet' | 'endpoint' | 'tunnel' | 'supervisor';
interface Found {
  id: string;
  kind: Kind;
  parent: string | null;
  ref: AnyActorRef;
}

const isActorRef = (v: unknown): v is AnyActorRef =>
  typeof v === 'object' && v !== null && typeof (v as AnyActorRef).send === 'function' && typeof (v as AnyActorRef).getSnapshot === 'function';

/** What an actor reference's `toJSON()` gives: `{ xstate$$type: 1, id }`. */
const isSerialisedRef = (v: unknown): v is { id: string } =>
  typeof v === 'object' && v !== null && (v as Record<string, unknown>)['xstate$$type'] === 1 && typeof (v as { id?: unknown }).id === 'string';

/**
 * Context as plain JSON: child actor references become their ids, the tunnel contexts an endpoint was restored
 * with (kept in the fleet's inputs for restarts, possibly thousands) become their count, and an instance URL's
 * tunnel key is masked.
 */
export function plainContext(context: unknown): unknown {
  return JSON.parse(
    JSON.stringify(context ?? null, (key, value: unknown) => {
      if (isActorRef(value) || isSerialisedRef(value)) return value.id;
      if (key === 'restoreTunnels' && Array.isArray(value)) return { count: value.length };
      if ((key === 'url' || key === 'config' || key === 'raw') && typeof value === 'string') return redactUrlCredentials(value);
      return value;
    }),
  );
}

export const actorRoutes: FastifyPluginAsyncTypebox<HttpDeps> = async (fastify, deps) => {
  const { runtime } = deps;

  function* walk(): Generator<Found> {
    const fleetId = actorId.fleet();
    yield { id: fleetId, kind: 'fleet', parent: null, ref: runtime.fleet as unknown as AnyActorRef };
    const fleet = runtime.fleet.getSnapshot().context;
    for (const [name, ref] of Object.entries(fleet.supervisors)) {
      if (ref) yield { id: name, kind: 'supervisor', parent: fleetId, ref: ref as AnyActorRef };
    }
    for (const endpoint of Object.values(fleet.endpoints)) {
      const e = endpoint.getSnapshot().context;
      const eid = actorId.endpoint(e.endpointId);
      yield { id: eid, kind: 'endpoint', parent: fleetId, ref: endpoint as AnyActorRef };
      for (const tunnel of Object.values(e.tunnels)) {
        const t = tunnel.getSnapshot().context;
        yield { id: actorId.tunnel(t.endpointId, t.instanceId), kind: 'tunnel', parent: eid, ref: tunnel as AnyActorRef };
      }
    }
  }

  /** Direct lookup by id shape, so one tunnel among thousands is found without a walk. */
  function find(id: string): Found | null {
    const fleetId = actorId.fleet();
    if (id === fleetId) return { id, kind: 'fleet', parent: null, ref: runtime.fleet as unknown as AnyActorRef };
    const fleet = runtime.fleet.getSnapshot().context;
    const supervisor = fleet.supervisors[id as keyof typeof fleet.supervisors];
    if (supervisor) return { id, kind: 'supervisor', parent: fleetId, ref: supervisor as AnyActorRef };
    const endpoint = /^endpoint:(\d+)$/.exec(id);
    if (endpoint) {
      const ref = runtime.endpointRef(Number(endpoint[1]));
      return ref ? { id, kind: 'endpoint', parent: fleetId, ref: ref as AnyActorRef } : null;
    }
    const tunnel = /^tunnel:(\d+)\/(.+)$/.exec(id);
    if (tunnel) {
      const ref = runtime.endpointRef(Number(tunnel[1]))?.getSnapshot().context.tunnels[tunnel[2]!];
      return ref ? { id, kind: 'tunnel', parent: actorId.endpoint(Number(tunnel[1])), ref: ref as AnyActorRef } : null;
    }
    return null;
  }

  fastify.get('/api/actors', {
    schema: {
      tags: ['actors'],
      summary: 'Every actor: id, kind, parent, state value, status',
      response: { 200: ActorsResponse, ...errorResponses },
    },
  }, async () => {
    const actors = [];
    for (const found of walk()) {
      const snap = found.ref.getSnapshot() as { value?: unknown; status: string };
      actors.push({ id: found.id, kind: found.kind, parent: found.parent, value: snap.value ?? null, status: snap.status });
    }
    return { actors };
  });

  fastify.get('/api/actors/:actorId', {
    schema: {
      tags: ['actors'],
      summary: 'One actor with its context (ids: fleet, endpoint:<id>, tunnel:<endpointId>/<instanceId>, supervisor names)',
      params: ActorParams,
      response: { 200: ActorDetail, ...errorResponses },
    },
  }, async (request) => {
    const found = find(request.params.actorId);
    if (!found) throw notFound(`actor ${request.params.actorId}`);
    const snap = found.ref.getSnapshot() as { value?: unknown; status: string; context?: unknown };
    return { id: found.id, kind: found.kind, parent: found.parent, value: snap.value ?? null, status: snap.status, context: plainContext(snap.context) };
  });
};
