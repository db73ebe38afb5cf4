/**
 * The recording journal: everything received from each endpoint, appended as JSON Lines, so that
 * `tunnelpulse replay` can feed it through the same actors later and get the same result.
 *
 * Format (version 1), one object per line, every line `{"v":1,"endpoint":<name>,"at":<receive epoch ms>,"kind":…}`:
 * - `open`     the stream opened (status 200, SSE headers); starts a connection
 * - `retry`    the `retry:` field (`ms`)
 * - `data`     one SSE event: `event` (the SSE event name) and `data` (the raw payload, exactly as received,
 *              except the API-key record's `url`, which is redacted), including payloads that failed validation,
 *              so that replay rejects them too
 * - `comment`  an SSE comment line (`text`)
 * - `rejected` input dropped before it became an event (`reason`, `bytes`): an oversized line
 * - `close`    the connection ended, or an attempt failed before opening (`reason`, as the stream classified it;
 *              `stats`); a `close` with no `open` before it is a failed attempt
 * - `gap`      the journal itself dropped `dropped` entries of this endpoint (disk slower than the stream)
 * Lines are only ever appended. Readers skip lines they cannot read and count them (a crash can tear the last one).
 *
 * The API key never reaches the journal: it is not part of any entry, and the one payload that carries it
 * (the `********` record, PROTOCOL §2) has its `url` replaced before the line is built.
 *
 * Writes never block the event loop (SSE sockets must keep being read): entries are serialised synchronously,
 * then written in batches by one asynchronous writer; a burst becomes one `write`. If the disk falls behind by
 * more than `maxBufferedBytes`, entries are dropped, counted, and a `gap` entry records it.
 */
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { API_KEY_RECORD_ID } from '../protocol/events.js';
import type { StreamCloseResult, StreamRejection } from './event-stream.js';

export const JOURNAL_VERSION = 1;
export const REDACTED = '[redacted]';

// ---------------------------------------------------------------------------------------------------------
// Entry format

const Base = {
  v: Type.Literal(JOURNAL_VERSION),
  endpoint: Type.String(),
  at: Type.Number(),
};

export const JournalEntrySchema = Type.Union([
  Type.Object({ ...Base, kind: Type.Literal('open'), baseUrl: Type.Optional(Type.String()) }),
  Type.Object({ ...Base, kind: Type.Literal('retry'), ms: Type.Number() }),
  Type.Object({ ...Base, kind: Type.Literal('data'), event: Type.String(), data: Type.String() }),
  Type.Object({ ...Base, kind: Type.Literal('comment'), text: Type.String() }),
  Type.Object({ ...Base, kind: Type.Literal('rejected'), reason: Type.String(), bytes: Type.Number() }),
  Type.Object({
    ...Base,
    kind: Type.Literal('close'),
    /** The stream's close reason (`{ kind: 'eof', afterShutdown }`, `{ kind: 'auth', status, body }`, …). */
    reason: Type.Unsafe<{ kind: string } & Record<string, unknown>>(
      Type.Object({ kind: Type.String() }, { additionalProperties: true }),
    ),
    stats: Type.Optional(Type.Record(Type.String(), Type.Union([Type.Number(), Type.Null()]))),
  }),
  Type.Object({ ...Base, kind: Type.Literal('gap'), dropped: Type.Number() }),
]);
export type JournalEntry = Static<typeof JournalEntrySchema>;
export type JournalEntryKind = JournalEntry['kind'];
const entryCheck = TypeCompiler.Compile(JournalEntrySchema);

/**
 * Replaces the API key in a payload of the `********` record (its `url`, PROTOCOL §2). Other payloads are
 * returned unchanged (the cheap substring test keeps this off the hot path). A payload that mentions the
 * record but is not valid JSON gets every `"url"` value blanked, since it cannot be read precisely.
 */
export function redactApiKeyRecord(data: string): string {
  if (!data.includes(`"${API_KEY_RECORD_ID}"`)) return data;
  let envelope: unknown;
  try {
    envelope = JSON.parse(data);
  } catch {
    return data.replace(/"url"\s*:\s*"(?:[^"\\]|\\.)*"?/g, `"url":"${REDACTED}"`);
  }
  const instance = (envelope as { instance?: unknown } | null)?.instance;
  if (typeof instance !== 'object' || instance === null) return data;
  const record = instance as Record<string, unknown>;
  if (record['id'] !== API_KEY_RECORD_ID || !('url' in record)) return data;
  record['url'] = REDACTED;
  return JSON.stringify(envelope);
}

// ---------------------------------------------------------------------------------------------------------
// SSE rendering (a journal can be turned back into the raw capture format that `replay` also reads)

/** One SSE comment line per line of `text` (`: text\n`). */
export function toSseComment(text: string): string {
  return text
    .split('\n')
    .map((line) => `: ${line}\n`)
    .join('');
}

/** The recorder's marker between connections in a concatenated capture: `: disconnect <ISO> <reason>`. */
export function toSseDisconnectComment(at: number, reason: string): string {
  return toSseComment(`disconnect ${new Date(at).toISOString()} ${reason}`);
}

/** `: reconnect <ISO>`, written before the next connection's body. */
export function toSseReconnectComment(at: number): string {
  return toSseComment(`reconnect ${new Date(at).toISOString()}`);
}

/** A journal entry as SSE text, so that a journal can be replayed by anything that reads raw captures. */
export function journalEntryToSse(entry: JournalEntry): string {
  switch (entry.kind) {
    case 'open':
      return toSseReconnectComment(entry.at);
    case 'retry':
      return `retry: ${entry.ms}\n\n`;
    case 'data':
      return `event: ${entry.event}\n${entry.data
        .split('\n')
        .map((line) => `data: ${line}\n`)
        .join('')}\n`;
    case 'comment':
      return toSseComment(entry.text);
    case 'rejected':
      return toSseComment(`rejected ${new Date(entry.at).toISOString()} ${entry.bytes} bytes: ${entry.reason}`);
    case 'close':
      return toSseDisconnectComment(entry.at, describeCloseReason(entry.reason));
    case 'gap':
      return toSseComment(`gap ${new Date(entry.at).toISOString()} ${entry.dropped} entries dropped by the journal`);
  }
}

function describeCloseReason(reason: { kind: string } & Record<string, unknown>): string {
  if (reason.kind === 'eof') return reason['afterShutdown'] ? 'eof-after-shutdown' : 'eof';
  if (typeof reason['status'] === 'number') return `${reason.kind}-${reason['status']}`;
  return reason.kind;
}

// ---------------------------------------------------------------------------------------------------------
// Writer

export type FsyncPolicy =
  /** Leave it to the OS: survives a process crash, not a power loss. */
  | 'never'
  /** `fdatasync` at most every `fsyncIntervalMs` when something was written (the default). */
  | 'interval'
  /** `fdatasync` after every batch write (group commit: a burst is one batch). */
  | 'always';

export interface JournalWriterOptions {
  /** The active file, e.g. `data/journal.jsonl`; rotated files sit beside it (`journal.<UTC stamp>.jsonl`). */
  path: string;
  fsync?: FsyncPolicy;
  fsyncIntervalMs?: number;
  /** Rotate when the active file reaches this size; 0 turns rotation off. */
  maxFileBytes?: number;
  /** Rotated files kept (the oldest are deleted); 0 keeps them all. */
  maxFiles?: number;
  /**
   * Serialised entries queued behind the batch being written, beyond this, are dropped and counted (a `gap`
   * entry follows). Memory is about twice this at worst (the queue plus the batch in flight).
   */
  maxBufferedBytes?: number;
  /** Receive-time clock (epoch ms) for entries recorded through `endpoint()`, and for rotation stamps. */
  now?: () => number;
  /** Write, sync and rotation errors; the writer keeps going and retries with the next batch. */
  onError?: (error: Error) => void;
}

export interface JournalWriterStats {
  entries: number;
  bytesWritten: number;
  batches: number;
  fsyncs: number;
  rotations: number;
  dropped: number;
  writeErrors: number;
  bufferedBytes: number;
}

export const DEFAULT_JOURNAL_MAX_FILE_BYTES = 256 * 1024 * 1024;
export const DEFAULT_JOURNAL_MAX_FILES = 20;
export const DEFAULT_JOURNAL_MAX_BUFFERED_BYTES = 64 * 1024 * 1024;

/** What a stream's callbacks write for one endpoint; each method stamps the receive time. */
export interface EndpointJournal {
  open(baseUrl?: string): void;
  retry(ms: number): void;
  event(eventName: string, rawData: string): void;
  comment(text: string): void;
  rejected(rejection: StreamRejection): void;
  close(result: StreamCloseResult): void;
}

export async function openJournal(options: JournalWriterOptions): Promise<JournalWriter> {
  await mkdir(path.dirname(options.path), { recursive: true });
  const { handle, size } = await openForAppend(options.path);
  return new JournalWriter(options, handle, size);
}

/**
 * Opens for appending. A file whose last line was torn by a crash gets a newline first, so that the next
 * entry starts a line of its own instead of being glued onto the fragment (and lost with it).
 */
async function openForAppend(file: string): Promise<{ handle: FileHandle; size: number }> {
  const handle = await open(file, 'a+');
  let { size } = await handle.stat();
  if (size > 0) {
    const last = Buffer.alloc(1);
    await handle.read(last, 0, 1, size - 1);
    if (last[0] !== 0x0a) {
      await handle.write('\n');
      size += 1;
    }
  }
  return { handle, size };
}

export class JournalWriter {
  private pending: string[] = [];
  private pendingBytes = 0;
  private readonly droppedByEndpoint = new Map<string, number>();
  /** True while `drain` runs; `drain` is the only code that touches the file, so I/O never overlaps. */
  private draining = false;
  private syncRequested = false;
  private unsynced = false;
  private closing = false;
  private closed = false;
  private readonly fsync: FsyncPolicy;
  private readonly fsyncTimer: NodeJS.Timeout | undefined;
  private idleWaiters: (() => void)[] = [];
  private readonly now: () => number;
  private readonly counters: Omit<JournalWriterStats, 'bufferedBytes'> = {
    entries: 0,
    bytesWritten: 0,
    batches: 0,
    fsyncs: 0,
    rotations: 0,
    dropped: 0,
    writeErrors: 0,
  };

  /** Use `openJournal`. */
  constructor(
    private readonly options: JournalWriterOptions,
    private handle: FileHandle,
    private fileBytes: number,
  ) {
    this.now = options.now ?? Date.now;
    this.fsync = options.fsync ?? 'interval';
    if (this.fsync === 'interval') {
      this.fsyncTimer = setInterval(() => this.requestSync(), options.fsyncIntervalMs ?? 1_000);
      this.fsyncTimer.unref();
    }
  }

  get stats(): JournalWriterStats {
    return { ...this.counters, bufferedBytes: this.pendingBytes };
  }

  /**
   * Queues one entry; never blocks and never throws, so it is safe inside a stream callback. An entry that
   * does not fit in the buffer, or arrives after `close()`, is dropped and counted.
   */
  append(entry: JournalEntry): void {
    const maxBuffered = this.options.maxBufferedBytes ?? DEFAULT_JOURNAL_MAX_BUFFERED_BYTES;
    const line = this.closing ? '' : serialise(entry);
    if (this.closing || this.pendingBytes + line.length > maxBuffered) {
      this.counters.dropped += 1;
      if (!this.closing) this.droppedByEndpoint.set(entry.endpoint, (this.droppedByEndpoint.get(entry.endpoint) ?? 0) + 1);
      return;
    }
    this.pending.push(line);
    this.pendingBytes += line.length; // UTF-16 units: close enough for a memory bound
    this.counters.entries += 1;
    this.kick();
  }

  /** Entry constructors for one endpoint, shaped like the stream's callbacks. */
  endpoint(name: string): EndpointJournal {
    const base = (): { v: typeof JOURNAL_VERSION; endpoint: string; at: number } => ({
      v: JOURNAL_VERSION,
      endpoint: name,
      at: this.now(),
    });
    return {
      open: (baseUrl) => this.append({ ...base(), kind: 'open', ...(baseUrl ? { baseUrl } : {}) }),
      retry: (ms) => this.append({ ...base(), kind: 'retry', ms }),
      event: (event, data) => this.append({ ...base(), kind: 'data', event, data }),
      comment: (text) => this.append({ ...base(), kind: 'comment', text }),
      rejected: (rejection) => {
        if (rejection.kind === 'payload') {
          // Kept as data: replay must see (and reject) the same payload.
          this.append({ ...base(), kind: 'data', event: rejection.eventName, data: rejection.rawData });
        } else {
          this.append({ ...base(), kind: 'rejected', reason: rejection.reason, bytes: rejection.discardedBytes });
        }
      },
      close: (result) => {
        const { stats, ...reason } = result;
        this.append({ ...base(), kind: 'close', reason, stats: { ...stats } });
      },
    };
  }

  /** Resolves when everything appended so far is written (and synced, unless the policy is `never`). */
  async flush(): Promise<void> {
    if (this.fsync !== 'never' && !this.closed) {
      // Unconditionally: the batch being flushed may not be written (and so not yet "unsynced") at this point.
      this.syncRequested = true;
      this.kick();
    }
    if (this.draining) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /** Flushes and closes. If the disk keeps failing, what is still buffered is counted as dropped. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (this.fsyncTimer) clearInterval(this.fsyncTimer);
    await this.flush();
    this.closed = true;
    await this.handle.close();
  }

  private requestSync(): void {
    if (!this.unsynced || this.closed) return;
    this.syncRequested = true;
    this.kick();
  }

  private kick(): void {
    if (this.draining) return;
    this.draining = true;
    // Let the current burst of synchronous appends (one socket chunk) join this batch.
    setImmediate(() => void this.drain());
  }

  private async drain(): Promise<void> {
    while (this.pending.length > 0 || this.droppedByEndpoint.size > 0 || this.syncRequested) {
      try {
        if (this.pending.length > 0 || this.droppedByEndpoint.size > 0) await this.writeBatch();
        if (this.syncRequested || this.fsync === 'always') await this.sync();
      } catch (error) {
        this.counters.writeErrors += 1;
        this.options.onError?.(asError(error));
        if (this.closing) {
          // Nobody will retry after close: account for the loss instead of hanging.
          this.counters.dropped += this.pending.length;
          this.pending = [];
          this.pendingBytes = 0;
          this.droppedByEndpoint.clear();
          this.syncRequested = false;
          break;
        }
        // The batch is kept (a partial write leaves a torn line that readers skip); retry shortly.
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
    this.draining = false;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  private async writeBatch(): Promise<void> {
    this.recordGaps();
    // Take the batch out first: entries appended while the write is in flight form the next batch.
    const lines = this.pending;
    const lineBytes = this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
    const buffer = Buffer.from(lines.join(''), 'utf8');
    try {
      await this.rotateIfNeeded(buffer.length);
      await this.handle.appendFile(buffer); // loops until all is written, unlike a single write()
    } catch (error) {
      this.pending = lines.concat(this.pending);
      this.pendingBytes += lineBytes;
      throw error;
    }
    this.fileBytes += buffer.length;
    this.counters.bytesWritten += buffer.length;
    this.counters.batches += 1;
    this.unsynced = true;
  }

  private async sync(): Promise<void> {
    this.syncRequested = false;
    if (!this.unsynced) return;
    await this.handle.datasync();
    this.unsynced = false;
    this.counters.fsyncs += 1;
  }

  /** Turns drop counts into `gap` entries at the head of the next batch. */
  private recordGaps(): void {
    if (this.droppedByEndpoint.size === 0) return;
    const gaps = [...this.droppedByEndpoint].map(([endpoint, dropped]) =>
      serialise({ v: JOURNAL_VERSION, endpoint, at: this.now(), kind: 'gap', dropped }),
    );
    this.droppedByEndpoint.clear();
    this.pending.unshift(...gaps);
    for (const gap of gaps) this.pendingBytes += gap.length;
  }

  private async rotateIfNeeded(incomingBytes: number): Promise<void> {
    const maxFileBytes = this.options.maxFileBytes ?? DEFAULT_JOURNAL_MAX_FILE_BYTES;
    if (maxFileBytes <= 0 || this.fileBytes === 0 || this.fileBytes + incomingBytes <= maxFileBytes) return;
    if (this.fsync !== 'never') await this.sync();
    await this.handle.close();
    try {
      await rename(this.options.path, await freeRotatedName(this.options.path, this.now()));
      this.counters.rotations += 1;
    } finally {
      // Reopen whatever is at the path (a fresh file, or the old one if the rename failed).
      const reopened = await openForAppend(this.options.path);
      this.handle = reopened.handle;
      this.fileBytes = reopened.size;
    }
    await this.pruneRotated();
  }

  private async pruneRotated(): Promise<void> {
    const keep = this.options.maxFiles ?? DEFAULT_JOURNAL_MAX_FILES;
    if (keep <= 0) return;
    const rotated = (await listJournalFiles(this.options.path)).filter((file) => file !== this.options.path);
    for (const file of rotated.slice(0, Math.max(0, rotated.length - keep))) await unlink(file);
  }
}

/** One entry as one line; the only place entries become text, so redaction cannot be bypassed. */
function serialise(entry: JournalEntry): string {
  const safe = entry.kind === 'data' ? { ...entry, data: redactApiKeyRecord(entry.data) } : entry;
  return JSON.stringify(safe) + '\n';
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/** `data/journal.jsonl` + time → `data/journal.20261126T091534123Z.jsonl` (sorts by name = by time). */
function rotatedName(active: string, at: number): string {
  const { dir, name, ext } = path.parse(active);
  const stamp = new Date(at).toISOString().replace(/[-:.]/g, '');
  return path.join(dir, `${name}.${stamp}${ext}`);
}

async function freeRotatedName(active: string, at: number): Promise<string> {
  // Two rotations in one millisecond: move the stamp forward rather than break the name order.
  for (let stamp = at; ; stamp += 1) {
    const candidate = rotatedName(active, stamp);
    try {
      await stat(candidate);
    } catch {
      return candidate;
    }
  }
}

/** The rotated files of a journal, oldest first, then the active file if it exists: the order to replay them in. */
export async function listJournalFiles(active: string): Promise<string[]> {
  const { dir, name, ext } = path.parse(active);
  const pattern = new RegExp(`^${escapeRegExp(name)}\\.\\d{8}T\\d{9}Z${escapeRegExp(ext)}$`);
  let names: string[];
  try {
    names = await readdir(dir || '.');
  } catch {
    return [];
  }
  const rotated = names.filter((n) => pattern.test(n)).sort().map((n) => path.join(dir, n));
  const activeExists = await stat(active).then(
    () => true,
    () => false,
  );
  return activeExists ? [...rotated, active] : rotated;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

// ---------------------------------------------------------------------------------------------------------
// Reader

export interface JournalReadStats {
  entries: number;
  /** 1 if the file ended in an incomplete line (a crash mid-write), which was skipped. */
  tornTail: number;
  /** Other lines that were not a readable entry (e.g. a torn line followed by later appends), skipped. */
  invalidLines: number;
  /** Entries of another format version, skipped. */
  unsupportedVersion: number;
}

export interface JournalReader extends AsyncIterable<JournalEntry> {
  /** Final once iteration has finished. */
  readonly stats: JournalReadStats;
}

/** A line longer than this cannot be an entry the writer made (its payloads are bounded by the SSE line cap). */
export const MAX_JOURNAL_LINE_BYTES = 64 * 1024 * 1024;

/** Reads one journal file as entries, skipping (and counting) lines it cannot read. Never throws for content. */
export function readJournal(file: string): JournalReader {
  const stats: JournalReadStats = { entries: 0, tornTail: 0, invalidLines: 0, unsupportedVersion: 0 };

  const classify = (line: string): JournalEntry | 'invalid' | 'unsupported' => {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      return 'invalid';
    }
    if (entryCheck.Check(value)) return value;
    const version = typeof value === 'object' && value !== null ? (value as { v?: unknown }).v : undefined;
    return typeof version === 'number' && version !== JOURNAL_VERSION ? 'unsupported' : 'invalid';
  };
  const count = (result: 'invalid' | 'unsupported'): void => {
    if (result === 'invalid') stats.invalidLines += 1;
    else stats.unsupportedVersion += 1;
  };

  async function* entries(): AsyncGenerator<JournalEntry> {
    const decoder = new StringDecoder('utf8');
    let carry = '';
    // Inside a corrupt stretch with no newline for longer than any entry can be: skip to the next newline.
    let skippingLongLine = false;
    for await (const chunk of createReadStream(file)) {
      const lines = (carry + decoder.write(chunk as Buffer)).split('\n');
      carry = lines.pop() ?? '';
      for (const line of lines) {
        if (skippingLongLine) {
          skippingLongLine = false;
          continue;
        }
        if (line.length === 0) continue;
        const result = classify(line);
        if (typeof result === 'string') count(result);
        else {
          stats.entries += 1;
          yield result;
        }
      }
      if (carry.length > MAX_JOURNAL_LINE_BYTES) {
        if (!skippingLongLine) stats.invalidLines += 1;
        skippingLongLine = true;
        carry = '';
      }
    }
    const tail = carry + decoder.end();
    if (skippingLongLine) return; // already counted
    if (tail.length > 0) {
      // No newline after it: complete only if the crash came exactly between the JSON and its newline.
      const result = classify(tail);
      if (result === 'invalid') stats.tornTail += 1;
      else if (result === 'unsupported') count(result);
      else {
        stats.entries += 1;
        yield result;
      }
    }
  }

  return {
    stats,
    [Symbol.asyncIterator]: () => entries(),
  };
}
