/**
 * A streaming Server-Sent-Events parser with a bounded buffer.
 *
 * Why our own and not `eventsource-parser`: that one buffers an unterminated line without limit, and we need
 * (a) a hard cap on memory per connection (a master that sends 50 MB with no newline must cost us at most
 * `maxLineBytes`), (b) the comment lines that our recorder writes between connections (`: disconnect …`), and
 * (c) the raw `retry:` line, which marks the start of every NodePass connection in a concatenated capture.
 * The SSE grammar itself is small (WHATWG HTML §9.2.6); this follows it for the fields NodePass uses.
 */

export interface SseHandlers {
  /** A complete event: its `event:` name (default `message`) and its `data:` lines joined by `\n`. */
  onEvent(name: string, data: string): void;
  /** A `retry:` field. NodePass sends it once, first thing on every connection. */
  onRetry?(ms: number): void;
  /** A comment line (`: text`), without the colon and one leading space. */
  onComment?(text: string): void;
  /** A line longer than the cap was discarded (counted by the caller). */
  onOverflow?(discardedBytes: number): void;
}

export const DEFAULT_MAX_LINE_BYTES = 1 << 20; // 1 MiB: NodePass events are ~0.6–2 KB

export class SseParser {
  private pending = '';
  private discarding = false;
  private discarded = 0;
  private eventName = '';
  private dataLines: string[] = [];
  private readonly decoder = new TextDecoder('utf-8');

  constructor(
    private readonly handlers: SseHandlers,
    private readonly maxLineBytes = DEFAULT_MAX_LINE_BYTES,
  ) {}

  /** Feeds bytes (or already-decoded text). Never throws on bad input. */
  feed(chunk: Uint8Array | string): void {
    const text = typeof chunk === 'string' ? chunk : this.decoder.decode(chunk, { stream: true });
    let start = 0;
    for (;;) {
      const nl = text.indexOf('\n', start);
      if (nl === -1) break;
      const piece = text.slice(start, nl);
      start = nl + 1;
      if (this.discarding) {
        this.endDiscard(piece.length);
        continue;
      }
      const line = this.pending.length > 0 ? this.pending + piece : piece;
      this.pending = '';
      if (line.length > this.maxLineBytes) {
        this.handlers.onOverflow?.(line.length);
        this.dropEvent();
        continue;
      }
      this.line(line.endsWith('\r') ? line.slice(0, -1) : line);
    }
    const rest = text.slice(start);
    if (rest.length === 0) return;
    if (this.discarding) {
      this.discarded += rest.length;
    } else if (this.pending.length + rest.length > this.maxLineBytes) {
      // Drop what we hold and everything up to the next newline: memory stays bounded by the cap.
      this.discarding = true;
      this.discarded = this.pending.length + rest.length;
      this.pending = '';
      this.dropEvent();
    } else {
      this.pending += rest;
    }
  }

  /** The event that held an oversized line is incomplete: none of it is dispatched. */
  private dropEvent(): void {
    this.dataLines = [];
    this.eventName = '';
  }

  /** End of stream: a trailing event without its blank line is incomplete and is not dispatched (per the spec). */
  end(): void {
    if (this.discarding) this.endDiscard(0);
    this.pending = '';
    this.dataLines = [];
    this.eventName = '';
  }

  private endDiscard(extra: number): void {
    this.handlers.onOverflow?.(this.discarded + extra);
    this.discarding = false;
    this.discarded = 0;
  }

  private line(line: string): void {
    if (line.length === 0) {
      if (this.dataLines.length > 0) {
        const data = this.dataLines.length === 1 ? this.dataLines[0]! : this.dataLines.join('\n');
        const name = this.eventName || 'message';
        this.dataLines = [];
        this.eventName = '';
        this.handlers.onEvent(name, data);
      } else {
        this.eventName = '';
      }
      return;
    }
    const colon = line.indexOf(':');
    if (colon === 0) {
      this.handlers.onComment?.(line.charCodeAt(1) === 32 ? line.slice(2) : line.slice(1));
      return;
    }
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    switch (field) {
      case 'data':
        this.dataLines.push(value);
        break;
      case 'event':
        this.eventName = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.handlers.onRetry?.(Number(value));
        break;
      default:
        // `id:` and unknown fields carry nothing for NodePass; ignored as the spec says.
        break;
    }
  }
}
