/**
 * The master's traffic-counter arithmetic, reproduced exactly, bug included (PROTOCOL §6).
 * For each of the four counters the master keeps the reported `value`, a `base` (the value when the current
 * process started) and a `reset` offset; the instance process reports its own running total `process`.
 * Pure functions over plain data so the second-reset jump can be tested on its own.
 */
import { COUNTER_KEYS, type CounterKey, type Counters } from '../../actors/model.js';

export interface CounterState {
  value: number;
  base: number;
  reset: number;
  /** What the instance process has counted since it started (the `TCPRX=` of its checkpoint line). */
  process: number;
}

export type TrafficState = Record<CounterKey, CounterState>;

export function newTrafficState(initial: Partial<Counters> = {}): TrafficState {
  const make = (key: CounterKey): CounterState => ({ value: initial[key] ?? 0, base: 0, reset: 0, process: 0 });
  return { tcprx: make('tcprx'), tcptx: make('tcptx'), udprx: make('udprx'), udptx: make('udptx') };
}

export function reportedCounters(state: TrafficState): Counters {
  return { tcprx: state.tcprx.value, tcptx: state.tcptx.value, udprx: state.udprx.value, udptx: state.udptx.value };
}

/** `startInstance`: a new process counts from 0, and the value carries on from where it was. */
export function startProcess(state: TrafficState): void {
  for (const key of COUNTER_KEYS) {
    const c = state[key];
    c.base = c.value;
    c.process = 0;
  }
}

/** Bytes moved by the running process (reflected in `value` at the next checkpoint only). */
export function addProcessTraffic(state: TrafficState, bytes: Partial<Counters>): void {
  for (const key of COUNTER_KEYS) state[key].process += Math.max(0, Math.trunc(bytes[key] ?? 0));
}

/** A checkpoint line arrives: the master recomputes `value` from the process counter. */
export function applyCheckpoint(state: TrafficState): void {
  for (const key of COUNTER_KEYS) {
    const c = state[key];
    if (c.process >= c.reset) {
      c.value = c.base + c.process - c.reset;
    } else {
      // "The process restarted" branch of the master.
      c.value = c.base + c.process;
      c.reset = 0;
    }
  }
}

/**
 * The `reset` action. The master stores `value - base` as the offset, not the process counter; after an
 * earlier reset (base 0, value already net of the first offset) that under-states the offset, so the next
 * checkpoint jumps up. That is the real bug and is kept on purpose.
 */
export function resetTraffic(state: TrafficState): void {
  for (const key of COUNTER_KEYS) {
    const c = state[key];
    c.reset = c.value - c.base;
    c.value = 0;
    c.base = 0;
  }
}
