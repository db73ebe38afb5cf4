/**
 * Child process of the benchmark: the floor of the query figure. A `node:http` server in a process of its own that
 * does nothing else, answering every request with the same JSON body (the size of a tunnel-state reply). The query
 * probe asks it at the same rate and in the same window as TunnelPulse: its latency is what this machine's
 * scheduler and loopback cost a request under the step's load, which no server design avoids (docs/performance.md,
 * Session 5). Prints one JSON line `{"port": N}` once listening; ends when its stdin closes (its parent is gone).
 */
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { fileURLToPath, pathToFileURL } from 'node:url';

export interface FloorServerInput {
  /** Bytes of the reply body (JSON). */
  bodyBytes: number;
}

export function floorBody(bytes: number): string {
  const shell = '{"pad":""}';
  return `{"pad":"${'x'.repeat(Math.max(0, bytes - shell.length))}"}`;
}

export interface FloorServer {
  /** The URL every request of the floor loop asks. */
  url: string;
  stop(): void;
}

/** Starts the floor server in a child process (this file, or the built `script` of it); resolves once it listens. */
export function spawnFloorServer(input: FloorServerInput, script = fileURLToPath(import.meta.url)): Promise<FloorServer> {
  const child = spawn(process.execPath, [script, JSON.stringify(input)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const stop = () => {
    child.stdin.end();
    child.kill();
  };
  return new Promise((resolve, reject) => {
    let out = '';
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`floor server exited (${code}) before listening`)));
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const newline = out.indexOf('\n');
      if (newline === -1) return;
      const { port } = JSON.parse(out.slice(0, newline)) as { port: number };
      resolve({ url: `http://127.0.0.1:${port}/floor`, stop });
    });
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const input = JSON.parse(process.argv[2] ?? '{}') as Partial<FloorServerInput>;
  const body = floorBody(input.bodyBytes ?? 1024);
  const server = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    process.stdout.write(JSON.stringify({ port: typeof address === 'object' && address ? address.port : 0 }) + '\n');
  });
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('close', () => process.exit(0));
}
