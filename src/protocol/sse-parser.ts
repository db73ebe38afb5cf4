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
  /** The event's `data:` lines joined by `\n` so far; null before its first one (an array per event cost a heap object). */
  private data: string | null = null;
  /** The bytes of a UTF-8 sequence cut by the end of the last chunk (≤ 3), decoded with the next chunk. */
  private carry: Uint8Array | null = null;
  /** No text decoded yet: a leading byte-order mark is dropped, as `TextDecoder` (the former decoder) does. */
  private atStreamStart = true;

  constructor(
    private readonly handlers: SseHandlers,
    private readonly maxLineBytes = DEFAULT_MAX_LINE_BYTES,
  ) {}

  /** Feeds bytes (or already-decoded text). Never throws on bad input. */
  feed(chunk: Uint8Array | string): void {
    const text = typeof chunk === 'string' ? chunk : this.decode(chunk);
    const maxLineBytes = this.maxLineBytes;
    let start = 0;
    for (;;) {
      const nl = text.indexOf('\n', start);
      if (nl === -1) break;
      if (this.discarding) {
        this.endDiscard(nl - start);
      } else if (this.pending.length > 0) {
        const line = this.pending + text.slice(start, nl);
        this.pending = '';
        if (line.length > maxLineBytes) this.overflow(line.length);
        else this.line(line, 0, line.length);
      } else if (nl - start > maxLineBytes) {
        this.overflow(nl - start);
      } else {
        // The usual case: the line read in place, without a string of its own.
        this.line(text, start, nl);
      }
      start = nl + 1;
    }
    const restLength = text.length - start;
    if (restLength === 0) return;
    if (this.discarding) {
      this.discarded += restLength;
    } else if (this.pending.length + restLength > maxLineBytes) {
      // Drop what we hold and everything up to the next newline: memory stays bounded by the cap.
      this.discarding = true;
      this.discarded = this.pending.length + restLength;
      this.pending = '';
      this.dropEvent();
    } else {
      this.pending += text.slice(start);
    }
  }

  /**
   * Bytes to text as a streaming `TextDecoder` gives it (the former decoder, ~5× dearer per byte here): every
   * complete or invalid sequence now (invalid bytes become U+FFFD, the same rule in V8 and the WHATWG decoder), a
   * valid but unfinished sequence at the end kept for the next chunk, a byte-order mark dropped at the start.
   */
  private decode(chunk: Uint8Array): string {
    let bytes = chunk;
    if (this.carry !== null) {
      bytes = new Uint8Array(this.carry.length + chunk.length);
      bytes.set(this.carry);
      bytes.set(chunk, this.carry.length);
      this.carry = null;
    }
    const end = completeSequencesEnd(bytes);
    if (end < bytes.length) this.carry = new Uint8Array(bytes.subarray(end)); // a copy: the chunk's memory may be reused
    if (end === 0) return '';
    const buffer = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const text = buffer.toString('utf8', 0, end);
    if (this.atStreamStart) {
      this.atStreamStart = false;
      if (text.charCodeAt(0) === 0xfeff) return text.slice(1);
    }
    return text;
  }

  /** A line over the cap: reported, and the event that held it is dropped. */
  private overflow(length: number): void {
    this.handlers.onOverflow?.(length);
    this.dropEvent();
  }

  /** The event that held an oversized line is incomplete: none of it is dispatched. */
  private dropEvent(): void {
    this.data = null;
    this.eventName = '';
  }

  /** End of stream: a trailing event without its blank line is incomplete and is not dispatched (per the spec). */
  end(): void {
    if (this.discarding) this.endDiscard(0);
    this.pending = '';
    this.data = null;
    this.eventName = '';
  }

  private endDiscard(extra: number): void {
    this.handlers.onOverflow?.(this.discarded + extra);
    this.discarding = false;
    this.discarded = 0;
  }

  /** The line `source[start, end)` (its `\n` excluded). */
  private line(source: string, start: number, end: number): void {
    if (end > start && source.charCodeAt(end - 1) === 13) end -= 1; // CRLF
    if (end === start) {
      if (this.data !== null) {
        const data = this.data;
        const name = this.eventName || 'message';
        this.data = null;
        this.eventName = '';
        this.handlers.onEvent(name, data);
      } else {
        this.eventName = '';
      }
      return;
    }
    let colon = start;
    while (colon < end && source.charCodeAt(colon) !== 58) colon++;
    if (colon === start) {
      const from = start + 1 < end && source.charCodeAt(start + 1) === 32 ? start + 2 : start + 1;
      this.handlers.onComment?.(source.slice(from, end));
      return;
    }
    // `colon === end`: a line without a colon is a field name with an empty value.
    let valueStart = colon < end ? colon + 1 : end;
    if (valueStart < end && source.charCodeAt(valueStart) === 32) valueStart += 1;
    const fieldLength = colon - start;
    if (fieldLength === 4 && source.startsWith('data', start)) {
      const value = source.slice(valueStart, end);
      this.data = this.data === null ? value : this.data + '\n' + value;
    } else if (fieldLength === 5 && source.startsWith('event', start)) {
      // NodePass's one event name, shared rather than copied per event.
      this.eventName = end - valueStart === 8 && source.startsWith('instance', valueStart) ? 'instance' : source.slice(valueStart, end);
    } else if (fieldLength === 5 && source.startsWith('retry', start)) {
      const value = source.slice(valueStart, end);
      if (/^\d+$/.test(value)) this.handlers.onRetry?.(Number(value));
    }
    // `id:` and unknown fields carry nothing for NodePass; ignored as the spec says.
  }
}

/**
 * Where the bytes stop being decodable now: before a trailing UTF-8 sequence that is valid so far but unfinished
 * (its lead byte is in the last three bytes), else the end. An invalid trailing sequence is decoded now (U+FFFD),
 * as the WHATWG decoder does.
 */
function completeSequencesEnd(bytes: Uint8Array): number {
  const length = bytes.length;
  for (let i = length - 1; i >= 0 && i >= length - 3; i--) {
    const lead = bytes[i]!;
    if (lead >= 0x80 && lead <= 0xbf) continue; // a continuation byte: its lead is further back
    const needed = lead >= 0xc2 && lead <= 0xdf ? 2 : lead >= 0xe0 && lead <= 0xef ? 3 : lead >= 0xf0 && lead <= 0xf4 ? 4 : 1;
    if (length - i >= needed) return length;
    // Every byte after the lead is a continuation (80–BF); the second's range depends on the lead (no overlongs,
    // no surrogates, nothing past U+10FFFF), and a second byte out of it ends the sequence as invalid now.
    if (i + 1 < length) {
      const second = bytes[i + 1]!;
      if ((lead === 0xe0 && second < 0xa0) || (lead === 0xed && second > 0x9f) || (lead === 0xf0 && second < 0x90) || (lead === 0xf4 && second > 0x8f)) {
        return length;
      }
    }
    return i;
  }
  return length;
}
