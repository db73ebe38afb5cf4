/**
 * The in-memory ring of the latest events per endpoint (BRIEF part 4: default 1,000, `TUNNELPULSE_EVENT_RING`).
 *
 * Kept as columns of fixed arrays, not an object per event: a slot costs a few words and the strings are the
 * parsed event's own (no copy), so 1,000 endpoints × 1,000 events stay in tens of megabytes. Writing is a handful
 * of array stores on the hot path; reading builds the summaries on demand (newest first).
 */
import type { ParsedEvent } from '../../actors/model.js';

export interface RecentEvent {
  /** Our clock, epoch ms. */
  receivedAt: number;
  kind: ParsedEvent['kind'];
  /** NodePass event type (`initial`, `create`, `update`, `delete`, `log`, `shutdown`), or the rejection reason. */
  type: string;
  instanceId: string | null;
  status: string | null;
  /** The master's clock, epoch ms; null for a rejection. */
  at: number | null;
}

const KINDS: ParsedEvent['kind'][] = ['instance', 'shutdown', 'master', 'rejected'];

export class RecentEvents {
  private readonly receivedAt: Float64Array;
  private readonly at: Float64Array;
  private readonly kind: Uint8Array;
  private readonly type: string[];
  private readonly instanceId: (string | null)[];
  private readonly status: (string | null)[];
  private next = 0;
  /** Events ever recorded (the ring holds the last `capacity`). */
  total = 0;

  constructor(readonly capacity: number) {
    this.receivedAt = new Float64Array(capacity);
    this.at = new Float64Array(capacity);
    this.kind = new Uint8Array(capacity);
    this.type = new Array<string>(capacity);
    this.instanceId = new Array<string | null>(capacity);
    this.status = new Array<string | null>(capacity);
  }

  record(parsed: ParsedEvent, receivedAt: number): void {
    if (this.capacity === 0) return;
    const i = this.next;
    this.receivedAt[i] = receivedAt;
    this.kind[i] = KINDS.indexOf(parsed.kind);
    switch (parsed.kind) {
      case 'instance':
        this.type[i] = parsed.event.type;
        this.instanceId[i] = parsed.event.instance.id;
        this.status[i] = parsed.event.instance.status;
        this.at[i] = parsed.event.at;
        break;
      case 'master':
        this.type[i] = parsed.type;
        this.instanceId[i] = null;
        this.status[i] = null;
        this.at[i] = parsed.at;
        break;
      case 'shutdown':
        this.type[i] = 'shutdown';
        this.instanceId[i] = null;
        this.status[i] = null;
        this.at[i] = parsed.at;
        break;
      case 'rejected':
        this.type[i] = parsed.reason;
        this.instanceId[i] = null;
        this.status[i] = null;
        this.at[i] = Number.NaN;
        break;
    }
    this.next = i + 1 === this.capacity ? 0 : i + 1;
    this.total++;
  }

  /** The latest `limit` events, newest first. */
  latest(limit = this.capacity): RecentEvent[] {
    const count = Math.min(limit, this.capacity, this.total);
    const out: RecentEvent[] = [];
    for (let k = 1; k <= count; k++) {
      const i = (this.next - k + this.capacity) % this.capacity;
      const at = this.at[i]!;
      out.push({
        receivedAt: this.receivedAt[i]!,
        kind: KINDS[this.kind[i]!]!,
        type: this.type[i]!,
        instanceId: this.instanceId[i] ?? null,
        status: this.status[i] ?? null,
        at: Number.isNaN(at) ? null : at,
      });
    }
    return out;
  }
}
