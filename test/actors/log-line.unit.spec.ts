/** NodePass log lines (actors/log-line.ts): ANSI colours removed and the level parsed, on real captured lines. */
import { describe, expect, it } from 'vitest';
import { parseLogLine, stripAnsi } from '../../actors/log-line.js';
import { captureLogLines } from '../support/captures.js';

const S1 = captureLogLines('nodepass-s1-main-debug.sse');
const S2 = captureLogLines('nodepass-s2-info-level.sse');

describe('parseLogLine on recording s1 (log=debug)', () => {
  it('reads every one of the 569 lines with a known level', () => {
    expect(S1).toHaveLength(569);
    const levels: Record<string, number> = {};
    for (const raw of S1) {
      const { level } = parseLogLine(raw);
      levels[level] = (levels[level] ?? 0) + 1;
    }
    expect(levels).toEqual({ debug: 445, info: 116, warn: 2, error: 6 });
  });

  it('removes every escape sequence and keeps the rest of the line as it was', () => {
    for (const raw of S1) {
      const { message } = parseLogLine(raw);
      expect(message).not.toContain('\u001b');
      expect(message).toMatch(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}  [A-Z]+  /);
      expect(message).toBe(raw.replace(/\u001b\[\d+m/g, ''));
    }
  });

  it('parses the first lines of the recording exactly', () => {
    expect(parseLogLine(S1[0]!)).toEqual({ level: 'debug', message: '2026-11-26 09:15:35.088  DEBUG  Init log level: DEBUG' });
    expect(parseLogLine(S1[1]!)).toEqual({ level: 'warn', message: '2026-11-26 09:15:35.088  WARN  TLS code-0: unencrypted' });
  });
});

describe('parseLogLine on recording s2 (log=info, a failing server)', () => {
  it('reads the "Server error:" lines as errors', () => {
    const errors = S2.filter((l) => l.includes('Server error:'));
    expect(errors.length).toBeGreaterThan(0);
    for (const raw of errors) expect(parseLogLine(raw).level).toBe('error');
  });
});

describe('odd lines', () => {
  it('gives "unknown" for a line without the timestamp or with an unknown level word', () => {
    expect(parseLogLine('panic: runtime error').level).toBe('unknown');
    expect(parseLogLine('2026-11-26 09:15:35.088  \u001b[35mTRACE\u001b[0m  x').level).toBe('unknown');
    expect(parseLogLine('').level).toBe('unknown');
  });

  it('strips other CSI and OSC sequences and leaves plain text untouched', () => {
    expect(stripAnsi('\u001b[1;31mbold red\u001b[0m \u001b[2K\u001b]0;title\u0007done')).toBe('bold red done');
    const plain = 'no escapes here';
    expect(stripAnsi(plain)).toBe(plain);
  });
});
