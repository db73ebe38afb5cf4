/**
 * The streaming SSE parser (src/protocol/sse-parser.ts): the same events whatever the chunking, CRLF,
 * comments, `retry:`, and a hard bound on memory for a line that never ends.
 */
import { describe, expect, it } from 'vitest';
import { SseParser, type SseHandlers } from '../../src/protocol/sse-parser.js';
import { captureBytes, captureDataLines } from '../support/captures.js';
import { intBetween, mulberry32 } from '../support/prng.js';

const S1 = 'nodepass-s1-main-debug.sse';

interface Recorded {
  events: [string, string][];
  retries: number[];
  comments: string[];
  overflows: number[];
}

function recorder(): { handlers: SseHandlers; out: Recorded } {
  const out: Recorded = { events: [], retries: [], comments: [], overflows: [] };
  return {
    out,
    handlers: {
      onEvent: (name, data) => void out.events.push([name, data]),
      onRetry: (ms) => void out.retries.push(ms),
      onComment: (text) => void out.comments.push(text),
      onOverflow: (n) => void out.overflows.push(n),
    },
  };
}

/** Feeds `input` cut into pieces by `cut` (sizes), and ends the stream. */
function parse(input: Uint8Array | string, sizes: () => number = () => Infinity, maxLineBytes?: number): Recorded {
  const { handlers, out } = recorder();
  const p = new SseParser(handlers, maxLineBytes);
  for (let i = 0; i < input.length; ) {
    const n = Math.max(1, Math.min(input.length - i, sizes()));
    p.feed(input.slice(i, i + n));
    i += n;
  }
  p.end();
  return out;
}

describe('chunk boundaries', () => {
  const bytes = captureBytes(S1);
  const expected = captureDataLines(S1).map((d): [string, string] => ['instance', d]);

  it('parses the s1 capture whole into its 628 events, one retry, no comment', () => {
    const out = parse(bytes);
    expect(out.events).toHaveLength(628);
    expect(out.events).toEqual(expected);
    expect(out.retries).toEqual([3000]);
    expect(out.comments).toEqual([]);
    expect(out.overflows).toEqual([]);
  });

  it('gives the same events fed byte by byte', () => {
    expect(parse(bytes, () => 1)).toEqual(parse(bytes));
  });

  it('gives the same events in random chunks (seeded), as bytes and as text', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const random = mulberry32(seed);
      expect(parse(bytes, () => intBetween(random, 1, 3000)).events).toEqual(expected);
    }
    const text = bytes.toString('utf8');
    const random = mulberry32(99);
    expect(parse(text, () => intBetween(random, 1, 700)).events).toEqual(expected);
  });

  it('keeps multi-byte UTF-8 characters whole when a chunk splits them', () => {
    const data = '{"alias":"隧道 ü 😀"}';
    const input = Buffer.from(`event: instance\ndata: ${data}\n\n`, 'utf8');
    expect(parse(input, () => 1).events).toEqual([['instance', data]]);
  });
});

describe('line endings, fields and comments', () => {
  it('accepts CRLF line endings, even with CR and LF in different chunks', () => {
    const crlf = Buffer.from(captureBytes(S1).toString('utf8').replaceAll('\n', '\r\n'), 'utf8');
    const expected = captureDataLines(S1).map((d): [string, string] => ['instance', d]);
    expect(parse(crlf).events).toEqual(expected);
    expect(parse(crlf, () => 1).events).toEqual(expected);
  });

  it('reports comment lines and does not make events of them', () => {
    const out = parse(': disconnect 2026-11-26T09:17:29Z\n:no space\n\nevent: instance\ndata: {}\n\n');
    expect(out.comments).toEqual(['disconnect 2026-11-26T09:17:29Z', 'no space']);
    expect(out.events).toEqual([['instance', '{}']]);
  });

  it('reports a numeric retry: and ignores a malformed one', () => {
    expect(parse('retry: 3000\n\nretry: soon\nretry: -5\nretry:250\n\n').retries).toEqual([3000, 250]);
  });

  it('joins several data lines with \\n, defaults the name to "message", and ignores id: and unknown fields', () => {
    const out = parse('data: a\ndata:b\nid: 7\nfoo: bar\n\nevent: instance\n\ndata: c\n\n');
    expect(out.events).toEqual([
      ['message', 'a\nb'],
      ['message', 'c'], // the event name of a data-less block does not leak into the next one
    ]);
  });

  it('does not dispatch a trailing event that never got its blank line', () => {
    expect(parse('event: instance\ndata: {"type":"update"}\n').events).toEqual([]);
  });
});

describe('bounded buffer', () => {
  const NEXT = '{"type":"shutdown","time":"2026-11-26T09:17:39.124609345Z","instance":null,"logs":""}';

  it('discards a 50 MB line with no newline, reports it, keeps memory bounded, and parses the next event', () => {
    const { handlers, out } = recorder();
    const cap = 1 << 20;
    const p = new SseParser(handlers, cap);
    const internal = p as unknown as { pending: string; dataLines: string[] };
    p.feed('event: instance\ndata: ');
    const chunk = new Uint8Array(64 * 1024).fill(0x78); // 'x'
    const total = 50 * 1024 * 1024;
    let largestHeld = 0;
    const heapBefore = process.memoryUsage().heapUsed;
    for (let sent = 0; sent < total; sent += chunk.length) {
      p.feed(chunk);
      largestHeld = Math.max(largestHeld, internal.pending.length);
    }
    const heapGrowth = process.memoryUsage().heapUsed - heapBefore;
    expect(largestHeld).toBeLessThanOrEqual(cap);
    expect(heapGrowth).toBeLessThan(16 * 1024 * 1024); // holding the line would take 50 MB or more
    expect(out.overflows).toEqual([]); // not reported before the line ends
    p.feed(`\n\nevent: instance\ndata: ${NEXT}\n\n`);
    expect(out.overflows).toHaveLength(1);
    expect(out.overflows[0]).toBeGreaterThanOrEqual(total);
    expect(out.events).toEqual([['instance', NEXT]]);
  });

  it('reports an unterminated huge line at end of stream', () => {
    const { handlers, out } = recorder();
    const p = new SseParser(handlers, 1024);
    p.feed('data: ' + 'y'.repeat(5000));
    p.end();
    expect(out.overflows).toEqual([5006]);
    expect(out.events).toEqual([]);
  });

  it('drops the event that held an oversized line, whether the line arrived in one chunk or many', () => {
    // The same bytes must give the same events however they are cut (a whole event is either kept or not).
    // (Regression guard: in one chunk the truncated event used to be dispatched as '{"a":1}'.)
    const input = `event: instance\ndata: {"a":1}\ndata: ${'z'.repeat(4096)}\n\nevent: instance\ndata: ${NEXT}\n\n`;
    const whole = parse(input, () => Infinity, 1024);
    const chunked = parse(input, () => 100, 1024);
    expect(chunked.events).toEqual([['instance', NEXT]]);
    expect(whole.events).toEqual(chunked.events);
    expect(whole.overflows).toHaveLength(1);
    expect(chunked.overflows).toHaveLength(1);
  });
});
