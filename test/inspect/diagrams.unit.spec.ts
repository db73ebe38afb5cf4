/**
 * Diagrams come from the machine definitions: every state of every machine is on its SVG under a stable id
 * (what the page highlights), a change to a machine changes its picture, and Mermaid and DOT share one walk.
 */
import { setup } from 'xstate';
import { describe, expect, it } from 'vitest';
import { renderMachineSvg, toDot } from '../../src/inspect/dot.js';
import { activePaths, machineGraph, type GraphState } from '../../src/inspect/machine-graph.js';
import { MACHINES, machineOfActor } from '../../src/inspect/machines.js';
import { toMermaid } from '../../src/inspect/mermaid.js';

function statePaths(state: GraphState): string[] {
  return state.children.flatMap((child) => [child.path, ...statePaths(child)]);
}

describe('machine diagrams', () => {
  it.each(Object.keys(MACHINES) as (keyof typeof MACHINES)[])('%s: every state is on the SVG under its path id, nothing external', async (name) => {
    const machine = MACHINES[name];
    const svg = await renderMachineSvg(machine);
    const paths = statePaths(machineGraph(machine).root);
    expect(paths.length).toBeGreaterThan(0);
    for (const path of paths) expect(svg).toContain(`id="state:${path}"`);
    expect(svg).not.toMatch(/<script/i);
    expect(svg).not.toMatch(/(?:href|src)="https?:/i);
  });

  it('the tunnel machine has exactly its five states', () => {
    expect(statePaths(machineGraph(MACHINES.tunnel).root).sort()).toEqual(['deleted', 'error', 'pending', 'running', 'stopped']);
  });

  it('a change to a machine changes its picture with no hand edit', async () => {
    const before = setup({}).createMachine({ id: 'demo', initial: 'a', states: { a: { on: { GO: 'b' } }, b: {} } });
    const after = setup({}).createMachine({
      id: 'demo',
      initial: 'a',
      states: { a: { on: { GO: 'b' } }, b: { initial: 'x', states: { x: { after: { 1000: 'y' } }, y: { type: 'final' } }, on: { BACK: 'a' } } },
    });
    const svgBefore = await renderMachineSvg(before);
    const svgAfter = await renderMachineSvg(after);
    expect(svgBefore).not.toContain('id="state:b.x"');
    expect(svgAfter).toContain('id="state:b.x"');
    expect(svgAfter).toContain('id="state:b.y"');
    expect(svgAfter).toContain('after 1000');
    expect(toMermaid(after)).toContain('demo_b_x --> demo_b_y: after 1000');
    // The compound state `b` is a cluster; its edges attach to the cluster border.
    expect(toDot(after)).toMatch(/lhead="cluster_b"/);
  });

  it('parallel regions: dashed clusters in DOT, `--` separators in Mermaid', () => {
    const machine = setup({}).createMachine({
      id: 'p',
      type: 'parallel',
      states: { left: { initial: 'l1', states: { l1: {} } }, right: { initial: 'r1', states: { r1: {} } } },
    });
    expect(toDot(machine)).toContain('style="rounded,dashed"');
    const mermaid = toMermaid(machine);
    expect(mermaid.split('\n')).toContain('  --');
  });

  it('active paths of nested and parallel state values, outermost first', () => {
    expect(activePaths('running')).toEqual(['running']);
    expect(activePaths({ enabled: { online: { live: { liveness: 'streaming', info: 'waiting' } } } })).toEqual([
      'enabled',
      'enabled.online',
      'enabled.online.live',
      'enabled.online.live.liveness',
      'enabled.online.live.liveness.streaming',
      'enabled.online.live.info',
      'enabled.online.live.info.waiting',
    ]);
    expect(activePaths(null)).toEqual([]);
  });

  it('actor ids map to their machines', () => {
    expect(machineOfActor('fleet')).toBe('fleet');
    expect(machineOfActor('endpoint:3')).toBe('endpoint');
    expect(machineOfActor('tunnel:3/ab:cd')).toBe('tunnel');
    expect(machineOfActor('logBatcher')).toBe('batcher');
    expect(machineOfActor('retention')).toBe('scheduled-job');
    expect(machineOfActor('nobody')).toBeNull();
  });
});
