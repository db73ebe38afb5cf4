/**
 * Graphviz DOT for a machine, from the shared walk (machine-graph.ts), rendered to SVG with `@viz-js/viz`
 * (Graphviz in WASM: no native binary, no network). Every state carries `id="state:<path>"` into the SVG
 * (a cluster for a compound state, a node for an atomic one), so the page highlights the active states by id.
 */
import { instance, type Viz } from '@viz-js/viz';
import type { AnyStateMachine } from 'xstate';
import { machineGraph, type GraphState } from './machine-graph.js';

/** The SVG element id of a state: `state:` + its dot-joined path from the root. */
export const stateElementId = (path: string): string => `state:${path}`;

const quote = (s: string): string => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
/** A DOT node name per state; a compound state is reached through its hidden entry point (see `anchor`). */
const nodeName = (path: string): string => quote(`s:${path}`);
const entryName = (path: string): string => quote(`entry:${path}`);
const clusterName = (path: string): string => quote(`cluster_${path}`);

export function toDot(machine: AnyStateMachine): string {
  const graph = machineGraph(machine);
  const compound = new Set<string>();
  const collect = (s: GraphState) => {
    if (s.children.length > 0) compound.add(s.path);
    s.children.forEach(collect);
  };
  collect(graph.root);

  const lines = [
    `digraph ${quote(graph.id)} {`,
    '  graph [rankdir=LR, compound=true, fontname="Helvetica", fontsize=11, bgcolor="transparent", nodesep=0.3, ranksep=0.45];',
    '  node [shape=box, style="rounded,filled", fillcolor="#ffffff", color="#6b7280", fontname="Helvetica", fontsize=11, height=0.3];',
    '  edge [color="#6b7280", fontname="Helvetica", fontsize=9, fontcolor="#374151", arrowsize=0.6];',
  ];
  // The entry point of a compound state (the filled dot of a statechart) doubles as the anchor its
  // incoming and outgoing edges attach to, clipped to the cluster border with lhead/ltail.
  const declare = (s: GraphState, indent: string) => {
    if (s.children.length === 0) return;
    lines.push(`${indent}${entryName(s.path)} [shape=point, width=0.09, color="#111827", label=""];`);
    for (const child of s.children) {
      if (child.children.length > 0) {
        lines.push(`${indent}subgraph ${clusterName(child.path)} {`);
        // Regions of a parallel state are dashed, as in statecharts: all of them are active at once.
        const style = s.type === 'parallel' ? 'rounded,dashed' : 'rounded';
        lines.push(`${indent}  id=${quote(stateElementId(child.path))}; label=${quote(child.key)}; style=${quote(style)}; color="#6b7280"; fontsize=11;`);
        declare(child, indent + '  ');
        lines.push(`${indent}}`);
      } else {
        const shape = child.type === 'final' ? ', peripheries=2' : '';
        lines.push(`${indent}${nodeName(child.path)} [id=${quote(stateElementId(child.path))}, label=${quote(child.key)}${shape}];`);
      }
    }
    if (s.initial) lines.push(`${indent}${entryName(s.path)} -> ${anchor(s.initial)}${s.initial && compound.has(s.initial) ? ` [lhead=${clusterName(s.initial)}]` : ''};`);
  };
  const anchor = (path: string): string => (compound.has(path) ? entryName(path) : nodeName(path));
  declare(graph.root, '  ');

  const edges = (s: GraphState) => {
    for (const t of [...s.transitions, ...s.always]) {
      const attrs = [`label=${quote(t.label)}`];
      if (s.path === '') {
        // Declared on the root: handled in every state. Drawn from a small "any state" marker.
        lines.push(`  ${quote('any')} [shape=plaintext, label="any state", fontsize=9, fontcolor="#6b7280", style=""];`);
        lines.push(`  ${quote('any')} -> ${anchor(t.target)} [${attrs.join(', ')}, style=dashed];`);
        continue;
      }
      // Graphviz cannot clip an edge to a cluster that contains the other end; leave those unclipped.
      const inside = (outer: string, inner: string) => inner.startsWith(`${outer}.`);
      if (compound.has(s.path) && !inside(s.path, t.target)) attrs.push(`ltail=${clusterName(s.path)}`);
      if (compound.has(t.target) && !inside(t.target, s.path) && t.target !== s.path) attrs.push(`lhead=${clusterName(t.target)}`);
      lines.push(`  ${anchor(s.path)} -> ${anchor(t.target)} [${attrs.join(', ')}];`);
    }
    s.children.forEach(edges);
  };
  edges(graph.root);
  lines.push('}');
  return lines.join('\n') + '\n';
}

let vizReady: Promise<Viz> | undefined;

/** SVG of a machine; throws with Graphviz's messages when the DOT does not render. */
export async function renderMachineSvg(machine: AnyStateMachine): Promise<string> {
  vizReady ??= instance();
  const viz = await vizReady;
  const result = viz.render(toDot(machine), { format: 'svg' });
  if (result.status !== 'success') {
    throw new Error(`graphviz failed for ${machine.id}: ${result.errors.map((e) => e.message).join('; ')}`);
  }
  return result.output;
}
