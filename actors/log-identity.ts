/**
 * Identity of a log line, so a line is never counted twice and never lost for looking like another.
 *
 * NodePass sends no event ids, and it can send byte-identical `log` events (same instance, same `time`,
 * same text) on one connection: each of those is its own line. Across connections NodePass never repeats
 * a line (there is no replay), so a repeat across connections is our own duplicate (a journal replayed
 * twice, a capture concatenated with itself). The identity is therefore
 *   (instance, time as sent with nanoseconds, hash of the raw line, ordinal)
 * where the ordinal numbers the copies of (time, line) within one connection: 1, 2, …
 * A line is new when its ordinal on the current connection exceeds the highest ordinal seen on any
 * connection for the same (time, line). The same key is the database's unique key for log rows.
 */

/** 64-bit FNV-1a of a string's UTF-16 code units, as 16 hex chars. Stable across runs and platforms. */
export function lineHash(text: string): string {
  // Two 32-bit lanes (FNV-1a with different offset bases) keep it fast without BigInt.
  let h1 = 0x811c9dc5;
  let h2 = 0x050c5d1f;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = Math.imul(h2 ^ c, 0x01000193) ^ (h1 >>> 15);
  }
  // One string built from 16 digit codes (runs for every log line; toString + padStart + concat made five).
  return String.fromCharCode(
    hexDigit(h1, 28), hexDigit(h1, 24), hexDigit(h1, 20), hexDigit(h1, 16), hexDigit(h1, 12), hexDigit(h1, 8), hexDigit(h1, 4), hexDigit(h1, 0),
    hexDigit(h2, 28), hexDigit(h2, 24), hexDigit(h2, 20), hexDigit(h2, 16), hexDigit(h2, 12), hexDigit(h2, 8), hexDigit(h2, 4), hexDigit(h2, 0),
  );
}

/** The char code of the lowercase hex digit of `h` at bit `shift`. */
function hexDigit(h: number, shift: number): number {
  const d = (h >>> shift) & 0xf;
  return d < 10 ? 48 + d : 87 + d;
}

/*
 * A tunnel's sightings are kept in `at` order: the time strings in arrays (each the event's own string: nothing is
 * concatenated, nothing internalized) and beside each a slot of numbers in a flat array of doubles (no object per
 * sighting), where the line's 16-hex-digit hash is kept as two 32-bit numbers rather than as its string. A line at
 * a time not older than the newest (almost every line) is compared only with the last sightings, those at its very
 * `at`, and appended; an older one is looked for among those at its `at`, found by binary search; pruning drops a
 * prefix, with no time parsed (the `at` is kept with each sighting). The order is held in chunks of
 * a few hundred sightings, so that a line older than others (a clock stepped back, an older journal replayed after
 * a newer one) is inserted at the cost of one chunk, not of all the sightings.
 */

/** Doubles per sighting in `SightingChunk.cells`, at these offsets. */
const SLOT_SIZE = 6;
/** Epoch ms of the sighting's time, the order of the sightings; +Infinity for a time `Date.parse` cannot read. */
const AT = 0;
/** The line hash's first and last eight hex digits as numbers, or (`HASH_HIGH` only) an odd hash's negative code. */
const HASH_HIGH = 1;
const HASH_LOW = 2;
/** The connection of the last sighting, the copies seen on it, the most copies seen on any connection. */
const CONNECTION = 3;
const ON_CONNECTION = 4;
const MOST_ON_ANY_CONNECTION = 5;

/** Appending starts a new chunk past this many sightings; an insertion splits a chunk past twice as many. */
const CHUNK_SIZE = 256;

/** Some of a tunnel's sightings, never none, in `at` order; every one of them not after any of the next chunk. */
export interface SightingChunk {
  /** The time string of each sighting. */
  times: string[];
  /** `SLOT_SIZE` doubles per sighting, in the same order (only numbers are ever stored, so V8 keeps them unboxed). */
  cells: number[];
}

export interface LogDedupe {
  /** All the sightings remembered, in `at` order. */
  chunks: SightingChunk[];
  /** Codes of hashes that are not 16 lowercase hex digits (never from `lineHash`; kept so any string stays exact). */
  oddHashes: Map<string, number> | null;
  /** Epoch ms of the newest line seen; sightings older than the window before it are forgotten. */
  newestAt: number;
  /** When sightings were last pruned (pruning is amortised: at most four passes per window). */
  prunedAt: number;
}

export const newLogDedupe = (): LogDedupe => ({ chunks: [], oddHashes: null, newestAt: 0, prunedAt: 0 });

/**
 * Records one sighting and returns its ordinal: 0 when the line is a duplicate, else its ordinal (1-based) for the
 * log row's identity. `windowMs` bounds memory: a sighting older than `newestAt − windowMs` is forgotten
 * (Infinity keeps everything, which replay uses so that `replay a.sse a.sse` counts nothing twice). `at` must be
 * `Date.parse(time)`, as the parser's `parseGoTime` gives it: sightings are found and forgotten by their `at`.
 * Mutates `dedupe`: it is owned by one tunnel actor and would be rebuilt on every log event otherwise. Returns a
 * number, not a result object: it runs for every log line.
 */
export function sightLogLine(
  dedupe: LogDedupe,
  key: { time: string; hash: string; at: number; connection: number },
  windowMs: number,
): number {
  readHash(dedupe, key.hash);
  const at = key.at === key.at ? key.at : Infinity; // NaN: never forgotten, as `Date.parse` < anything is false
  const chunks = dedupe.chunks;
  // Where a sighting at `at` goes: after the last one with an `at` up to it.
  const c = chunkFor(chunks, at);
  const chunk = chunks[c];
  const after = chunk === undefined ? 0 : sightingsUpTo(chunk, at);
  const found = chunk === undefined ? undefined : find(chunks, c, after, at, key.time);
  let ordinal = 0;
  if (found === undefined) {
    insert(chunks, c, after, at, key.time, key.connection);
    ordinal = 1;
  } else {
    const cells = found.cells;
    const base = foundIndex * SLOT_SIZE;
    const onConnection = cells[base + CONNECTION] === key.connection ? cells[base + ON_CONNECTION]! + 1 : 1;
    cells[base + CONNECTION] = key.connection;
    cells[base + ON_CONNECTION] = onConnection;
    if (onConnection > cells[base + MOST_ON_ANY_CONNECTION]!) {
      cells[base + MOST_ON_ANY_CONNECTION] = onConnection;
      ordinal = onConnection;
    }
  }
  if (key.at > dedupe.newestAt) {
    dedupe.newestAt = key.at;
    if (key.at - dedupe.prunedAt > windowMs / 4 && Number.isFinite(windowMs)) {
      pruneSightings(chunks, key.at - windowMs);
      dedupe.prunedAt = key.at;
    }
  }
  return ordinal;
}

const lastAt = (chunk: SightingChunk): number => chunk.cells[chunk.cells.length - SLOT_SIZE + AT]!;

/** The chunk a sighting at `at` goes in: the first whose last `at` is after it, else the last one (−1: none). */
function chunkFor(chunks: SightingChunk[], at: number): number {
  let high = chunks.length - 1;
  if (high <= 0 || lastAt(chunks[high]!) <= at) return high;
  let low = 0;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (lastAt(chunks[middle]!) <= at) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** How many of a chunk's sightings have an `at` up to `at`; the last one checked first (lines mostly come in order). */
function sightingsUpTo(chunk: SightingChunk, at: number): number {
  const cells = chunk.cells;
  let high = chunk.times.length;
  if (cells[(high - 1) * SLOT_SIZE + AT]! <= at) return high;
  let low = 0;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (cells[middle * SLOT_SIZE + AT]! <= at) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** `find`'s index in the chunk it returns. */
let foundIndex = 0;

/**
 * The chunk holding the sighting of (`time`, the hash `readHash` read) among those at `at`, which end just before
 * `after` in chunk `c` (and may begin in an earlier chunk), its index in `foundIndex`; undefined when there is none.
 */
function find(chunks: SightingChunk[], c: number, after: number, at: number, time: string): SightingChunk | undefined {
  let chunk = chunks[c]!;
  let i = after - 1;
  for (;;) {
    if (i < 0) {
      if (c === 0) return undefined;
      chunk = chunks[--c]!; // the sightings at `at` may begin in an earlier chunk
      i = chunk.times.length - 1;
    }
    const base = i * SLOT_SIZE;
    const cells = chunk.cells;
    if (cells[base + AT] !== at) return undefined;
    if (cells[base + HASH_HIGH] === hashHigh && cells[base + HASH_LOW] === hashLow && chunk.times[i] === time) {
      foundIndex = i;
      return chunk;
    }
    i--;
  }
}

/** Adds a first sighting at index `after` of chunk `c` (−1: there is no chunk yet). */
function insert(chunks: SightingChunk[], c: number, after: number, at: number, time: string, connection: number): void {
  const chunk = chunks[c];
  if (chunk === undefined || (after === chunk.times.length && c === chunks.length - 1 && after >= CHUNK_SIZE)) {
    // A new last chunk; the full one before it is copied to its exact size (arrays grow with room to spare).
    if (chunk !== undefined) chunks[c] = { times: chunk.times.slice(), cells: chunk.cells.slice() };
    chunks.push({ times: [time], cells: [at, hashHigh, hashLow, connection, 1, 1] });
  } else if (after === chunk.times.length) {
    chunk.times.push(time);
    chunk.cells.push(at, hashHigh, hashLow, connection, 1, 1);
  } else {
    chunk.times.splice(after, 0, time);
    chunk.cells.splice(after * SLOT_SIZE, 0, at, hashHigh, hashLow, connection, 1, 1);
    if (chunk.times.length > 2 * CHUNK_SIZE) {
      const half = chunk.times.length >>> 1;
      chunks.splice(c + 1, 0, { times: chunk.times.splice(half), cells: chunk.cells.splice(half * SLOT_SIZE) });
    }
  }
}

/** `readHash`'s result (two numbers without an object per line). */
let hashHigh = 0;
let hashLow = 0;

/** Sets `hashHigh`/`hashLow` from a 16-lowercase-hex-digit hash, or to an odd hash's code (distinct per string). */
function readHash(dedupe: LogDedupe, hash: string): void {
  if (hash.length === 16) {
    const high = hexNumber(hash, 0);
    const low = hexNumber(hash, 8);
    if (high >= 0 && low >= 0) {
      hashHigh = high;
      hashLow = low;
      return;
    }
  }
  const odd = dedupe.oddHashes ?? (dedupe.oddHashes = new Map());
  let code = odd.get(hash);
  if (code === undefined) odd.set(hash, (code = -1 - odd.size));
  hashHigh = code;
  hashLow = 0;
}

/** The 8 lowercase hex digits of `text` from `start` as a number in [0, 2³²), or −1 if one is not such a digit. */
function hexNumber(text: string, start: number): number {
  let n = 0;
  for (let i = start; i < start + 8; i++) {
    const c = text.charCodeAt(i);
    const digit = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : -1;
    if (digit === -1) return -1;
    n = n * 16 + digit;
  }
  return n;
}

/** Forgets the sightings whose `at` is before `olderThan`: a prefix, as they are in `at` order. */
function pruneSightings(chunks: SightingChunk[], olderThan: number): void {
  let whole = 0;
  while (whole < chunks.length && lastAt(chunks[whole]!) < olderThan) whole++;
  if (whole > 0) chunks.splice(0, whole);
  const first = chunks[0];
  if (first === undefined) return;
  let count = 0;
  while (first.cells[count * SLOT_SIZE + AT]! < olderThan) count++;
  if (count > 0) {
    first.times.splice(0, count);
    first.cells.splice(0, count * SLOT_SIZE);
  }
}
