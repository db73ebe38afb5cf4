/**
 * NodePass log lines (PROTOCOL §5.6): `YYYY-MM-DD HH:MM:SS.mmm  <ESC>[..m LEVEL <ESC>[0m  message`.
 * Stored with ANSI codes removed and the level parsed out.
 */

// CSI sequences (colours and the like) and the rarer OSC ones.
const ANSI = /\u001b\[[0-9;?]*[ -/]*[@-~]|\u001b\][^\u0007\u001b]*(?:\u0007|\u001b\\)/g;

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'event', 'fatal', 'unknown'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const LEVEL_WORDS: Record<string, LogLevel> = {
  DEBUG: 'debug',
  INFO: 'info',
  WARN: 'warn',
  WARNING: 'warn',
  ERROR: 'error',
  EVENT: 'event',
  FATAL: 'fatal',
};

export const stripAnsi = (line: string): string => (line.includes('\u001b') ? line.replace(ANSI, '') : line);

export interface ParsedLogLine {
  level: LogLevel;
  /** The whole line without colour codes (timestamp and level kept, as an operator would read it). */
  message: string;
}

export function parseLogLine(raw: string): ParsedLogLine {
  const message = stripAnsi(raw);
  // After the 23-char timestamp come two spaces, the level word, two spaces.
  const m = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}\s+([A-Z]+)\s/.exec(message);
  const level = (m && LEVEL_WORDS[m[1]!]) || 'unknown';
  return { level, message };
}
