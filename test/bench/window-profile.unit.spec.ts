/**
 * The bench's window profiles (`--cpu-profile`, `--heap-profile`): real inspector sessions on this process, files
 * written where asked. The heap profile must show what a window kept, at about its size.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startWindowHeapProfile, startWindowProfile } from '../../src/bench/window-profile.js';

interface HeapNode {
  callFrame: { functionName: string };
  selfSize: number;
  children: HeapNode[];
}

const dir = mkdtempSync(join(tmpdir(), 'tp-window-profile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Bytes the profile attributes to allocations made directly in functions of this name. */
function bytesIn(node: HeapNode, name: string): number {
  let bytes = node.callFrame.functionName === name ? node.selfSize : 0;
  for (const child of node.children) bytes += bytesIn(child, name);
  return bytes;
}

/** 200,000 small objects kept alive: ~8 MB or more of the heap (16 bytes of header and two fields each, at least). */
function retainForProfileTest(): Array<{ a: number; b: number }> {
  const kept: Array<{ a: number; b: number }> = [];
  for (let i = 0; i < 200_000; i++) kept.push({ a: i, b: i * 2 });
  return kept;
}

describe('window profiles', () => {
  it('a heap profile holds what the window kept, at about its size', async () => {
    const profile = await startWindowHeapProfile(dir);
    expect(profile).not.toBeNull();
    const kept = retainForProfileTest();
    const file = await profile!.stop('tunnelpulse-test');
    expect(file).toBe(join(dir, 'tunnelpulse-test.heapprofile'));
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as { head: HeapNode; samples: unknown[] };
    expect(parsed.samples.length).toBeGreaterThan(100);
    // Sampled every ~1 KB: the kept objects (and their array) show up as megabytes in the function that made them.
    expect(bytesIn(parsed.head, 'retainForProfileTest')).toBeGreaterThan(4_000_000);
    expect(kept).toHaveLength(200_000);
  });

  it('a CPU profile is written as .cpuprofile; no folder, no profile', async () => {
    const profile = await startWindowProfile(dir);
    let x = 0;
    for (let i = 0; i < 1e6; i++) x += Math.sqrt(i);
    const file = await profile!.stop('tunnelpulse-test');
    expect(file).toBe(join(dir, 'tunnelpulse-test.cpuprofile'));
    expect(JSON.parse(readFileSync(file, 'utf8'))).toHaveProperty('nodes');
    expect(x).toBeGreaterThan(0);
    expect(await startWindowProfile(undefined)).toBeNull();
    expect(await startWindowHeapProfile(undefined)).toBeNull();
  });
});
