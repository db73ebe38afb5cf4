/** A tunnel machine whose effects are recorded (by name, with a copy of their params) instead of performed. */
import { tunnelMachine, type TunnelEffectParams } from '../../actors/tunnel.machine.js';

export type EffectName = keyof TunnelEffectParams;

export interface RecordedCall {
  name: EffectName;
  params: any;
}

export function recordingTunnelMachine() {
  const calls: RecordedCall[] = [];
  /** Set to make that effect throw (a failure of the persistence side). */
  const failing = { effect: null as EffectName | null };
  const record = (name: EffectName) => (_: unknown, params: unknown) => {
    if (name === failing.effect) throw new Error(`${name} broke`);
    calls.push({ name, params: structuredClone(params) });
  };
  const machine = tunnelMachine.provide({
    actions: {
      persistConfig: record('persistConfig'),
      queueState: record('queueState'),
      queueLog: record('queueLog'),
      persistStatusChange: record('persistStatusChange'),
      memoryFailed: record('memoryFailed'),
    },
  });
  return { machine, calls, failing };
}
