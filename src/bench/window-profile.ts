/**
 * An optional CPU profile of TunnelPulse's measured window (`bench --cpu-profile <dir>`): what the process does in
 * steady state, without the start-up (spawning the tunnels, the initial snapshot) that a whole-process
 * `--cpu-prof` mixes in. The file opens in Chrome DevTools or any `.cpuprofile` viewer.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';

export interface WindowProfile {
  stop(name: string): Promise<string>;
}

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
      mkdirSync(dir, { recursive: true });
      const file = join(dir, `${name}.cpuprofile`);
      writeFileSync(file, JSON.stringify(profile));
      return file;
    },
  };
}
