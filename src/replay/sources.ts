/**
 * Reads what `tunnelpulse replay` accepts into one list of connection-level items:
 * - raw SSE bodies (`*.sse`): one or several connections concatenated, each beginning with NodePass's
 *   `retry:` line; recorder comments `: disconnect <ISO time> <reason>` and `: reconnect <ISO time>` may
 *   sit between them;
 * - the timestamped capture format: `<epoch seconds>\t<line>`, with `# …` header lines (`# <epoch>\tHTTP 200 OK`
 *   opens a connection, `# <epoch>\tEOF …` ends it);
 * - the service's own journal (JSON Lines, see src/ingest/journal.ts).
 * Times found in the input are kept (epoch ms); where the input has none, `at` is null and replay uses
 * the events' own times.
 */
import { readFileSync } from 'node:fs';
import { SseParser } from '../protocol/sse-parser.js';

export type ReplayItem =
  | { kind: 'open'; at: number | null }
  | { kind: 'payload'; eventName: string; data: string; receivedAt: number | null }
  | { kind: 'close'; at: number | null; reason: string; closeKind?: string }
  | { kind: 'overflow'; bytes: number };

export interface ReplaySource {
  file: string;
  format: 'sse' | 'timestamped' | 'journal';
  /** The endpoint name inside a journal entry, if any (journals can hold several endpoints). */
  items: Array<ReplayItem & { endpoint?: string }>;
}

export function detectFormat(text: string): ReplaySource['format'] {
  const first = text.split('\n', 20).find((l) => l.trim().length > 0) ?? '';
  if (/^\{.*"v"\s*:/.test(first)) return 'journal';
  if (/^(#\s*)?\d+(\.\d+)?\t/.test(first)) return 'timestamped';
  return 'sse';
}

/** Collects items from SSE text, fed line by line or in one go. */
class SseItemCollector {
  readonly items: ReplayItem[] = [];
  private open = false;
  /** An open was announced (by a comment or an HTTP header) and the connection's `retry:` line is still to come. */
  private openAnnounced = false;
  receivedAt: number | null = null;
  readonly parser = new SseParser({
    onRetry: () => {
      if (this.openAnnounced) {
        this.openAnnounced = false;
        return;
      }
      this.startConnection(this.receivedAt);
    },
    onEvent: (eventName, data) => {
      this.openAnnounced = false;
      if (!this.open) this.startConnection(null);
      this.items.push({ kind: 'payload', eventName, data, receivedAt: this.receivedAt });
    },
    onComment: (text) => this.comment(text),
    onOverflow: (bytes) => this.items.push({ kind: 'overflow', bytes }),
  });

  startConnection(at: number | null): void {
    if (this.open) this.items.push({ kind: 'close', at: null, reason: 'eof' });
    this.items.push({ kind: 'open', at });
    this.open = true;
  }

  announceOpen(at: number | null): void {
    this.startConnection(at);
    this.openAnnounced = true;
  }

  endConnection(at: number | null, reason: string): void {
    if (!this.open) return;
    this.items.push({ kind: 'close', at, reason });
    this.open = false;
    this.openAnnounced = false;
  }

  comment(text: string): void {
    const m = /^(disconnect|reconnect)\s+(\S+)\s*(.*)$/.exec(text.trim());
    if (!m) return;
    const at = Date.parse(m[2]!);
    const time = Number.isFinite(at) ? at : null;
    if (m[1] === 'disconnect') this.endConnection(time, m[3] || 'disconnect');
    else this.announceOpen(time);
  }

  finish(): ReplayItem[] {
    this.parser.end();
    this.endConnection(null, 'eof');
    return this.items;
  }
}

export function readSseText(text: string): ReplayItem[] {
  const c = new SseItemCollector();
  c.parser.feed(text);
  return c.finish();
}

export function readTimestampedText(text: string): ReplayItem[] {
  const c = new SseItemCollector();
  for (const raw of text.split('\n')) {
    const tab = raw.indexOf('\t');
    if (raw.startsWith('#')) {
      if (tab === -1) continue; // a header line such as `# Content-Type: …`
      const at = Math.round(Number(raw.slice(1, tab).trim()) * 1000);
      const what = raw.slice(tab + 1);
      if (/^HTTP 2\d\d/.test(what)) c.announceOpen(at);
      else if (/^HTTP \d+/.test(what)) c.endConnection(at, what.trim());
      else if (/^EOF|closed|disconnect/i.test(what)) {
        c.parser.end();
        c.endConnection(at, what.trim());
      }
      continue;
    }
    if (tab === -1) continue;
    const seconds = Number(raw.slice(0, tab));
    c.receivedAt = Number.isFinite(seconds) ? Math.round(seconds * 1000) : null;
    c.parser.feed(raw.slice(tab + 1) + '\n');
  }
  return c.finish();
}

interface JournalLine {
  v: number;
  endpoint?: string;
  at?: number;
  kind: string;
  event?: string;
  data?: string;
  reason?: string | { kind?: string; status?: number; afterShutdown?: boolean };
  bytes?: number;
}

/** The service's journal (src/ingest/journal.ts): one JSON object per line, each with its endpoint's name. */
export function readJournalText(text: string): Array<ReplayItem & { endpoint?: string }> {
  const items: Array<ReplayItem & { endpoint?: string }> = [];
  for (const line of text.split('\n')) {
    if (line.trim().length === 0) continue;
    let entry: JournalLine;
    try {
      entry = JSON.parse(line) as JournalLine;
    } catch {
      continue; // a torn last line after a crash
    }
    const endpoint = entry.endpoint;
    const at = typeof entry.at === 'number' ? entry.at : null;
    switch (entry.kind) {
      case 'open':
        items.push({ kind: 'open', at, endpoint });
        break;
      case 'data':
        if (typeof entry.data === 'string') items.push({ kind: 'payload', eventName: entry.event ?? 'instance', data: entry.data, receivedAt: at, endpoint });
        break;
      case 'rejected':
        // Only oversized lines are journaled this way (payload rejections keep their raw data as `data`).
        items.push({ kind: 'overflow', bytes: entry.bytes ?? 0, endpoint });
        break;
      case 'close': {
        const r = entry.reason;
        const closeKind = typeof r === 'object' && r ? r.kind : undefined;
        const reason = typeof r === 'string' ? r : closeKind === 'eof' && r && typeof r === 'object' && r.afterShutdown ? 'shutdown' : (closeKind ?? 'eof');
        if (closeKind !== 'closed-by-us') items.push({ kind: 'close', at, reason, closeKind, endpoint });
        else items.push({ kind: 'close', at, reason: 'closed by TunnelPulse', closeKind: 'eof', endpoint });
        break;
      }
      default:
        break; // retry, comment, gap: nothing for the actors
    }
  }
  return items;
}

export function readReplaySource(file: string): ReplaySource {
  const text = readFileSync(file, 'utf8');
  const format = detectFormat(text);
  const items = format === 'journal' ? readJournalText(text) : format === 'timestamped' ? readTimestampedText(text) : readSseText(text);
  return { file, format, items };
}
