import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  JOURNAL_VERSION,
  journalEntryToSse,
  listJournalFiles,
  openJournal,
  readJournal,
  redactApiKeyRecord,
  REDACTED,
  toSseDisconnectComment,
  type JournalEntry,
} from '../../src/ingest/journal.js';
import { parseNodePassPayload } from '../../src/protocol/events.js';
import { SseParser } from '../../src/protocol/sse-parser.js';
import type { StreamCloseResult } from '../../src/ingest/event-stream.js';

const KEY = '1a040764b530633900dadf3b18cc8830';
const KEY_RECORD =
  `{"type":"initial","time":"2026-11-26T09:15:34.054947825Z","instance":{"id":"********","alias":"","type":"","status":"","url":"${KEY}",` +
  `"config":"1ab781946d30b9c8","restart":false,"meta":{"peer":{"sid":"","type":"","alias":""},"tags":{}},"mode":0,"ping":0,"pool":0,` +
  `"tcps":0,"udps":0,"tcprx":0,"tcptx":0,"udprx":0,"udptx":0},"logs":""}`;
const UPDATE =
  '{"type":"update","time":"2026-11-26T09:15:35.08384076Z","instance":{"id":"a236701f","alias":"np-server","type":"server","status":"running",' +
  '"url":"server://127.0.0.1:19100/127.0.0.1:19200?log=debug\\u0026max=16\\u0026mode=1","config":"server://x","restart":true,' +
  '"meta":{"peer":{"sid":"","type":"","alias":""},"tags":{}},"mode":0,"ping":0,"pool":0,"tcps":0,"udps":0,"tcprx":0,"tcptx":0,"udprx":0,"udptx":0},"logs":""}';

const CLOSE: StreamCloseResult = {
  kind: 'eof',
  afterShutdown: true,
  stats: { startedAt: 1, openedAt: 2, closedAt: 3, bytes: 10, events: 2, shutdownEvents: 1, rejected: 0, comments: 0, lastEventAt: 3 },
};

let dir: string;
let file: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'tp-journal-'));
  file = path.join(dir, 'journal.jsonl');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function readAll(target: string): Promise<{ entries: JournalEntry[]; stats: ReturnType<typeof readJournal>['stats'] }> {
  const reader = readJournal(target);
  const entries: JournalEntry[] = [];
  for await (const entry of reader) entries.push(entry);
  return { entries, stats: reader.stats };
}

describe('writing and reading back', () => {
  it('round-trips every kind of entry, in order, with the receive time', async () => {
    let clock = 1_000;
    const journal = await openJournal({ path: file, fsync: 'never', now: () => clock++ });
    const recorder = journal.endpoint('edge-1');
    recorder.open('http://h:9090/api/v1');
    recorder.retry(3000);
    recorder.event('instance', UPDATE);
    recorder.comment('disconnect 2026-11-26T09:17:29.103Z eof');
    recorder.rejected({ kind: 'payload', reason: 'not JSON (4 bytes)', eventName: 'instance', rawData: '{bad' });
    recorder.rejected({ kind: 'oversized-line', reason: 'too long', discardedBytes: 52_428_806 });
    recorder.close(CLOSE);
    await journal.close();

    const { entries, stats } = await readAll(file);
    expect(entries).toEqual([
      { v: 1, endpoint: 'edge-1', at: 1000, kind: 'open', baseUrl: 'http://h:9090/api/v1' },
      { v: 1, endpoint: 'edge-1', at: 1001, kind: 'retry', ms: 3000 },
      { v: 1, endpoint: 'edge-1', at: 1002, kind: 'data', event: 'instance', data: UPDATE },
      { v: 1, endpoint: 'edge-1', at: 1003, kind: 'comment', text: 'disconnect 2026-11-26T09:17:29.103Z eof' },
      { v: 1, endpoint: 'edge-1', at: 1004, kind: 'data', event: 'instance', data: '{bad' },
      { v: 1, endpoint: 'edge-1', at: 1005, kind: 'rejected', reason: 'too long', bytes: 52_428_806 },
      { v: 1, endpoint: 'edge-1', at: 1006, kind: 'close', reason: { kind: 'eof', afterShutdown: true }, stats: CLOSE.stats },
    ]);
    expect(stats).toEqual({ entries: 7, tornTail: 0, invalidLines: 0, unsupportedVersion: 0 });
    // The raw payload is stored byte for byte (Go's \u0026 escapes included).
    expect(readFileSync(file, 'utf8')).toContain(JSON.stringify(UPDATE));
  });

  it('batches a synchronous burst into one write', async () => {
    const journal = await openJournal({ path: file, fsync: 'never' });
    const recorder = journal.endpoint('e');
    for (let i = 0; i < 1000; i += 1) recorder.event('instance', UPDATE);
    await journal.flush();
    expect(journal.stats).toMatchObject({ entries: 1000, batches: 1, bufferedBytes: 0 });
    await journal.close();
    expect((await readAll(file)).entries).toHaveLength(1000);
  });

  it('keeps entries appended while a write is in flight (regression: they were once wiped with the batch)', async () => {
    const journal = await openJournal({ path: file, fsync: 'always' });
    const recorder = journal.endpoint('e');
    for (let i = 0; i < 200; i += 1) {
      recorder.retry(i);
      if (i % 3 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    await journal.close();
    const { entries } = await readAll(file);
    expect(entries.map((e) => (e.kind === 'retry' ? e.ms : -1))).toEqual([...Array(200).keys()]);
    expect(journal.stats.batches).toBeGreaterThan(1);
  });

  it('appends to an existing journal without touching what is there', async () => {
    for (const name of ['first', 'second']) {
      const journal = await openJournal({ path: file });
      journal.endpoint(name).retry(3000);
      await journal.close();
    }
    expect((await readAll(file)).entries.map((e) => e.endpoint)).toEqual(['first', 'second']);
  });

  it('drops entries appended after close, counting them, without throwing', async () => {
    const journal = await openJournal({ path: file });
    await journal.close();
    expect(() => journal.endpoint('late').retry(1)).not.toThrow();
    expect(journal.stats.dropped).toBe(1);
  });
});

describe('the API key never reaches the file', () => {
  it('redacts the url of the ******** record and keeps its master id', async () => {
    const journal = await openJournal({ path: file });
    journal.endpoint('e').event('instance', KEY_RECORD);
    await journal.close();

    const text = readFileSync(file, 'utf8');
    expect(text).not.toContain(KEY);
    const [entry] = (await readAll(file)).entries;
    expect(entry?.kind === 'data' && JSON.parse(entry.data).instance.url).toBe(REDACTED);
    // Replay still learns the master id from the redacted record.
    expect(entry?.kind === 'data' && parseNodePassPayload(entry.data)).toMatchObject({ kind: 'master', masterId: '1ab781946d30b9c8' });
  });

  it('redacts through append() too, and in a payload that mentions the record but is not valid JSON', async () => {
    const journal = await openJournal({ path: file });
    journal.append({ v: JOURNAL_VERSION, endpoint: 'e', at: 1, kind: 'data', event: 'instance', data: KEY_RECORD });
    journal.endpoint('e').rejected({ kind: 'payload', reason: 'not JSON', eventName: 'instance', rawData: KEY_RECORD.slice(0, 200) });
    await journal.close();
    expect(readFileSync(file, 'utf8')).not.toContain(KEY);
  });

  it('leaves every other payload exactly as received', () => {
    expect(redactApiKeyRecord(UPDATE)).toBe(UPDATE);
    const logMentioningStars = UPDATE.replace('"logs":""', '"logs":"password \\"********\\" hidden"');
    expect(redactApiKeyRecord(logMentioningStars)).toBe(logMentioningStars);
  });
});

describe('crash tolerance', () => {
  it('skips and counts a torn last line', async () => {
    const good = JSON.stringify({ v: 1, endpoint: 'e', at: 1, kind: 'retry', ms: 3000 });
    writeFileSync(file, `${good}\n${good}\n{"v":1,"endpoint":"e","at":2,"kind":"da`);
    const { entries, stats } = await readAll(file);
    expect(entries).toHaveLength(2);
    expect(stats).toEqual({ entries: 2, tornTail: 1, invalidLines: 0, unsupportedVersion: 0 });
  });

  it('accepts a last line that lost only its newline', async () => {
    writeFileSync(file, JSON.stringify({ v: 1, endpoint: 'e', at: 1, kind: 'retry', ms: 3000 }));
    expect((await readAll(file)).stats).toMatchObject({ entries: 1, tornTail: 0 });
  });

  it('starts a fresh line when reopening a torn journal, so the next entry survives', async () => {
    writeFileSync(file, '{"v":1,"endpoint":"e","at":2,"kind":"da');
    const journal = await openJournal({ path: file });
    journal.endpoint('after-crash').retry(3000);
    await journal.close();
    const { entries, stats } = await readAll(file);
    expect(entries.map((e) => e.endpoint)).toEqual(['after-crash']);
    expect(stats).toMatchObject({ invalidLines: 1, tornTail: 0 });
  });

  it('skips and counts lines of another version and lines that are not entries', async () => {
    const lines = [
      JSON.stringify({ v: 2, endpoint: 'e', at: 1, kind: 'retry', ms: 1 }),
      JSON.stringify({ v: 1, endpoint: 'e', at: 1, kind: 'teleport' }),
      'not json at all',
      '',
      JSON.stringify({ v: 1, endpoint: 'e', at: 1, kind: 'comment', text: 'ok' }),
    ];
    writeFileSync(file, lines.join('\n') + '\n');
    expect((await readAll(file)).stats).toEqual({ entries: 1, tornTail: 0, invalidLines: 2, unsupportedVersion: 1 });
  });
});

describe('rotation, fsync and back-pressure', () => {
  it('rotates by size into time-stamped files that list (and replay) in order, pruning the oldest', async () => {
    let clock = Date.UTC(2026, 10, 26, 9, 15, 34, 123);
    const journal = await openJournal({ path: file, fsync: 'never', maxFileBytes: 4096, maxFiles: 3, now: () => clock++ });
    const recorder = journal.endpoint('e');
    for (let i = 0; i < 40; i += 1) {
      recorder.comment(`entry ${i} ${'x'.repeat(400)}`);
      await journal.flush(); // one batch per entry, so rotation happens between entries
    }
    await journal.close();

    const files = await listJournalFiles(file);
    expect(files.at(-1)).toBe(file);
    expect(files).toHaveLength(4); // 3 rotated + the active one
    expect(path.basename(files[0]!)).toMatch(/^journal\.\d{8}T\d{9}Z\.jsonl$/);
    expect(journal.stats.rotations).toBeGreaterThan(3);

    const texts: string[] = [];
    for (const f of files) {
      expect(readFileSync(f).length).toBeLessThanOrEqual(4096);
      for (const entry of (await readAll(f)).entries) if (entry.kind === 'comment') texts.push(entry.text);
    }
    const numbers = texts.map((t) => Number(t.split(' ')[1]));
    expect(numbers).toEqual([...numbers].sort((a, b) => a - b));
    expect(numbers.at(-1)).toBe(39);
    expect(readdirSync(dir)).toHaveLength(4);
  });

  it('fsyncs every batch with "always", never with "never", and on flush with "interval"', async () => {
    const always = await openJournal({ path: path.join(dir, 'a.jsonl'), fsync: 'always' });
    always.endpoint('e').retry(1);
    await always.flush();
    always.endpoint('e').retry(2);
    await always.close();
    expect(always.stats).toMatchObject({ batches: 2, fsyncs: 2 });

    const never = await openJournal({ path: path.join(dir, 'n.jsonl'), fsync: 'never' });
    never.endpoint('e').retry(1);
    await never.close();
    expect(never.stats).toMatchObject({ batches: 1, fsyncs: 0 });

    const interval = await openJournal({ path: path.join(dir, 'i.jsonl'), fsync: 'interval', fsyncIntervalMs: 60_000 });
    interval.endpoint('e').retry(1);
    await interval.flush();
    expect(interval.stats).toMatchObject({ batches: 1, fsyncs: 1 });
    await interval.close();
  });

  it('syncs on its interval without being asked', async () => {
    const journal = await openJournal({ path: file, fsync: 'interval', fsyncIntervalMs: 20 });
    journal.endpoint('e').retry(1);
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(journal.stats.fsyncs).toBe(1);
    await journal.close();
  });

  it('drops what does not fit in the buffer, counts it, and records a gap', async () => {
    const journal = await openJournal({ path: file, fsync: 'never', maxBufferedBytes: 2_000 });
    const recorder = journal.endpoint('busy');
    for (let i = 0; i < 20; i += 1) recorder.comment('y'.repeat(300));
    await journal.close();
    const dropped = journal.stats.dropped;
    expect(dropped).toBeGreaterThan(0);
    const { entries } = await readAll(file);
    expect(entries.filter((e) => e.kind === 'comment')).toHaveLength(20 - dropped);
    expect(entries[0]).toMatchObject({ kind: 'gap', endpoint: 'busy', dropped });
  });
});

describe('SSE rendering', () => {
  it('turns a journal back into SSE that parses to the same events and markers', () => {
    const at = Date.UTC(2026, 10, 26, 9, 17, 29, 103);
    const entries: JournalEntry[] = [
      { v: 1, endpoint: 'e', at, kind: 'open' },
      { v: 1, endpoint: 'e', at, kind: 'retry', ms: 3000 },
      { v: 1, endpoint: 'e', at, kind: 'data', event: 'instance', data: UPDATE },
      { v: 1, endpoint: 'e', at, kind: 'data', event: 'instance', data: 'two\nlines' },
      { v: 1, endpoint: 'e', at, kind: 'close', reason: { kind: 'eof', afterShutdown: true } },
      { v: 1, endpoint: 'e', at, kind: 'close', reason: { kind: 'auth', status: 401, body: '' } },
    ];
    const seen: string[] = [];
    const parser = new SseParser({
      onEvent: (name, data) => seen.push(`event ${name} ${data}`),
      onRetry: (ms) => seen.push(`retry ${ms}`),
      onComment: (text) => seen.push(`comment ${text}`),
    });
    parser.feed(entries.map(journalEntryToSse).join(''));
    expect(seen).toEqual([
      'comment reconnect 2026-11-26T09:17:29.103Z',
      'retry 3000',
      `event instance ${UPDATE}`,
      'event instance two\nlines',
      'comment disconnect 2026-11-26T09:17:29.103Z eof-after-shutdown',
      'comment disconnect 2026-11-26T09:17:29.103Z auth-401',
    ]);
    expect(toSseDisconnectComment(at, 'reset')).toBe(': disconnect 2026-11-26T09:17:29.103Z reset\n');
  });
});
