/**
 * Delivery of parsed events from one connection to its endpoint actor: the runtime's `deliver`, also used by
 * the hot-path bench (src/bench/hot-path.ts).
 *
 * Consecutive instance events (all but `initial`, see `isBatchable`) are gathered and handed over as one
 * `stream.batch`: the runtime calls `flush()` after each piece of input it parsed (src/runtime/ingest-scheduler.ts:
 * up to 64 KB, ~100 events); otherwise at the end of the current turn of the event loop (a microtask). The
 * endpoint machine then takes one transition per piece instead of one per event, which was the largest cost of
 * the hot path (docs/performance.md). Anything else — `initial`, `shutdown`, the API-key record, a rejection —
 * first flushes what is gathered and then goes alone, so the endpoint sees every event in arrival order, and
 * `flush()` is called before the connection's close is reported. Batches are capped in size.
 */
import { isBatchable, type BatchItem, type EndpointEvent } from '../../actors/endpoint.machine.js';
import type { ParsedEvent } from '../../actors/model.js';
import type { Stats } from './stats.js';

/** Largest batch: bounds the latency of the first event and the memory held per connection. */
export const MAX_BATCH = 512;

export class EventDelivery {
  private pending: BatchItem[] = [];
  private scheduled = false;
  private readonly flushSoon = () => {
    this.scheduled = false;
    this.flush();
  };

  constructor(
    private readonly stats: Stats,
    private readonly now: () => number,
    private readonly send: (event: EndpointEvent) => void,
    /** Gather instance events into batches (off: one `stream.event` per event, as tests and tools may want). */
    private readonly batching = true,
  ) {}

  /** One parsed event, in arrival order. */
  deliver(parsed: ParsedEvent): void {
    // One clock read per event: the receive time also stands for when it was processed (microseconds apart).
    const receivedAt = this.now();
    if (this.batching && isBatchable(parsed)) {
      this.pending.push({ parsed, receivedAt });
      if (this.pending.length >= MAX_BATCH) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        queueMicrotask(this.flushSoon);
      }
      return;
    }
    this.flush();
    const started = performance.now();
    this.send({ type: 'stream.event', parsed, receivedAt });
    this.stats.processed(receivedAt, Math.round((performance.now() - started) * 1000), parsed.kind !== 'rejected');
    if (parsed.kind === 'rejected') this.stats.add('rejectedEvents');
  }

  /** Hands over what is gathered (before anything else is sent to the endpoint about this connection). */
  flush(): void {
    const items = this.pending;
    if (items.length === 0) return;
    this.pending = [];
    const started = performance.now();
    this.send({ type: 'stream.batch', items });
    // The batch's processing time, shared out evenly: the histogram stays per event.
    const eachUs = Math.round(((performance.now() - started) * 1000) / items.length);
    for (const item of items) this.stats.processed(item.receivedAt, eachUs, true);
  }

  /** Events gathered and not yet handed over. */
  get pendingCount(): number {
    return this.pending.length;
  }
}
