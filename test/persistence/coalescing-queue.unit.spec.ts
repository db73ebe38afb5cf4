/**
 * The state queue (src/persistence/queues.ts `CoalescingQueue`): one entry per key, merged, deferred values
 * (`mark`) made only when taken, taken oldest first, and a failed batch put back under anything newer.
 */
import { describe, expect, it } from 'vitest';
import { CoalescingQueue } from '../../src/persistence/queues.js';

interface Value {
  at: number;
  seen: string[];
}

const newerWins = (older: Value, newer: Value): Value => ({ at: Math.max(older.at, newer.at), seen: [...older.seen, ...newer.seen] });
/** A value already made, queued as a deferred one that gives it back (the queue's only way in). */
const made = (value: Value) => ({ queued: false, build: () => value });

describe('CoalescingQueue', () => {
  it('keeps one entry per key, with the time of its first change', () => {
    const q = new CoalescingQueue<Value>(newerWins);
    expect(q.mark('a', made({ at: 1, seen: ['a1'] }), 100)).toBe(1);
    expect(q.mark('b', made({ at: 1, seen: ['b1'] }), 150)).toBe(2);
    expect(q.mark('a', made({ at: 2, seen: ['a2'] }), 200)).toBe(2);
    expect(q.oldestSince()).toBe(100);
    expect(q.take(10)).toEqual([
      { key: 'a', value: { at: 2, seen: ['a1', 'a2'] }, since: 100 },
      { key: 'b', value: { at: 1, seen: ['b1'] }, since: 150 },
    ]);
    expect(q.size).toBe(0);
  });

  it('mark queues a deferred value made only when taken, from its source as it is then', () => {
    const q = new CoalescingQueue<Value>(newerWins);
    const source = { at: 1, seen: ['first'] };
    let built = 0;
    const deferred = { queued: false, build: () => (built++, { at: source.at, seen: [...source.seen] }) };
    expect(q.mark('a', deferred, 100)).toBe(1);
    expect(deferred.queued).toBe(true);
    // The owner notes changes into its source while queued: nothing is made yet.
    source.at = 3;
    source.seen.push('third');
    expect(built).toBe(0);
    expect(q.oldestSince()).toBe(100);
    expect(q.take(1)).toEqual([{ key: 'a', value: { at: 3, seen: ['first', 'third'] }, since: 100 }]);
    expect(built).toBe(1);
    // Taken: released, so a change after the take starts a new entry and never changes the batch being written.
    expect(deferred.queued).toBe(false);
    expect(q.mark('a', deferred, 400)).toBe(1);
    expect(q.take(1)).toEqual([{ key: 'a', value: { at: 3, seen: ['first', 'third'] }, since: 400 }]);
  });

  it('merges a deferred value over what was queued under its key before it (put, or another source)', () => {
    const q = new CoalescingQueue<Value>(newerWins);
    q.mark('a', made({ at: 1, seen: ['put'] }), 100);
    const first = { queued: false, build: () => ({ at: 2, seen: ['first'] }) };
    const second = { queued: false, build: () => ({ at: 3, seen: ['second'] }) };
    q.mark('a', first, 200);
    // Another source under the same key: the first one's value is made now and merged under the second's.
    q.mark('a', second, 300);
    expect(first.queued).toBe(false);
    expect(second.queued).toBe(true);
    q.mark('b', made({ at: 1, seen: ['b'] }), 310);
    q.mark('a', made({ at: 4, seen: ['put again'] }), 320);
    expect(second.queued).toBe(false);
    expect(q.take(10)).toEqual([
      { key: 'a', value: { at: 4, seen: ['put', 'first', 'second', 'put again'] }, since: 100 },
      { key: 'b', value: { at: 1, seen: ['b'] }, since: 310 },
    ]);
  });

  it('puts a failed batch back in front, merged under what was queued since', () => {
    const q = new CoalescingQueue<Value>(newerWins);
    q.mark('a', made({ at: 1, seen: ['a1'] }), 100);
    q.mark('b', made({ at: 1, seen: ['b1'] }), 110);
    const batch = q.take(2);
    q.mark('a', made({ at: 5, seen: ['a5'] }), 300);
    q.mark('c', made({ at: 1, seen: ['c1'] }), 310);
    q.putBack(batch);
    expect(q.take(10)).toEqual([
      { key: 'a', value: { at: 5, seen: ['a1', 'a5'] }, since: 100 },
      { key: 'b', value: { at: 1, seen: ['b1'] }, since: 110 },
      { key: 'c', value: { at: 1, seen: ['c1'] }, since: 310 },
    ]);
  });

  it('puts a failed batch back under a deferred value marked since, which its owner still notes into', () => {
    const q = new CoalescingQueue<Value>(newerWins);
    q.mark('a', made({ at: 1, seen: ['a1'] }), 100);
    q.mark('b', made({ at: 1, seen: ['b1'] }), 110);
    const batch = q.take(2);
    const source = { at: 5, seen: ['a5'] };
    const deferred = { queued: false, build: () => ({ at: source.at, seen: [...source.seen] }) };
    q.mark('a', deferred, 300);
    q.putBack(batch);
    expect(deferred.queued).toBe(true);
    source.at = 6;
    source.seen.push('a6');
    expect(q.take(10)).toEqual([
      { key: 'a', value: { at: 6, seen: ['a1', 'a5', 'a6'] }, since: 100 },
      { key: 'b', value: { at: 1, seen: ['b1'] }, since: 110 },
    ]);
  });
});
