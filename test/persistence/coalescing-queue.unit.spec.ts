/**
 * The state queue (src/persistence/queues.ts `CoalescingQueue`): one entry per key, merged on `put`, changed in
 * place on `upsert`, taken oldest first, and a failed batch put back under anything newer.
 */
import { describe, expect, it } from 'vitest';
import { CoalescingQueue } from '../../src/persistence/queues.js';

interface Value {
  at: number;
  seen: string[];
}

const newerWins = (older: Value, newer: Value): Value => ({ at: Math.max(older.at, newer.at), seen: [...older.seen, ...newer.seen] });

describe('CoalescingQueue', () => {
  it('keeps one entry per key, with the time of its first change', () => {
    const q = new CoalescingQueue<Value>(newerWins);
    expect(q.put('a', { at: 1, seen: ['a1'] }, 100)).toBe(1);
    expect(q.put('b', { at: 1, seen: ['b1'] }, 150)).toBe(2);
    expect(q.put('a', { at: 2, seen: ['a2'] }, 200)).toBe(2);
    expect(q.oldestSince()).toBe(100);
    expect(q.take(10)).toEqual([
      { key: 'a', value: { at: 2, seen: ['a1', 'a2'] }, since: 100 },
      { key: 'b', value: { at: 1, seen: ['b1'] }, since: 150 },
    ]);
    expect(q.size).toBe(0);
  });

  it('upsert creates once, then updates the queued value in place (same object, no new value made)', () => {
    const q = new CoalescingQueue<Value>(newerWins);
    let created = 0;
    const create = () => (created++, { at: 1, seen: ['first'] });
    q.upsert('a', 100, create, () => {
      throw new Error('nothing queued yet');
    });
    expect(q.size).toBe(1);
    q.upsert('a', 200, create, (v) => void (v.at = 2, v.seen.push('second')));
    q.upsert('a', 300, create, (v) => void (v.at = 3, v.seen.push('third')));
    expect(created).toBe(1);
    expect(q.take(1)).toEqual([{ key: 'a', value: { at: 3, seen: ['first', 'second', 'third'] }, since: 100 }]);
    // Taken: the next change starts a new entry, so a batch being written is never changed under the writer.
    q.upsert('a', 400, create, () => {
      throw new Error('the taken entry must not be updated');
    });
    expect(created).toBe(2);
  });

  it('puts a failed batch back in front, merged under what was queued since', () => {
    const q = new CoalescingQueue<Value>(newerWins);
    q.put('a', { at: 1, seen: ['a1'] }, 100);
    q.put('b', { at: 1, seen: ['b1'] }, 110);
    const batch = q.take(2);
    q.put('a', { at: 5, seen: ['a5'] }, 300);
    q.put('c', { at: 1, seen: ['c1'] }, 310);
    q.putBack(batch);
    expect(q.take(10)).toEqual([
      { key: 'a', value: { at: 5, seen: ['a1', 'a5'] }, since: 100 },
      { key: 'b', value: { at: 1, seen: ['b1'] }, since: 110 },
      { key: 'c', value: { at: 1, seen: ['c1'] }, since: 310 },
    ]);
  });
});
