/** `tunnelpulse sim` through commander, and the demo simulator the service runs in-process. */
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { registerSimCommand, startDemoSimulator, type SimReadyLine } from '../../src/sim/command.js';
import { openStream, rest } from '../support/sim-client.js';

function harness() {
  const lines: string[] = [];
  let stop!: () => void;
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  const program = new Command('tunnelpulse').exitOverride();
  registerSimCommand(program, { print: (line) => lines.push(line), waitForStop: () => stopped });
  return { program, lines, stop };
}

async function until(what: string, predicate: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('tunnelpulse sim', () => {
  it('prints one ready line with every master, serves them, and shuts down with `shutdown` on stop', async () => {
    const { program, lines, stop } = harness();
    const run = program.parseAsync(['sim', '--port', '0', '--masters', '3', '--instances', '2', '--interval', '50', '--seed', 'cli', '--drop'], { from: 'user' });
    await until('the ready line', () => lines.length === 1);
    const ready = JSON.parse(lines[0]!) as SimReadyLine;
    expect(ready.type).toBe('ready');
    expect(ready.masters.map((m) => m.name)).toEqual(['m1', 'm2', 'm3']);
    for (const m of ready.masters) {
      expect(m.apiKey).toMatch(/^[0-9a-f]{32}$/);
      expect(m.apiBase).toBe(`${m.url}/v1`);
      expect((await rest('GET', `${m.apiBase}/info`, { apiKey: m.apiKey })).status).toBe(200);
    }
    const stream = await openStream(ready.masters[0]!.apiBase, ready.masters[0]!.apiKey);
    await stream.waitFor('a checkpoint', () => stream.events.some((e) => e.kind === 'instance' && e.event.type === 'update'));
    stop();
    await run;
    await stream.waitFor('EOF', () => stream.ended !== undefined);
    expect(stream.events.at(-1)).toMatchObject({ kind: 'shutdown' });
    await expect(rest('GET', `${ready.masters[0]!.apiBase}/info`, { apiKey: ready.masters[0]!.apiKey })).rejects.toThrow();
  });

  it('rejects bad options before starting anything', async () => {
    const { program } = harness();
    program.configureOutput({ writeErr: () => undefined });
    program.commands[0]!.exitOverride().configureOutput({ writeErr: () => undefined });
    await expect(program.parseAsync(['sim', '--faults', 'reset,bogus'], { from: 'user' })).rejects.toThrow(/unknown fault "bogus"/);
    await expect(program.parseAsync(['sim', '--api-key', 'XYZ'], { from: 'user' })).rejects.toThrow(/32 lowercase hex/);
  });

  it('reports key rotations from --faults rotate as JSON lines', async () => {
    const { program, lines, stop } = harness();
    const run = program.parseAsync(['sim', '--faults', 'rotate', '--fault-every', '100', '--interval', '1000', '--seed', 'rot'], { from: 'user' });
    await until('a rotation', () => lines.length >= 2);
    const ready = JSON.parse(lines[0]!) as SimReadyLine;
    const rotated = JSON.parse(lines[1]!) as { type: string; master: string; apiKey: string };
    expect(rotated).toMatchObject({ type: 'key-rotated', master: 'm1' });
    expect(rotated.apiKey).not.toBe(ready.masters[0]!.apiKey);
    stop();
    await run;
  });
});

describe('startDemoSimulator', () => {
  it('gives a url and key to a master with a few running tunnels', async () => {
    const demo = await startDemoSimulator({ reportIntervalMs: 50 });
    try {
      expect(demo.apiBase).toBe(`${demo.url}/v1`);
      const list = (await rest('GET', `${demo.apiBase}/instances`, { apiKey: demo.apiKey })).json<Array<{ id: string; status: string }>>();
      expect(list.filter((i) => i.id !== '********' && i.status === 'running')).toHaveLength(4);
    } finally {
      await demo.close();
    }
  });
});
