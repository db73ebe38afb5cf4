/**
 * A known postgres.js fault and the process policy around it.
 *
 * On every new connection postgres.js fetches the array types (`fetch_types`, needed: our `unnest` batches pass
 * JS arrays that it serialises with them) and drops the promise of that query: when the connection resets during
 * that moment (a database restart, a proxy cut) the rejection is unhandled (porsager/postgres #1192, #1205, #1223)
 * and Node's default policy ends the process. The connection is retried by the driver and the query that opened
 * it is rejected and handled on its own path, so this one rejection carries no information we would lose.
 *
 * The CLI installs `unhandledRejectionPolicy`: that fault is logged and counted; any other unhandled rejection
 * still ends the process with exit code 1, as Node's default would.
 */
export function isPostgresJsTypeFetchFailure(reason: unknown): boolean {
  if (typeof reason !== 'object' || reason === null) return false;
  const { query, stack } = reason as { query?: unknown; stack?: unknown };
  if (typeof query === 'string') return query.includes('pg_catalog.pg_type') && query.includes('typarray');
  // A copy of the error (a test runner's) keeps its stack, which postgres.js extends with the query's origin.
  return typeof stack === 'string' && /at fetchArrayTypes \(.*postgres[\\/]src[\\/]connection\.js/.test(stack);
}

let typeFetchFailures = 0;

/** How many times the fault above was absorbed in this process. */
export const postgresJsTypeFetchFailures = (): number => typeFetchFailures;

export function unhandledRejectionPolicy(log: { warn: (obj: object, msg: string) => void; fatal: (obj: object, msg: string) => void }) {
  return (reason: unknown): void => {
    if (isPostgresJsTypeFetchFailure(reason)) {
      typeFetchFailures++;
      log.warn({ err: String(reason), count: typeFetchFailures }, 'database connection lost while postgres.js read its types; the driver reconnects');
      return;
    }
    log.fatal({ err: reason instanceof Error ? { message: reason.message, stack: reason.stack } : String(reason) }, 'unhandled rejection');
    process.exit(1);
  };
}
