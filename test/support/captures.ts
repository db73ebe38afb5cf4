/** Reading the real NodePass captures in `fixtures/captures/` (PROTOCOL §12) for unit tests. */
import { readFileSync } from 'node:fs';

const CAPTURES = new URL('../../fixtures/captures/', import.meta.url);

export const captureBytes = (name: string): Buffer => readFileSync(new URL(name, CAPTURES));
export const captureText = (name: string): string => readFileSync(new URL(name, CAPTURES), 'utf8');

/**
 * The `data:` payloads of a capture, found independently of the parser under test: NodePass writes exactly
 * `event: instance\ndata: <json>\n\n` per event (PROTOCOL §5.1), so a line scan is a faithful reference.
 */
export function captureDataLines(name: string): string[] {
  return captureText(name)
    .split('\n')
    .filter((line) => line.startsWith('data: '))
    .map((line) => line.slice('data: '.length));
}

/** The raw `logs` lines of a capture's `log` events. */
export function captureLogLines(name: string): string[] {
  return captureDataLines(name)
    .map((data) => JSON.parse(data) as { type: string; logs: string })
    .filter((e) => e.type === 'log')
    .map((e) => e.logs);
}
