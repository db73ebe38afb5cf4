/**
 * The state flush in chunks (persister.ts `writeStateBatch`): the tunnels queued when a flush starts, written
 * `FLUSH_CHUNK_ROWS` at a time, each with its own hour buckets; a failing chunk goes back to the queue and the
 * flush stops there; tunnels queued during the flush wait for the next one.
 */
import { describe, expect, it } from 'vitest';
import type { HourBucketRecord, TunnelStateRecord } from '../../actors/records.js';
import { FLUSH_CHUNK_ROWS } from '../../src/db/store.js';
import { DEFAULT_PERSISTER_SETTINGS, Persister, type PersistenceStore } from '../../src/persistence/persister.js';
import { Stats } from '../../src/runtime/stats.js';

const HOUR = 1_764_147_600_000;

function state(i: number, at = 1_000): TunnelStateRecord {
  const zero = { tcprx: 0, tcptx: 0, udprx: 0, udptx: 0 };
  return { endpointId: 1, instanceId: `t${i}`, at, status: 'running', mode: 1, ping: 1, pool: 0, tcps: 0, udps: 0, counters: zero, traffic: zero, resume: {} };
}

function fakeStore(failOnCall: number | null) {
  const calls: Array<{ states: readonly TunnelStateRecord[]; buckets: readonly HourBucketRecord[] }> = [];
  const store = {
    async flushTunnelStates(states: readonly TunnelStateRecord[], buckets: readonly HourBucketRecord[]) {
      calls.push({ states, buckets });
      await new Promise((r) => setImmediate(r));
      if (calls.length === failOnCall) throw new Error('connection lost');
      return { statements: 2, rows: states.length + buckets.length, states: states.length, buckets: buckets.length };
    },
  } as unknown as PersistenceStore;
  return { store, calls };
}

function queue(persister: Persister, from: number, count: number, at = 1_000): void {
  for (let i = from; i < from + count; i++) {
    const value = { state: state(i, at), hours: { [HOUR]: { tcprx: i, tcptx: 0, udprx: 0, udptx: 0 } } };
    persister.stateQueue.mark(`1/t${i}`, { queued: false, build: () => value }, 0);
  }
}

describe('state flush in chunks', () => {
  it('writes every queued tunnel in chunks, each with its own buckets', async () => {
    const { store, calls } = fakeStore(null);
    const persister = new Persister(store, new Stats(), () => 0, DEFAULT_PERSISTER_SETTINGS);
    const n = FLUSH_CHUNK_ROWS * 2 + 5;
    queue(persister, 0, n);
    const result = await persister.writeBatch('stateFlusher');
    expect(result).toMatchObject({ rows: 2 * n, remaining: 0 });
    expect(calls.map((c) => c.states.length)).toEqual([FLUSH_CHUNK_ROWS, FLUSH_CHUNK_ROWS, 5]);
    for (const call of calls) expect(call.buckets.map((b) => b.instanceId)).toEqual(call.states.map((s) => s.instanceId));
  });

  it('puts a failing chunk back and stops; the retry writes the rest, and nothing is written twice', async () => {
    const { store, calls } = fakeStore(2);
    const persister = new Persister(store, new Stats(), () => 0, { ...DEFAULT_PERSISTER_SETTINGS, recoveryProbeMs: 0 });
    const n = FLUSH_CHUNK_ROWS * 3;
    queue(persister, 0, n);
    await expect(persister.writeBatch('stateFlusher')).rejects.toThrow('connection lost');
    expect(calls).toHaveLength(2);
    expect(persister.stateQueue.size).toBe(n - FLUSH_CHUNK_ROWS);
    const result = await persister.writeBatch('stateFlusher');
    expect(result.remaining).toBe(0);
    const committed = [calls[0]!, ...calls.slice(2)].flatMap((c) => c.states.map((s) => s.instanceId));
    expect(new Set(committed).size).toBe(n);
    expect(committed).toHaveLength(n);
  });

  it('leaves tunnels queued during the flush for the next one', async () => {
    const { store, calls } = fakeStore(null);
    const persister = new Persister(store, new Stats(), () => 0, DEFAULT_PERSISTER_SETTINGS);
    queue(persister, 0, FLUSH_CHUNK_ROWS + 10);
    const flushing = persister.writeBatch('stateFlusher');
    // While the first chunk is out: a newer state of a tunnel already taken, and of one still waiting.
    queue(persister, 0, 1, 2_000);
    queue(persister, FLUSH_CHUNK_ROWS + 5, 1, 2_000);
    await flushing;
    expect(calls.map((c) => c.states.length)).toEqual([FLUSH_CHUNK_ROWS, 10]);
    expect(calls[1]!.states.find((s) => s.instanceId === `t${FLUSH_CHUNK_ROWS + 5}`)!.at).toBe(2_000);
    expect(persister.stateQueue.size).toBe(1); // t0's newer state
    await persister.writeBatch('stateFlusher');
    expect(calls[2]!.states.map((s) => [s.instanceId, s.at])).toEqual([['t0', 2_000]]);
  });
});
