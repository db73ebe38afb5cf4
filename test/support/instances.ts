/** Builders for validated NodePass instances and events, shaped like the captures (PROTOCOL §4, §11). */
import type { Counters, Instance, InstanceEvent, InstanceStatus } from '../../actors/model.js';

export const T0 = Date.parse('2026-11-26T09:15:34.054Z');

export function instance(overrides: Partial<Instance> = {}): Instance {
  return {
    id: 'a236701f',
    alias: 'np-server',
    type: 'server',
    status: 'running',
    url: 'server://127.0.0.1:19100/127.0.0.1:19200?log=debug&max=16&mode=1',
    config: 'server://127.0.0.1:19100/127.0.0.1:19200?block=0&dial=auto&dns=5m0s&log=debug&max=16&mode=1',
    restart: true,
    meta: { peer: { sid: '', type: '', alias: '' }, tags: {} },
    mode: 1,
    ping: 0,
    pool: 3,
    tcps: 0,
    udps: 0,
    tcprx: 0,
    tcptx: 0,
    udprx: 0,
    udptx: 0,
    ...overrides,
  };
}

/** Go's RFC 3339 nano time for an epoch-ms instant (with a fixed nanosecond tail, as NodePass sends). */
export const goTime = (ms: number, nanos = '123456'): string => new Date(ms).toISOString().replace('Z', `${nanos}Z`);

export function instanceEvent(
  type: InstanceEvent['type'],
  at: number,
  inst: Partial<Instance> = {},
  logs = '',
): InstanceEvent {
  return { type, at, time: goTime(at), instance: instance(inst), logs };
}

export const counters = (tcprx: number, tcptx = tcprx, udprx = 0, udptx = 0): Counters => ({ tcprx, tcptx, udprx, udptx });

export const withStatus = (status: InstanceStatus, c: Partial<Counters> = {}): Partial<Instance> => ({ status, ...c });

/** What a tunnel view (HTTP) must show for an instance the master lists (`GET /instances`). */
export function expectedTunnelView(inst: Instance) {
  return {
    instanceId: inst.id,
    alias: inst.alias,
    type: inst.type,
    url: inst.url,
    status: inst.status,
    deleted: false,
    counters: { tcprx: inst.tcprx, tcptx: inst.tcptx, udprx: inst.udprx, udptx: inst.udptx },
    mode: inst.mode,
    ping: inst.ping,
    pool: inst.pool,
    tcps: inst.tcps,
    udps: inst.udps,
    meta: inst.meta,
  };
}
