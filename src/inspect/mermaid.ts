/**
 * Mermaid `stateDiagram-v2` for docs/machines (`npm run diagrams`), rendered from the shared machine walk in
 * machine-graph.ts (the /inspect page's DOT/SVG comes from the same walk).
 */
import type { AnyStateMachine } from 'xstate';
import { machineGraph, type GraphState, type GraphTransition } from './machine-graph.js';

const safe = (id: string): string => id.replace(/[^A-Za-z0-9_]/g, '_');
const text = (t: GraphTransition): string => t.label.replace(/:/g, ' ');

function walk(node: GraphState, lines: string[], indent: string, isRoot: boolean): void {
  if (node.children.length === 0) return;
  if (node.initialId) lines.push(`${indent}[*] --> ${safe(node.initialId)}`);
  node.children.forEach((child, index) => {
    // Regions of a parallel state are separated by `--` (Mermaid's concurrency separator).
    if (node.type === 'parallel' && index > 0) lines.push(`${indent}--`);
    if (child.children.length > 0) {
      lines.push(`${indent}state "${child.key}" as ${safe(child.id)} {`);
      walk(child, lines, indent + '  ', false);
      lines.push(`${indent}}`);
    } else {
      lines.push(`${indent}state "${child.key}" as ${safe(child.id)}`);
    }
    if (child.type === 'final') lines.push(`${indent}${safe(child.id)} --> [*]`);
  });
  // A compound state's own transitions are drawn by its parent; the root's event transitions become notes.
  for (const child of isRoot ? [node, ...node.children] : node.children) {
    if (child !== node) for (const t of child.transitions) lines.push(`${indent}${safe(child.id)} --> ${safe(t.targetId)}: ${text(t)}`);
    for (const t of child.always) lines.push(`${indent}${safe(child.id)} --> ${safe(t.targetId)}: ${text(t)}`);
  }
}

export function toMermaid(machine: AnyStateMachine): string {
  const graph = machineGraph(machine);
  const lines = ['stateDiagram-v2'];
  walk(graph.root, lines, '  ', true);
  // Transitions declared on the root (events handled in every state).
  for (const t of graph.root.transitions) lines.push(`  note right of ${safe(t.targetId)}: any state —${text(t)}→`);
  return lines.join('\n') + '\n';
}
