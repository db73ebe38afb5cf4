// Copies the non-TypeScript files under src/ (SQL migrations, worker scripts, static web assets) into dist/src,
// so the compiled service finds them beside its modules exactly as the sources do.
import { cpSync, existsSync, readdirSync, statSync, mkdirSync } from 'node:fs';
import { join, dirname, extname } from 'node:path';

const ASSET_EXTENSIONS = new Set(['.sql', '.mjs', '.html', '.css', '.js', '.svg', '.json', '.png']);
const from = 'src';
const to = join('dist', 'src');

function walk(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (ASSET_EXTENSIONS.has(extname(name))) {
      const target = join(to, path.slice(from.length + 1));
      mkdirSync(dirname(target), { recursive: true });
      cpSync(path, target);
    }
  }
}
if (existsSync(from)) walk(from);
