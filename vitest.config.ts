import { defineConfig } from 'vitest/config';
import { isPostgresJsTypeFetchFailure } from './src/db/driver-faults.js';

export default defineConfig({
  test: {
    include: ['test/**/*.spec.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Tests that cut the database connection can hit a known postgres.js fault (an unhandled rejection of its
    // type fetch on connect; src/db/driver-faults.ts): the service absorbs exactly that one, and so do the tests.
    onUnhandledError: (error) => !isPostgresJsTypeFetchFailure(error),
  },
});
