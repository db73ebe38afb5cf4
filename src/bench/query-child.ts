/**
 * Child process of the benchmark: asks the tunnel-state route over loopback at a steady rate, one request at a
 * time on a keep-alive connection, and prints one JSON line with the latency figures. In its own process so
 * that its timing is not delayed by the ingest work of the process it measures. With `floorUrl`, a second loop asks an
 * idle server in a process of its own (floor-server.ts) at the same rate in the same window, on its own connection:
 * the latency this machine adds to any request under the same load.
 *
 *   node query-child.js '{"baseUrl":"http://127.0.0.1:1234","paths":["/api/endpoints/1/tunnels/ab12cd34"],"durationMs":5000,"rate":200}'
 */
import { Agent, request } from 'node:http';
import { pathToFileURL } from 'node:url';

export interface QueryProbeInput {
  baseUrl: string;
  paths: string[];
  /** Measuring time after the warm-up requests; ends earlier at `endAt`. */
  durationMs: number;
  /** Epoch ms at which to stop whatever the start-up took (the end of the benchmark's window). */
  endAt?: number;
  /** Requests per second (one in flight at a time, so fewer when answers are slow). */
  rate: number;
  /** An idle server's URL (path included), asked alongside on its own connection: the machine's floor. */
  floorUrl?: string;
}

/** Latency figures of one loop of requests. */
export interface LatencyFigures {
  requests: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface QueryProbeResult {
  /** Answered requests, plus the one cut by the window's end if any (see `cut`). */
  requests: number;
  errors: number;
  notOk: number;
  /**
   * 1 when a request was still unanswered at the window's end: counted with the time it had waited so far (a lower
   * bound of its latency), so a loop blocked for the whole window shows as slow, never as "0 requests, 0 ms".
   */
  cut: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** The floor loop's figures (with `floorUrl`): requests answered, no cut request counted. */
  floor?: LatencyFigures;
}

const agent = new Agent({ keepAlive: true, maxSockets: 1 });
const floorAgent = new Agent({ keepAlive: true, maxSockets: 1 });

function get(url: string, via = agent): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: via }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

const quantile = (sorted: number[], q: number): number => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * q) - 1)]!);
const round = (ms: number): number => Math.round(ms * 100) / 100;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function figures(samples: number[]): LatencyFigures {
  samples.sort((a, b) => a - b);
  return { requests: samples.length, p50Ms: round(quantile(samples, 0.5)), p99Ms: round(quantile(samples, 0.99)), maxMs: round(samples.at(-1) ?? 0) };
}

/**
 * Calls `ask` once every `gapMs` (one request at a time, so later when an answer is slow) until `end`, or until it
 * returns false. The pacing both loops share.
 */
async function paced(gapMs: number, end: number, ask: (started: number) => Promise<boolean>): Promise<void> {
  while (performance.now() < end) {
    const started = performance.now();
    if (!(await ask(started))) return;
    const wait = started + gapMs - performance.now();
    if (wait > 0) await sleep(wait);
  }
}

/**
 * The floor loop: the same pacing against the idle server until `end`. Its requests are answered at once, so none is
 * abandoned; one that fails is left out (the server is ours and local: a failure means it is gone).
 */
async function probeFloor(url: string, rate: number, startedAt: number, end: number): Promise<LatencyFigures> {
  const samples: number[] = [];
  // The same unmeasured start as the main loop (connection set-up, first calls).
  for (let i = 0; i < 10 && performance.now() < startedAt + 500; i++) await get(url, floorAgent).catch(() => undefined);
  await paced(1000 / rate, end, async (started) => {
    const ok = await get(url, floorAgent).then(() => true, () => false);
    if (ok && performance.now() <= end) samples.push(performance.now() - started);
    return true;
  });
  return figures(samples);
}

export async function probe(input: QueryProbeInput): Promise<QueryProbeResult> {
  const samples: number[] = [];
  let errors = 0;
  let notOk = 0;
  let cut = 0;
  const gapMs = 1000 / input.rate;
  const startedAt = performance.now();
  const end = Math.min(startedAt + input.durationMs, input.endAt === undefined ? Infinity : startedAt + (input.endAt - Date.now()));
  const floor = input.floorUrl ? probeFloor(input.floorUrl, input.rate, startedAt, end) : null;
  /** One request, or null if the window ends first (the request is then abandoned). */
  const ask = (i: number): Promise<number | null> => {
    const answer = get(input.baseUrl + input.paths[i % input.paths.length]!);
    answer.catch(() => undefined); // an abandoned request fails when the agent is destroyed
    let timer: NodeJS.Timeout | undefined;
    const windowEnd = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), Math.max(0, end - performance.now()))));
    return Promise.race([answer, windowEnd]).finally(() => clearTimeout(timer));
  };
  // A few unmeasured requests first: connection set-up and the route's first (compiling) calls are not the steady
  // state. At most 500 ms of them: under a saturated event loop each takes up to a second, and the window is short.
  let i = 0;
  for (; i < 10 && performance.now() < startedAt + 500; i++) {
    const started = performance.now();
    const status = await ask(i).catch(() => undefined);
    if (status === null) {
      samples.push(performance.now() - started);
      cut++;
      break;
    }
  }
  await paced(gapMs, end, async (started) => {
    try {
      const status = await ask(i++);
      samples.push(performance.now() - started);
      if (status === null) {
        cut++;
        return false;
      }
      if (status !== 200) notOk++;
    } catch {
      errors++;
    }
    return true;
  });
  const result: QueryProbeResult = { errors, notOk, cut, ...figures(samples) };
  if (floor) result.floor = await floor;
  return result;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await probe(JSON.parse(process.argv[2]!) as QueryProbeInput);
  agent.destroy();
  floorAgent.destroy();
  // Exits once written: an abandoned request (see `cut`) must not keep the process alive.
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(0));
}
