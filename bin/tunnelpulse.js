#!/usr/bin/env node
// The package's command. The TypeScript sources are compiled to dist/ by `npm install` (the `prepare` script).
import { existsSync } from 'node:fs';
const entry = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('tunnelpulse: dist/ is missing; run `npm run build` first\n');
  process.exit(1);
}
await import(entry.href);
