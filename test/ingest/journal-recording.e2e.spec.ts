/**
 * Given a master streaming a real capture, when the stream's callbacks feed the journal, then the journal holds
 * exactly what was received (minus the key), and replaying its data entries gives the capture's counts.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { openEventStream, type StreamCloseResult } from '../../src/ingest/event-stream.js';
import { openJournal, readJournal, type JournalEntry, type JournalWriter } from '../../src/ingest/journal.js';
import { parseNodePassPayload } from '../../src/protocol/events.js';
import {
  countCaptureEvents,
  readCapture,
  requireKey,
  routes,
  serveSse,
  startHttpServer,
  TEST_API_KEY,
  type TestServer,
} from '../support/sse-server.js';

const CAPTURED_KEY = '1a040764b530633900dadf3b18cc8830';

let dir: string;
let server: TestServer;
beforeEach(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'tp-recording-'));
  const body = readCapture('nodepass-s1-main-debug.sse');
  server = await startHttpServer(routes({ '/api/v1/events': requireKey(TEST_API_KEY, serveSse(body, { seed: 9, maxChunk: 2048 })) }));
});
afterEach(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

function record(journal: JournalWriter, endpoint: string, apiKey: string): Promise<StreamCloseResult> {
  const recorder = journal.endpoint(endpoint);
  return new Promise((resolve) => {
    openEventStream({
      baseUrl: server.baseUrl,
      apiKey,
      onOpen: () => recorder.open(server.baseUrl),
      onRetry: (ms) => recorder.retry(ms),
      onComment: (text) => recorder.comment(text),
      onEvent: (_parsed, rawData) => recorder.event('instance', rawData),
      onRejected: (rejection) => recorder.rejected(rejection),
      onClose: (result) => {
        recorder.close(result);
        resolve(result);
      },
    });
  });
}

it('records a whole connection and a failed attempt; replaying the journal gives the capture’s events', async () => {
  const file = path.join(dir, 'journal.jsonl');
  const journal = await openJournal({ path: file, fsync: 'always' });
  const failed = await record(journal, 'edge-1', 'wrong-key');
  const streamed = await record(journal, 'edge-1', TEST_API_KEY);
  await journal.close();
  expect(failed.kind).toBe('auth');
  expect(streamed).toMatchObject({ kind: 'eof', afterShutdown: true });

  expect(readFileSync(file, 'utf8')).not.toContain(CAPTURED_KEY);

  const reader = readJournal(file);
  const entries: JournalEntry[] = [];
  for await (const entry of reader) entries.push(entry);
  expect(reader.stats).toMatchObject({ tornTail: 0, invalidLines: 0 });

  const kinds = entries.map((e) => e.kind);
  expect(kinds[0]).toBe('close'); // the 401: a close with no open is a failed attempt
  expect(entries[0]).toMatchObject({ reason: { kind: 'auth', status: 401 } });
  expect(kinds.slice(1, 3)).toEqual(['open', 'retry']);
  expect(kinds.at(-1)).toBe('close');
  expect(entries.at(-1)).toMatchObject({ reason: { kind: 'eof', afterShutdown: true } });

  // Replay: the data entries through the same payload parser.
  const byType: Record<string, number> = {};
  let masters = 0;
  for (const entry of entries) {
    if (entry.kind !== 'data') continue;
    const parsed = parseNodePassPayload(entry.data, entry.event);
    if (parsed.kind === 'master') {
      masters += 1;
      expect(parsed.masterId).toBe('1ab781946d30b9c8');
    } else if (parsed.kind === 'shutdown') byType['shutdown'] = (byType['shutdown'] ?? 0) + 1;
    else if (parsed.kind === 'instance') byType[parsed.event.type] = (byType[parsed.event.type] ?? 0) + 1;
  }
  const expected = countCaptureEvents(readCapture('nodepass-s1-main-debug.sse'));
  expect(byType).toEqual(expected.byType);
  expect(masters).toBe(expected.apiKeyRecords);
  // Receive times are monotonic.
  const times = entries.map((e) => e.at);
  expect(times).toEqual([...times].sort((a, b) => a - b));
});
