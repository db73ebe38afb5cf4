/**
 * Delivery: with the master's 10-event buffer, a subscriber that stops reading loses events (counted), while one
 * that reads loses none; in lossless mode nobody loses anything (PROTOCOL §7).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { logSequence } from '../../src/sim/log-lines.js';
import { startSimulator, type SimulatorHandle } from '../../src/sim/simulator.js';
import { instanceEvents, openStream } from '../support/sim-client.js';

let sim: SimulatorHandle | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

// 1200 lines of ~16 KiB: ~19 MiB, more than loopback socket buffers hold, written in small bursts.
const LINES = 1200;
const PADDING = 'p'.repeat(16 * 1024);

async function scenario(delivery: 'drop' | 'lossless') {
  sim = await startSimulator({ instances: 1, reportIntervalMs: 0, lifecycleLogs: false, delivery, seed: 'drops' });
  const master = sim.master;
  const id = master.instanceIds()[0]!;
  const reader = await openStream(master.apiBase, master.apiKey);
  const sleeper = await openStream(master.apiBase, master.apiKey);
  await reader.waitFor('snapshot', () => reader.events.length === 2);
  await sleeper.waitFor('snapshot', () => sleeper.events.length === 2);
  sleeper.pause();
  // Bursts of 4 (below the buffer of 10), each once the reader has everything before it: the reader never lags.
  for (let emitted = 4; emitted <= LINES; emitted += 4) {
    master.emitLogs(id, [PADDING, PADDING, PADDING, PADDING]);
    await reader.waitFor(`line ${emitted} at the reader`, () => instanceEvents(reader, 'log').length === emitted, 5000);
  }
  const [readerStats, sleeperStats] = master.stats().subscribers;
  return { master, reader, sleeper, readerStats: readerStats!, sleeperStats: sleeperStats! };
}

describe('subscriber buffers', () => {
  it('drop: the subscriber that does not read loses events and the loss is counted; the reader loses none', async () => {
    const { master, reader, sleeper, readerStats, sleeperStats } = await scenario('drop');
    expect(readerStats.dropped).toBe(0);
    expect(sleeperStats.dropped).toBeGreaterThan(0);
    expect(master.stats().dropped).toBe(sleeperStats.dropped);

    sleeper.resume();
    const delivered = LINES - sleeperStats.dropped;
    await sleeper.waitFor('what was not dropped', () => instanceEvents(sleeper, 'log').length === delivered, 10_000);
    // The next line gets through again, and the loss shows as a gap in the sequence numbers.
    master.emitLogs(master.instanceIds()[0]!, ['after the storm']);
    await sleeper.waitFor('the next line', () => instanceEvents(sleeper, 'log').length === delivered + 1);
    const seqs = instanceEvents(sleeper, 'log').map((e) => logSequence(e.logs)!);
    expect(seqs.at(-1)).toBe(LINES + 1);
    expect(seqs.at(-1)! - seqs.at(-2)!).toBe(sleeperStats.dropped + 1);
    expect(instanceEvents(reader, 'log').map((e) => logSequence(e.logs))).toEqual(Array.from({ length: LINES }, (_, i) => i + 1));
  });

  it('lossless: the same scenario loses nothing, the slow subscriber catches up', async () => {
    const { sleeper, sleeperStats } = await scenario('lossless');
    expect(sleeperStats.dropped).toBe(0);
    sleeper.resume();
    await sleeper.waitFor('everything', () => instanceEvents(sleeper, 'log').length === LINES, 10_000);
  });
});
