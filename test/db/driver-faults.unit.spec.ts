import { describe, expect, it } from 'vitest';
import { isPostgresJsTypeFetchFailure } from '../../src/db/driver-faults.js';

/** An error shaped as postgres.js rejects its type fetch with when the connection resets (connection.js queryError). */
function typeFetchReset(): Error {
  const err = new Error('read ECONNRESET');
  Object.defineProperties(err, {
    stack: { value: `${err.stack}\n    at fetchArrayTypes (/app/node_modules/postgres/src/connection.js:769:25)` },
    query: { value: '\n      select b.oid, b.typarray\n      from pg_catalog.pg_type a\n      left join pg_catalog.pg_type b on b.oid = a.typelem\n' },
  });
  return err;
}

describe('the postgres.js type-fetch fault', () => {
  it('is recognised by its query, and by its stack alone (a serialised copy)', () => {
    const err = typeFetchReset();
    expect(isPostgresJsTypeFetchFailure(err)).toBe(true);
    expect(isPostgresJsTypeFetchFailure({ message: err.message, stack: err.stack })).toBe(true);
  });

  it('is not confused with any other failure, database ones included', () => {
    const insert = Object.assign(new Error('read ECONNRESET'), { query: 'INSERT INTO tunnel_logs …' });
    expect(isPostgresJsTypeFetchFailure(insert)).toBe(false);
    expect(isPostgresJsTypeFetchFailure(new Error('read ECONNRESET'))).toBe(false);
    expect(isPostgresJsTypeFetchFailure('fetchArrayTypes')).toBe(false);
    expect(isPostgresJsTypeFetchFailure(null)).toBe(false);
  });
});
