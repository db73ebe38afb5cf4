/**
 * Optional profiles of TunnelPulse's measured window: what the process does in steady state, without the start-up
 * (spawning the tunnels, the initial snapshot) that a whole-process `--cpu-prof` mixes in.
 *
 * - `bench --cpu-profile <dir>`: a CPU profile (`tunnelpulse-<rate>.cpuprofile`).
 * - `bench --heap-profile <dir>`: a sampling heap profile (`tunnelpulse-<rate>.heapprofile`) of what the window
 *   allocated and the young generation did not collect — objects still alive at its end and objects promoted then
 *   collected by a full collection — i.e. what each scavenge had to copy: the garbage that costs pauses
 *   (docs/performance.md, Session 5). Short-lived garbage is not in it.
 *
 * Both open in Chrome DevTools (or any `.cpuprofile` / `.heapprofile` viewer).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';

export interface WindowProfile {
  stop(name: string): Promise<string>;
}

/** Bytes between heap samples: ~one sample per 1 KB allocated, fine enough for a 15 s window at 20,000 events/s. */
const HEAP_SAMPLING_INTERVAL = 1024;

export async function startWindowProfile(dir: string | undefined): Promise<WindowProfile | null> {
  if (!dir) return null;
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  return {
    async stop(name: string): Promise<string> {
      const { profile } = await session.post('Profiler.stop');
      session.disconnect();
      return write(dir, `${name}.cpuprofile`, profile);
    },
  };
}

export async function startWindowHeapProfile(dir: string | undefined): Promise<WindowProfile | null> {
  if (!dir) return null;
  const session = new Session();
  session.connect();
  await session.post('HeapProfiler.enable');
  await session.post('HeapProfiler.startSampling', { samplingInterval: HEAP_SAMPLING_INTERVAL, includeObjectsCollectedByMajorGC: true });
  return {
    async stop(name: string): Promise<string> {
      const { profile } = await session.post('HeapProfiler.stopSampling');
      session.disconnect();
      return write(dir, `${name}.heapprofile`, profile);
    },
  };
}

function write(dir: string, fileName: string, profile: unknown): string {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, fileName);
  writeFileSync(file, JSON.stringify(profile));
  return file;
}
