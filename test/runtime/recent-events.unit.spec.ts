import { describe, expect, it } from 'vitest';
import type { Instance, ParsedEvent } from '../../actors/model.js';
import { RecentEvents } from '../../src/runtime/recent-events.js';
import { instance } from '../support/instances.js';

const update = (id: string, at: number, status: Instance['status'] = 'running'): ParsedEvent =>
  ({ kind: 'instance', event: { type: 'update', at, time: new Date(at).toISOString(), instance: instance({ id, status }), logs: '' } }) as unknown as ParsedEvent;

describe('RecentEvents', () => {
  it('keeps the last `capacity` events, newest first, across wrap-around', () => {
    const ring = new RecentEvents(3);
    for (let i = 1; i <= 5; i++) ring.record(update(`0000000${i}`, 1_000 * i), 10_000 + i);
    expect(ring.total).toBe(5);
    expect(ring.latest().map((e) => e.instanceId)).toEqual(['00000005', '00000004', '00000003']);
    expect(ring.latest(2).map((e) => e.receivedAt)).toEqual([10_005, 10_004]);
    expect(ring.latest()[0]).toEqual({ receivedAt: 10_005, kind: 'instance', type: 'update', instanceId: '00000005', status: 'running', at: 5_000 });
  });

  it('summarises every kind: master record, shutdown, rejection (no time of the master)', () => {
    const ring = new RecentEvents(10);
    ring.record({ kind: 'master', type: 'initial', at: 1, masterId: 'm', alias: '' } as ParsedEvent, 11);
    ring.record({ kind: 'shutdown', at: 2, time: '' } as ParsedEvent, 12);
    ring.record({ kind: 'rejected', reason: 'not JSON' } as ParsedEvent, 13);
    expect(ring.latest()).toEqual([
      { receivedAt: 13, kind: 'rejected', type: 'not JSON', instanceId: null, status: null, at: null },
      { receivedAt: 12, kind: 'shutdown', type: 'shutdown', instanceId: null, status: null, at: 2 },
      { receivedAt: 11, kind: 'master', type: 'initial', instanceId: null, status: null, at: 1 },
    ]);
  });

  it('records nothing with a capacity of 0', () => {
    const ring = new RecentEvents(0);
    ring.record(update('00000001', 1), 1);
    expect(ring.latest()).toEqual([]);
  });
});
