/**
 * Child process of the benchmark: asks the tunnel-state route over loopback at a steady rate, one request at a
 * time on a keep-alive connection, and prints one JSON line with the latency figures. In its own process so
 * that its timing is not delayed by the ingest work of the process it measures.
 *
 *   node query-child.js '{"baseUrl":"http://127.0.0.1:1234","paths":["/api/endpoints/1/tunnels/ab12cd34"],"durationMs":5000,"rate":200}'
 */
import { Agent, request } from 'node:http';
import { pathToFileURL } from 'node:url';

export interface QueryProbeInput {
  baseUrl: string;
  paths: string[];
  durationMs: number;
  /** Requests per second (one in flight at a time, so fewer when answers are slow). */
  rate: number;
}

export interface QueryProbeResult {
  requests: number;
  errors: number;
  notOk: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

const agent = new Agent({ keepAlive: true, maxSockets: 1 });

function get(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

const quantile = (sorted: number[], q: number): number => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * q) - 1)]!);

export async function probe(input: QueryProbeInput): Promise<QueryProbeResult> {
  const samples: number[] = [];
  let errors = 0;
  let notOk = 0;
  const gapMs = 1000 / input.rate;
  // A few unmeasured requests first: connection set-up and the route's first (compiling) calls are not the steady state.
  for (let i = 0; i < 10; i++) await get(input.baseUrl + input.paths[i % input.paths.length]!).catch(() => undefined);
  const end = performance.now() + input.durationMs;
  for (let i = 0; performance.now() < end; i++) {
    const started = performance.now();
    try {
      const status = await get(input.baseUrl + input.paths[i % input.paths.length]!);
      samples.push(performance.now() - started);
      if (status !== 200) notOk++;
    } catch {
      errors++;
    }
    const wait = started + gapMs - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  samples.sort((a, b) => a - b);
  const round = (ms: number): number => Math.round(ms * 100) / 100;
  return { requests: samples.length, errors, notOk, p50Ms: round(quantile(samples, 0.5)), p99Ms: round(quantile(samples, 0.99)), maxMs: round(samples.at(-1) ?? 0) };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await probe(JSON.parse(process.argv[2]!) as QueryProbeInput);
  process.stdout.write(JSON.stringify(result) + '\n');
  agent.destroy();
}
