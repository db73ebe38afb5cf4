import { defineConfig } from 'vitest/config';

/**
 * Fault drills (issue 8, docs/reliability.md): `npm run drills`. Kept out of `npm test` (the default config
 * only includes `*.spec.ts`; drills are `*.drill.ts`). One file at a time: each drill measures memory, file
 * descriptors and timing, which other drills running beside it would disturb.
 */
export default defineConfig({
  test: {
    include: ['test/drills/**/*.drill.ts'],
    testTimeout: 15 * 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: false,
    // Memory figures are taken after a full collection (global.gc), so they show what is retained, not GC slack.
    execArgv: ['--expose-gc'],
  },
});
