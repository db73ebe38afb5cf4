/**
 * The one walk of a machine definition (`machine.root`) that every diagram format renders from (Mermaid for
 * docs/machines, Graphviz DOT → SVG for the /inspect page), so a change to a machine changes every picture
 * with no hand edit.
 */
import type { AnyStateMachine, AnyStateNode } from 'xstate';

export interface GraphTransition {
  /** Target state's path ('' for the root), dot-joined keys, e.g. `enabled.online.live`. */
  target: string;
  /** Target state's XState id (`endpoint.enabled.online`). */
  targetId: string;
  label: string;
}

export interface GraphState {
  /** XState id (`machineId.key.key`), unique within the machine. */
  id: string;
  /** Dot-joined keys from the root; '' for the root. Matches the keys of an XState state value. */
  path: string;
  key: string;
  type: 'atomic' | 'compound' | 'parallel' | 'final' | 'history';
  /** Path of the initial child, for compound states. */
  initial: string | null;
  initialId: string | null;
  children: GraphState[];
  /** Transitions declared on this state, event transitions first (declaration order), then `always`. */
  transitions: GraphTransition[];
  /** The `always` subset, kept apart because the Mermaid layout places them differently on the root. */
  always: GraphTransition[];
}

export interface MachineGraph {
  id: string;
  root: GraphState;
}

/** How a transition reads on a diagram: the event, `after <delay>`, `done`/`error` for invoked actors, `[guard]`. */
export function transitionLabel(eventType: string, guard: unknown): string {
  const guardName = guard && typeof guard === 'object' && 'type' in guard ? ` [${String((guard as { type: unknown }).type)}]` : '';
  const event =
    eventType === '' ? 'always'
    : eventType.startsWith('xstate.after.') ? `after ${eventType.split('.')[2]}`
    : eventType.startsWith('xstate.done.actor.') ? 'done'
    : eventType.startsWith('xstate.error.actor.') ? 'error'
    : eventType;
  return `${event}${guardName}`;
}

const pathOf = (node: AnyStateNode): string => node.path.join('.');

function walk(node: AnyStateNode): GraphState {
  const children = (Object.values(node.states) as AnyStateNode[]).map(walk);
  const transitions: GraphTransition[] = [];
  for (const list of node.transitions.values()) {
    for (const t of list) {
      for (const target of t.target ?? []) {
        transitions.push({ target: pathOf(target), targetId: target.id, label: transitionLabel(t.eventType, t.guard) });
      }
    }
  }
  const always: GraphTransition[] = [];
  for (const t of node.always ?? []) {
    for (const target of t.target ?? []) always.push({ target: pathOf(target), targetId: target.id, label: transitionLabel('', t.guard) });
  }
  const initial = node.initial?.target?.[0];
  return {
    id: node.id,
    path: pathOf(node),
    key: node.key,
    type: node.type,
    initial: initial ? pathOf(initial) : null,
    initialId: initial ? initial.id : null,
    children,
    transitions,
    always,
  };
}

export function machineGraph(machine: AnyStateMachine): MachineGraph {
  return { id: machine.id, root: walk(machine.root) };
}

/**
 * The state paths a state value makes active, outermost first: `{ enabled: { online: 'live' } }` →
 * `enabled`, `enabled.online`, `enabled.online.live`. The page does the same in the browser.
 */
export function activePaths(value: unknown, prefix = ''): string[] {
  if (typeof value === 'string') return [prefix ? `${prefix}.${value}` : value];
  if (!value || typeof value !== 'object') return [];
  const out: string[] = [];
  for (const [key, child] of Object.entries(value as Record<string, unknown>)) {
    const path = prefix ? `${prefix}.${key}` : key;
    out.push(path, ...activePaths(child, path));
  }
  return out;
}
