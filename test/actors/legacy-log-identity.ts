/**
 * The log-line de-duplication as it was before its sightings were kept in `at` order in flat arrays
 * (actors/log-identity.ts before that change): copied verbatim, one plain object keyed by `${time}|${hash}`, pruned
 * with `Date.parse` of every key. Kept only as the reference the equivalence test
 * (log-identity-equivalence.unit.spec.ts) compares the new representation with.
 */
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
