/**
 * V8 settings for a long-running ingest process, applied by the command line (`src/cli/main.ts`) before any work,
 * and by the benchmark's memory child, which stands for the service.
 *
 * Allocation-site pretenuring off. When a burst of objects from one allocation site survives — the initial snapshot
 * of a master creates thousands of tunnels from parsed events at once — V8 starts allocating that site's objects
 * directly in the old generation, and keeps doing so for the ordinary per-event garbage afterwards. Those objects
 * die in the old generation, and while they wait for the next full collection they keep their young children
 * (the strings of every parsed event) alive, so every scavenge copies and promotes them. Measured at 20,000
 * events/s (docs/performance.md, Session 4): promoted bytes per scavenge 2.4 → 1.2–1.4 MB, and on parsing alone
 * 1.6 MB → 54 KB, scavenge pauses ~3 → ~1 ms; the tunnel-state query's p99 9 → 7.7 ms.
 */
import { setFlagsFromString } from 'node:v8';

export function applyV8Tuning(): void {
  setFlagsFromString('--no-allocation-site-pretenuring');
}
