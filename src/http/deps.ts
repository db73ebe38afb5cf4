/** What the route plugins need, passed down by the app plugin. */
import type { Store } from '../db/store.js';
import type { Runtime } from '../runtime/runtime.js';
import type { EndpointRegistry } from '../service/registry.js';

export interface HttpDeps {
  runtime: Runtime;
  /** Null when the app runs on a bare runtime (benchmarks): reads only. */
  registry: EndpointRegistry | null;
  store: Pick<Store, 'trafficSeries' | 'logsPage'>;
  /** Route-level rate limit for mutating routes (@fastify/rate-limit route config). */
  rateLimit: { max: number; timeWindow: number };
}
