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

/** Per (time, line): [connection of the last sighting, copies seen on that connection, most copies on any]. */
export type LogSighting = [connection: number, onConnection: number, mostOnAnyConnection: number];

export interface LogDedupe {
  /** Keyed by `${time}|${lineHash}`. */
  seen: Record<string, LogSighting>;
  /** Epoch ms of the newest line seen; sightings older than the window before it are forgotten. */
  newestAt: number;
  /** When sightings were last pruned (pruning is amortised: at most four passes per window). */
  prunedAt: number;
}

export const newLogDedupe = (): LogDedupe => ({ seen: {}, newestAt: 0, prunedAt: 0 });

/**
 * Records one sighting and returns its ordinal: 0 when the line is a duplicate, else its ordinal (1-based) for the
 * log row's identity. `windowMs` bounds memory: a sighting older than `newestAt − windowMs` is forgotten
 * (Infinity keeps everything, which replay uses so that `replay a.sse a.sse` counts nothing twice).
 * Mutates `dedupe`: it is owned by one tunnel actor and would be rebuilt on every log event otherwise. Returns a
 * number, not a result object: it runs for every log line.
 */
export function sightLogLine(
  dedupe: LogDedupe,
  key: { time: string; hash: string; at: number; connection: number },
  windowMs: number,
): number {
  const id = `${key.time}|${key.hash}`;
  const seen = dedupe.seen;
  const prior = seen[id];
  let ordinal = 0;
  if (prior === undefined) {
    seen[id] = [key.connection, 1, 1];
    ordinal = 1;
  } else {
    const onConnection = prior[0] === key.connection ? prior[1] + 1 : 1;
    prior[0] = key.connection;
    prior[1] = onConnection;
    if (onConnection > prior[2]) {
      prior[2] = onConnection;
      ordinal = onConnection;
    }
  }
  if (key.at > dedupe.newestAt) {
    dedupe.newestAt = key.at;
    if (key.at - dedupe.prunedAt > windowMs / 4 && Number.isFinite(windowMs)) {
      pruneSightings(dedupe, key.at - windowMs);
      dedupe.prunedAt = key.at;
    }
  }
  return ordinal;
}

function pruneSightings(dedupe: LogDedupe, olderThan: number): void {
  for (const id of Object.keys(dedupe.seen)) {
    const at = Date.parse(id.slice(0, id.indexOf('|')));
    if (at < olderThan) delete dedupe.seen[id];
  }
}
