/**
 * NodePass instance log lines (PROTOCOL §5.6, §8): `YYYY-MM-DD HH:MM:SS.mmm  <ESC>[..m LEVEL <ESC>[0m  message`,
 * always coloured. The simulator appends ` seq=N`, a per-instance sequence number, so fault drills can find
 * gaps and duplicates in what was stored.
 */
import type { Prng } from './prng.js';

export type LogLevel = 'DEBUG' | 'INFO' | 'WARN' | 'ERROR' | 'EVENT';

const LEVEL_COLOUR: Record<LogLevel, number> = { DEBUG: 34, INFO: 32, WARN: 33, ERROR: 31, EVENT: 36 };

const pad = (n: number, width = 2): string => String(n).padStart(width, '0');

/** The child process's timestamp: local time of the process, no zone (the simulator uses UTC). */
export function formatLogTimestamp(epochMs: number): string {
  const d = new Date(Math.floor(epochMs));
  return (
    `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}`
  );
}

export function formatLogLine(epochMs: number, level: LogLevel, message: string, seq: number): string {
  return `${formatLogTimestamp(epochMs)}  \u001b[${LEVEL_COLOUR[level]}m${level}\u001b[0m  ${message} seq=${seq}`;
}

/** Reads `seq=N` back out of a line (for drills and tests); `undefined` when absent. */
export function logSequence(line: string): number | undefined {
  const match = / seq=(\d+)$/.exec(line);
  return match ? Number(match[1]) : undefined;
}

export interface LogMessage {
  level: LogLevel;
  message: string;
}

/** What the lines talk about: the two ends of the tunnel, from the instance URL. */
export interface TunnelEndpoints {
  type: 'server' | 'client';
  tunnel: string;
  target: string;
}

export function tunnelEndpoints(type: 'server' | 'client', url: string): TunnelEndpoints {
  const match = /^[a-z]+:\/\/(?:[^@/]*@)?([^/?]*)\/([^?]*)/.exec(url);
  return { type, tunnel: match?.[1] || '127.0.0.1:10101', target: match?.[2] || '127.0.0.1:8080' };
}

function loopbackPeer(prng: Prng): string {
  return `127.0.0.1:${prng.int(32768, 60999)}`;
}

/** One line of ordinary traffic chatter, shaped like the captures; DEBUG lines only on a debug master. */
export function trafficLogMessage(prng: Prng, ends: TunnelEndpoints, debug: boolean): LogMessage {
  const peer = loopbackPeer(prng);
  const info: LogMessage[] = [
    { level: 'INFO', message: `Starting exchange: ${peer} <-> ${ends.target}` },
    { level: 'INFO', message: 'Exchange complete: EOF' },
  ];
  if (!debug) return prng.pick(info);
  const debugLines: LogMessage[] = [
    { level: 'DEBUG', message: `Transfer complete: ${ends.tunnel} <-> ${ends.target}` },
    { level: 'DEBUG', message: `Target connection: ${ends.target} <-> ${peer}` },
    { level: 'DEBUG', message: `Tunnel connection: get ${prng.hex(4)} <- pool active ${prng.int(0, 4)}` },
    { level: 'DEBUG', message: `Tunnel connection: closed ${prng.hex(4)}` },
    { level: 'DEBUG', message: `Using UDP session: ${ends.tunnel} <-> ${peer}` },
  ];
  return prng.chance(0.2) ? prng.pick(info) : prng.pick(debugLines);
}

const Title = (ends: TunnelEndpoints): string => (ends.type === 'server' ? 'Server' : 'Client');

/** What a process prints when it starts (PROTOCOL §8). */
export function startupLogMessages(ends: TunnelEndpoints, key: string, debug: boolean): LogMessage[] {
  const lines: LogMessage[] = [];
  if (debug) lines.push({ level: 'DEBUG', message: 'Init log level: DEBUG' });
  lines.push({ level: 'WARN', message: 'TLS code-0: unencrypted' });
  lines.push({
    level: 'INFO',
    message: `${Title(ends)} started: ${ends.type}://${key}@${ends.tunnel}/${ends.target}?dns=5m0s&mode=0&dial=auto&read=0s&rate=0&slot=65536&proxy=0&block=0&notcp=0&noudp=0`,
  });
  if (ends.type === 'server') lines.push({ level: 'INFO', message: 'Pending tunnel handshake...' });
  lines.push({ level: 'INFO', message: 'Getting tunnel pool ready...' });
  return lines;
}

export function shutdownLogMessage(ends: TunnelEndpoints): LogMessage {
  return { level: 'INFO', message: `${Title(ends)} shutdown complete` };
}

/** The line that makes the master flip the instance to `error` (it contains `Server error:`/`Client error:`). */
export function errorLogMessage(ends: TunnelEndpoints): LogMessage {
  return {
    level: 'ERROR',
    message: `${Title(ends)} error: start: commonControl failed: commonControl: commonQueue: readBytes failed: EOF`,
  };
}

export function restartLogMessage(ends: TunnelEndpoints, key: string): LogMessage {
  return {
    level: 'INFO',
    message: `${Title(ends)} restart: ${ends.type}://${key}@${ends.tunnel}/${ends.target}?dns=5m0s&mode=0&dial=auto&read=0s&rate=0&slot=65536&proxy=0&block=0&notcp=0&noudp=0`,
  };
}
