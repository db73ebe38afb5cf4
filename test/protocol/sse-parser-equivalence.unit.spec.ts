/**
 * The SSE parser decodes bytes itself (only up to the last complete UTF-8 sequence, the rest kept as bytes) and
 * reads lines in place; it must report exactly what the former parser — `TextDecoder` with `stream`, a string per
 * line — reported, whatever the bytes (multi-byte characters cut anywhere, invalid UTF-8, byte-order marks,
 * CRLF, comments, oversized lines) and whatever the chunking, text and bytes mixed. The former parser is kept
 * below, verbatim, as the oracle.
 */
import { describe, expect, it } from 'vitest';
import { SseParser, type SseHandlers } from '../../src/protocol/sse-parser.js';
import { captureBytes } from '../support/captures.js';
import { intBetween, mulberry32 } from '../support/prng.js';

class FormerSseParser {
  private pending = '';
  private discarding = false;
  private discarded = 0;
  private eventName = '';
  private dataLines: string[] = [];
  private readonly decoder = new TextDecoder('utf-8');

  constructor(
    private readonly handlers: SseHandlers,
    private readonly maxLineBytes = (1 << 20),
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

type Call = [kind: 'event', name: string, data: string] | [kind: 'retry', ms: number] | [kind: 'comment', text: string] | [kind: 'overflow', bytes: number];

function recorder(): { handlers: SseHandlers; calls: Call[] } {
  const calls: Call[] = [];
  return {
    calls,
    handlers: {
      onEvent: (name, data) => void calls.push(['event', name, data]),
      onRetry: (ms) => void calls.push(['retry', ms]),
      onComment: (text) => void calls.push(['comment', text]),
      onOverflow: (bytes) => void calls.push(['overflow', bytes]),
    },
  };
}

const enc = (text: string): Buffer => Buffer.from(text, 'utf8');

/** Feeds the same bytes to both parsers, cut the same way, and returns both call lists. */
function both(
  bytes: Uint8Array,
  cut: (offset: number) => number,
  options: { maxLineBytes?: number; /** Text to feed, or `end()`, after the piece that ends at `offset`. */
    between?: (offset: number) => string | 'end' | null; plainArrays?: boolean } = {},
): { now: Call[]; former: Call[] } {
  const now = recorder();
  const former = recorder();
  const parser = new SseParser(now.handlers, options.maxLineBytes);
  const oracle = new FormerSseParser(former.handlers, options.maxLineBytes);
  for (let offset = 0; offset < bytes.length; ) {
    const size = Math.max(1, Math.min(bytes.length - offset, cut(offset)));
    let piece = bytes.subarray(offset, offset + size);
    if (options.plainArrays) piece = new Uint8Array(piece);
    offset += size;
    parser.feed(piece);
    oracle.feed(piece);
    const extra = options.between?.(offset) ?? null;
    if (extra === 'end') {
      parser.end();
      oracle.end();
    } else if (extra !== null) {
      parser.feed(extra);
      oracle.feed(extra);
    }
  }
  parser.end();
  oracle.end();
  return { now: now.calls, former: former.calls };
}

describe('decoding and line reading, against the former parser', () => {
  it('the s1 capture in socket-sized chunks, in 1–7 byte chunks, and as plain Uint8Arrays', () => {
    const bytes = captureBytes('nodepass-s1-main-debug.sse');
    const random = mulberry32(1);
    for (const cut of [() => intBetween(random, 1024, 65536), () => intBetween(random, 1, 7)]) {
      const { now, former } = both(bytes, cut);
      expect(now.filter((c) => c[0] === 'event')).toHaveLength(628);
      expect(now).toEqual(former);
    }
    const { now, former } = both(bytes, () => intBetween(random, 1, 3000), { plainArrays: true });
    expect(now).toEqual(former);
  });

  it('a 4-byte, a 3-byte and a 2-byte character cut at every byte give the character', () => {
    const text = 'event: instance\ndata: {"logs":"😀 日 é"}\n\n';
    const bytes = enc(text);
    for (let at = 1; at < bytes.length; at++) {
      const { now, former } = both(bytes, (offset) => (offset === 0 ? at : bytes.length));
      expect(now).toEqual([['event', 'instance', '{"logs":"😀 日 é"}']]);
      expect(now).toEqual(former);
    }
  });

  it('invalid UTF-8 (lone continuations, overlongs, surrogates, truncated sequences, 0xFF) becomes U+FFFD as before, cut anywhere', () => {
    const bad = [[0x80], [0xbf, 0x80], [0xc0, 0xaf], [0xe0, 0x80, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xf0, 0x80, 0x80, 0x80], [0xf0, 0x9f, 0x98], [0xe0, 0xa0], [0xed, 0x9f], [0xe2, 0x82], [0xff], [0xf8, 0x88, 0x80, 0x80, 0x80]];
    for (const sequence of bad) {
      const bytes = Buffer.concat([enc('data: a'), Buffer.from(sequence), enc('b\n'), Buffer.from(sequence), enc('\n\n')]);
      for (let at = 1; at < bytes.length; at++) {
        const { now, former } = both(bytes, (offset) => (offset === 0 ? at : 2));
        expect(now[0]?.[0]).toBe('event');
        expect(now).toEqual(former);
        // Text, or the end of a stream, right after the cut: what was held back as bytes and what was decoded shows.
        for (const between of ['data: z\n', 'end'] as const) {
          const mixed = both(bytes, (offset) => (offset === 0 ? at : bytes.length), { between: (offset) => (offset === at ? between : null) });
          expect(mixed.now).toEqual(mixed.former);
        }
      }
    }
  });

  it('a byte-order mark is dropped at the start of the stream only, even when cut, as TextDecoder did', () => {
    const bytes = enc('\uFEFFdata: x\uFEFF\n\n\uFEFFdata: y\n\n');
    for (let at = 1; at <= 4; at++) {
      const { now, former } = both(bytes, (offset) => (offset === 0 ? at : 1));
      expect(now).toEqual([['event', 'message', 'x\uFEFF']]); // the second event's field is `\uFEFFdata`, unknown
      expect(now).toEqual(former);
    }
  });

  it('20,000 seeded random streams: fields, CRLF, comments, retry, oversized lines, bad bytes, text fed between bytes, end() midway', () => {
    const random = mulberry32(7);
    const int = (min: number, max: number): number => intBetween(random, min, max);
    const pieces = [
      'event: instance\n', 'data: {"a":1}\n', '\n', '\r\n', 'data:x\r\n', ': comment\n', ':\n', ': \n', 'retry: 3000\n', 'retry: 30a\n',
      'id: 5\n', 'data\n', 'event\n', 'event:other\n', 'event: instance\r\n', 'data: é日本😀\n', 'é', '😀', '\uFEFF', '\r', `data: ${'x'.repeat(50)}\n`,
      'x'.repeat(200), ':', ' ', 'data: \u2028\n', 'dat', 'a: ', 'event: instanc', 'e\n',
    ];
    const oddBytes = [0x80, 0xbf, 0xc2, 0xe0, 0xed, 0xf0, 0xf4, 0xff, 0x0a, 0x0d, 0xef, 0xbb, 0xa0, 0x90, 0x8f, 0x9f];
    let events = 0;
    for (let run = 0; run < 20_000; run++) {
      const parts: Buffer[] = [];
      for (let i = int(1, 60); i > 0; i--) {
        parts.push(
          random() < 0.08
            ? Buffer.from(Array.from({ length: int(1, 6) }, () => (random() < 0.5 ? int(0, 255) : oddBytes[int(0, oddBytes.length - 1)]!)))
            : enc(pieces[int(0, pieces.length - 1)]!),
        );
      }
      const { now, former } = both(Buffer.concat(parts), () => (random() < 0.3 ? int(1, 4) : int(1, 300)), {
        maxLineBytes: random() < 0.5 ? undefined : int(1, 120),
        plainArrays: random() < 0.2,
        between: () => (random() < 0.03 ? pieces[int(0, pieces.length - 1)]! : random() < 0.01 ? 'end' : null),
      });
      expect(now).toEqual(former);
      events += now.filter((c) => c[0] === 'event').length;
    }
    expect(events).toBeGreaterThan(10_000); // the comparison covers many dispatched events, not only rejections
  });
});
