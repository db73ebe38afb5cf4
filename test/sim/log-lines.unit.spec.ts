/** Simulated log lines look like NodePass's and carry a per-instance sequence number. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { formatLogLine, logSequence } from '../../src/sim/log-lines.js';

// The shape of every log line in the captures: time, two spaces, coloured level, two spaces, message.
const NODEPASS_LINE = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} {2}\u001b\[3\dm(DEBUG|INFO|WARN|ERROR|EVENT)\u001b\[0m {2}\S/;

describe('log lines', () => {
  it('the pattern matches every line of the real capture', () => {
    const capture = readFileSync(new URL('../../fixtures/captures/nodepass-s1-main-debug.sse', import.meta.url), 'utf8');
    const logs = capture
      .split('\n')
      .filter((l) => l.startsWith('data: {"type":"log"'))
      .map((l) => (JSON.parse(l.slice(6)) as { logs: string }).logs);
    expect(logs.length).toBeGreaterThan(500);
    for (const line of logs) expect(line).toMatch(NODEPASS_LINE);
  });

  it('formats like NodePass and ends with seq=N', () => {
    const line = formatLogLine(Date.UTC(2026, 10, 26, 9, 15, 35, 88), 'INFO', 'Exchange complete: EOF', 42);
    expect(line).toBe('2026-11-26 09:15:35.088  \u001b[32mINFO\u001b[0m  Exchange complete: EOF seq=42');
    expect(line).toMatch(NODEPASS_LINE);
    expect(logSequence(line)).toBe(42);
    expect(logSequence('2026-11-26 09:15:35.088  \u001b[32mINFO\u001b[0m  no number')).toBeUndefined();
  });
});
