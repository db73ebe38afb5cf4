/**
 * Machine diagrams generated from the machine definitions (walks `machine.root`), so a change to a machine
 * changes its picture with no hand edit. Emits Mermaid `stateDiagram-v2`.
 */
import type { AnyStateMachine, AnyStateNode } from 'xstate';

const safe = (id: string): string => id.replace(/[^A-Za-z0-9_]/g, '_');

function label(t: { eventType: string; guard?: { type?: unknown } | unknown }): string {
  const guard = t.guard && typeof t.guard === 'object' && 'type' in t.guard ? ` [${String((t.guard as { type: unknown }).type)}]` : '';
  const e = t.eventType;
  const event =
    e === '' ? 'always'
    : e.startsWith('xstate.after.') ? `after ${e.split('.')[2]}`
    : e.startsWith('xstate.done.actor.') ? 'done'
    : e.startsWith('xstate.error.actor.') ? 'error'
    : e;
  return `${event}${guard}`.replace(/:/g, ' ');
}

function walk(node: AnyStateNode, lines: string[], indent: string): void {
  const children = Object.values(node.states) as AnyStateNode[];
  if (children.length === 0) return;
  const initial = node.initial?.target?.[0];
  if (initial) lines.push(`${indent}[*] --> ${safe(initial.id)}`);
  for (const child of children) {
    const grand = Object.values(child.states);
    if (grand.length > 0) {
      lines.push(`${indent}state "${child.key}" as ${safe(child.id)} {`);
      walk(child, lines, indent + '  ');
      lines.push(`${indent}}`);
    } else {
      lines.push(`${indent}state "${child.key}" as ${safe(child.id)}`);
    }
    if (child.type === 'final') lines.push(`${indent}${safe(child.id)} --> [*]`);
  }
  for (const child of [node, ...children]) {
    if (child === node && node.parent) continue;
    for (const transitions of child.transitions.values()) {
      for (const t of transitions) {
        for (const target of t.target ?? []) {
          if (child === node) continue;
          lines.push(`${indent}${safe(child.id)} --> ${safe(target.id)}: ${label(t)}`);
        }
      }
    }
    for (const t of child.always ?? []) {
      for (const target of t.target ?? []) lines.push(`${indent}${safe(child.id)} --> ${safe(target.id)}: ${label({ ...t, eventType: '' })}`);
    }
  }
}

export function toMermaid(machine: AnyStateMachine): string {
  const lines = ['stateDiagram-v2'];
  walk(machine.root, lines, '  ');
  // Transitions declared on the root (events handled in every state).
  for (const transitions of machine.root.transitions.values()) {
    for (const t of transitions) {
      for (const target of t.target ?? []) lines.push(`  note right of ${safe(target.id)}: any state —${label(t)}→`);
    }
  }
  return lines.join('\n') + '\n';
}
