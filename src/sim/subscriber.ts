/**
 * One SSE subscriber of a simulated master, with the master's delivery semantics (PROTOCOL §5.3, §7):
 * a buffer between the event dispatcher and the socket writer that holds 10 events, where a full buffer drops
 * the new event without notice ('drop'), or an unbounded buffer that never drops ('lossless').
 * The writer only takes the next event once the socket has accepted the previous ones (backpressure), so a
 * client that stops reading fills the kernel buffers, then this buffer, and then loses events, as with NodePass.
 */
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { SSE_PREAMBLE } from './go-wire.js';

export type DeliveryMode = 'drop' | 'lossless';

/** The channel size of a NodePass subscriber. */
export const SUBSCRIBER_BUFFER_EVENTS = 10;

export interface SubscriberStats {
  id: number;
  /** Frames handed to the socket, the initial snapshot included. */
  sent: number;
  /** Events lost because the buffer was full. */
  dropped: number;
  /** Events waiting in the buffer now. */
  queued: number;
  stalled: boolean;
}

export class SseSubscriber {
  sent = 0;
  dropped = 0;
  private readonly queue: string[] = [];
  private waitingForDrain = false;
  private stalled = false;
  private ending = false;
  private closed = false;

  constructor(
    readonly id: number,
    private readonly res: ServerResponse,
    private readonly socket: Socket,
    private readonly mode: DeliveryMode,
    onClose: (subscriber: SseSubscriber) => void,
  ) {
    res.on('close', () => {
      this.closed = true;
      this.queue.length = 0;
      onClose(this);
    });
  }

  get isOpen(): boolean {
    return !this.closed && !this.ending;
  }

  /**
   * Headers, `retry:` and the initial snapshot, written in one piece: the master registers the subscriber,
   * writes one `initial` per instance and flushes once (PROTOCOL §5.1, §5.3).
   */
  open(headers: Record<string, string>, initialFrames: readonly string[]): void {
    this.res.writeHead(200, headers);
    this.sent += initialFrames.length;
    this.write(SSE_PREAMBLE + initialFrames.join(''));
  }

  /** Queues one frame; returns false when the buffer was full and the frame was dropped. */
  push(frame: string): boolean {
    if (!this.isOpen) return false;
    if (this.mode === 'drop' && this.queue.length >= SUBSCRIBER_BUFFER_EVENTS) {
      this.dropped++;
      return false;
    }
    this.queue.push(frame);
    this.pump();
    return true;
  }

  /**
   * The master's `shutdown`: a non-blocking send of the final frame (a full buffer means the client gets only
   * EOF), then the response ends once what is buffered has been written.
   */
  finish(finalFrame: string | null): void {
    if (!this.isOpen) return;
    if (finalFrame !== null) this.push(finalFrame);
    this.ending = true;
    this.pump();
  }

  /** Half-open: stop writing and stop reading, keep the socket. */
  stall(): void {
    this.stalled = true;
    this.socket.pause();
  }

  unstall(): void {
    if (!this.stalled) return;
    this.stalled = false;
    if (!this.closed) this.socket.resume();
    this.pump();
  }

  /** A crash: the socket goes away with no `shutdown` and no chunked terminator. */
  destroy(): void {
    this.socket.destroy();
  }

  stats(): SubscriberStats {
    return { id: this.id, sent: this.sent, dropped: this.dropped, queued: this.queue.length, stalled: this.stalled };
  }

  private pump(): void {
    while (!this.closed && !this.stalled && !this.waitingForDrain && this.queue.length > 0) {
      this.sent++;
      this.write(this.queue.shift()!);
    }
    if (this.ending && !this.closed && !this.stalled && !this.waitingForDrain && this.queue.length === 0) {
      this.closed = true;
      this.res.end();
    }
  }

  private write(chunk: string): void {
    if (this.res.write(chunk)) return;
    this.waitingForDrain = true;
    this.res.once('drain', () => {
      this.waitingForDrain = false;
      this.pump();
    });
  }
}
