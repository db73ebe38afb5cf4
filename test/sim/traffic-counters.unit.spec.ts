/** The master's counter arithmetic, including the second-reset jump observed on a real master (PROTOCOL §6). */
import { describe, expect, it } from 'vitest';
import {
  addProcessTraffic,
  applyCheckpoint,
  newTrafficState,
  reportedCounters,
  resetTraffic,
  startProcess,
} from '../../src/sim/traffic-counters.js';

const all = (n: number) => ({ tcprx: n, tcptx: n, udprx: n, udptx: n });

describe('master traffic counters', () => {
  it('reproduces the observed sequence 819200 → reset 0 → 30000 → reset 0 → 819200', () => {
    const state = newTrafficState();
    startProcess(state);
    addProcessTraffic(state, all(819_200));
    applyCheckpoint(state);
    expect(reportedCounters(state).tcprx).toBe(819_200);

    resetTraffic(state);
    expect(reportedCounters(state)).toEqual(all(0));
    addProcessTraffic(state, all(30_000));
    applyCheckpoint(state);
    expect(reportedCounters(state).tcprx).toBe(30_000);

    resetTraffic(state); // the second reset in the same process lifetime
    expect(reportedCounters(state)).toEqual(all(0));
    applyCheckpoint(state); // no new traffic, yet the value jumps up
    expect(reportedCounters(state).tcprx).toBe(819_200);
  });

  it('carries values across a process restart and keeps counting from there', () => {
    const state = newTrafficState({ tcprx: 655_360 });
    startProcess(state);
    addProcessTraffic(state, { tcprx: 1000 });
    applyCheckpoint(state);
    startProcess(state); // stop + start: base = value, the new process counts from 0
    addProcessTraffic(state, { tcprx: 24 });
    applyCheckpoint(state);
    expect(reportedCounters(state).tcprx).toBe(656_384);
  });

  it('takes the "process restarted" branch when the process counter is below the reset offset', () => {
    const state = newTrafficState();
    startProcess(state);
    addProcessTraffic(state, all(5000));
    applyCheckpoint(state);
    resetTraffic(state); // reset offset 5000
    startProcess(state); // a new process counts from 0 < 5000
    addProcessTraffic(state, all(100));
    applyCheckpoint(state);
    expect(reportedCounters(state)).toEqual(all(100));
    expect(state.tcprx.reset).toBe(0);
  });
});
