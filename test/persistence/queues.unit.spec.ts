/**
 * SpillingQueue: order across memory and disk, the memory cap (counting batches out with a writer), byte
 * offsets with non-ASCII lines, a torn last line after a crash, and spillAll + a new process reading it back.
 */
import { appendFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SpillingQueue } from '../../src/persistence/queues.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const spillPath = () => {
  const dir = mkdtempSync(join(tmpdir(), 'tp-queue-'));
  dirs.push(dir);
  return join(dir, 'q.spill.jsonl');
};

/** Takes everything, batch by batch, marking each written. */
function drainAll<T>(q: SpillingQueue<T>, batch: number): T[] {
  const out: T[] = [];
  for (;;) {
    const b = q.take(batch);
    if (b.length === 0) break;
    out.push(...b.map((x) => x.item));
    q.done(b);
  }
  return out;
}

describe('SpillingQueue', () => {
  it('keeps FIFO order across memory and the spill file, with non-ASCII items', () => {
    const q = new SpillingQueue<string>({ memoryCap: 10, spillPath: spillPath() });
    const items = Array.from({ length: 95 }, (_, i) => `line ${i} — ünïcødé ✓ ${'x'.repeat(i % 7)}`);
    for (const item of items) q.push(item, 0);
    expect(q.size).toBe(95);
    expect(q.spilledNow).toBe(85);
    expect(drainAll(q, 7)).toEqual(items);
    expect(q.size).toBe(0);
    expect(q.spillBytes()).toBe(0);
  });

  it('counts a batch out with a writer against the cap, and a put-back batch comes first again', () => {
    const q = new SpillingQueue<number>({ memoryCap: 10, spillPath: spillPath() });
    for (let i = 0; i < 10; i++) q.push(i, 0);
    const out = q.take(6);
    for (let i = 10; i < 20; i++) q.push(i, 0); // memory holds 4 + 6 out: all of these spill
    expect(q.memoryHeld).toBe(10);
    expect(q.spilledNow).toBe(10);
    q.putBack(out);
    expect(q.memoryHeld).toBe(10);
    expect(drainAll(q, 4)).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });

  it('skips a torn last line left by a crash instead of blocking', () => {
    const path = spillPath();
    appendFileSync(path, JSON.stringify({ since: 1, item: 'a' }) + '\n' + JSON.stringify({ since: 2, item: 'b' }) + '\n{"since":3,"ite');
    const q = new SpillingQueue<string>({ memoryCap: 10, spillPath: path });
    expect(drainAll(q, 5)).toEqual(['a', 'b']);
    expect(q.size).toBe(0);
  });

  it('spillAll puts batches out with a writer and the queue at the front of the file; a new queue reads them first', () => {
    const path = spillPath();
    const q = new SpillingQueue<number>({ memoryCap: 5, spillPath: path });
    for (let i = 0; i < 12; i++) q.push(i, 0); // 0–4 in memory, 5–11 spilled
    const hung = q.take(3); // 0,1,2 out with a write that never answers
    expect(hung.map((h) => h.item)).toEqual([0, 1, 2]);
    expect(q.spillAll(0)).toBe(true);
    expect(q.memoryHeld).toBe(0);
    const next = new SpillingQueue<number>({ memoryCap: 5, spillPath: path });
    expect(next.size).toBe(12);
    expect(drainAll(next, 4)).toEqual(Array.from({ length: 12 }, (_, i) => i));
  });
});
