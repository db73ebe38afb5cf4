/**
 * The ingest scheduler (src/runtime/ingest-scheduler.ts): order per connection, round-robin between connections,
 * pieces cut after a newline, yielding to the event loop between slices, the `then` marker after the input queued
 * before it, the backlog bound (inline processing, counted), `drainNow`, and discarding on dispose (counted).
 */
import { describe, expect, it } from 'vitest';
import { IngestScheduler } from '../../src/runtime/ingest-scheduler.js';

/** `count` lines of `width` bytes each (newline included), tagged so that order can be checked. */
function lines(tag: string, count: number, width = 20): string {
  let out = '';
  for (let i = 0; i < count; i++) out += `${tag}${String(i).padStart(5, '0')}`.padEnd(width - 1, '.') + '\n';
  return out;
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

async function settle(scheduler: IngestScheduler): Promise<void> {
  for (let i = 0; i < 10_000 && scheduler.stats().backlogBytes > 0; i++) await nextTurn();
  await nextTurn();
}

describe('IngestScheduler', () => {
  it('keeps each connection in order, alternates between connections, and cuts pieces after a newline', async () => {
    const scheduler = new IngestScheduler({ pieceBytes: 64, sliceBudgetMs: 1_000 });
    const seen: Array<{ lane: string; piece: string }> = [];
    const a = scheduler.lane((piece) => seen.push({ lane: 'a', piece: piece.toString() }));
    const b = scheduler.lane((piece) => seen.push({ lane: 'b', piece: piece.toString() }));
    const inputA = lines('a', 40);
    const inputB = lines('b', 40);
    // Chunk boundaries that split lines: the lane must still hand everything over, in order.
    a.push(Buffer.from(inputA.slice(0, 333)));
    a.push(Buffer.from(inputA.slice(333)));
    b.push(Buffer.from(inputB));
    expect(seen).toHaveLength(0); // queued, not processed inside push
    expect(scheduler.stats()).toMatchObject({ backlogBytes: inputA.length + inputB.length, backlogConnections: 2, backlogChunks: 3 });

    await settle(scheduler);
    expect(seen.filter((s) => s.lane === 'a').map((s) => s.piece).join('')).toBe(inputA);
    expect(seen.filter((s) => s.lane === 'b').map((s) => s.piece).join('')).toBe(inputB);
    // Round-robin: the first pieces alternate between the two connections.
    expect(seen.slice(0, 4).map((s) => s.lane)).toEqual(['a', 'b', 'a', 'b']);
    for (const { piece } of seen) {
      // A piece is at most pieceBytes plus the rest of the line it reached; cut after a newline unless the chunk ended.
      expect(piece.length).toBeLessThanOrEqual(64 + 20);
    }
    const cutMidChunk = seen.filter((s) => s.lane === 'b').slice(0, -1);
    for (const { piece } of cutMidChunk) expect(piece.endsWith('\n')).toBe(true);
    expect(scheduler.stats()).toMatchObject({ backlogBytes: 0, backlogChunks: 0, backlogConnections: 0, inlineChunks: 0 });
  });

  it('yields to the event loop between slices: other callbacks run while a backlog is processed', async () => {
    const scheduler = new IngestScheduler({ pieceBytes: 20, sliceBudgetMs: 0 });
    const order: string[] = [];
    const lane = scheduler.lane(() => order.push('piece'));
    lane.push(Buffer.from(lines('x', 10)));
    setImmediate(() => order.push('other'));
    await settle(scheduler);
    expect(order.filter((o) => o === 'piece')).toHaveLength(10);
    // With a zero budget each slice takes one piece, so the other callback lands between the first and the last.
    const other = order.indexOf('other');
    expect(other).toBeGreaterThan(0);
    expect(other).toBeLessThan(order.length - 1);
    expect(scheduler.stats().slices).toBeGreaterThanOrEqual(10);
  });

  it('runs `then` after everything queued before it, and at once when nothing is queued', async () => {
    const scheduler = new IngestScheduler({ pieceBytes: 32 });
    const order: string[] = [];
    const lane = scheduler.lane((piece) => order.push(piece.toString()));
    lane.then(() => order.push('empty-then'));
    expect(order).toEqual(['empty-then']);
    const input = lines('t', 8);
    lane.push(Buffer.from(input));
    lane.then(() => order.push('end'));
    expect(order).toEqual(['empty-then']);
    await settle(scheduler);
    expect(order.at(-1)).toBe('end');
    expect(order.slice(1, -1).join('')).toBe(input);
  });

  it('over the backlog bound, processes the chunk at once after its connection’s queue, and counts it', async () => {
    const scheduler = new IngestScheduler({ pieceBytes: 1_000, maxBacklogBytes: 100 });
    const seen: string[] = [];
    const lane = scheduler.lane((piece) => seen.push(piece.toString()));
    const first = lines('q', 4); // 80 B: queued
    const second = lines('r', 2); // 40 B: 120 > 100, inline
    lane.push(Buffer.from(first));
    expect(seen).toEqual([]);
    lane.push(Buffer.from(second));
    expect(seen.join('')).toBe(first + second);
    expect(scheduler.stats()).toMatchObject({ backlogBytes: 0, inlineChunks: 1, inlineBytes: second.length });
    await settle(scheduler);
    expect(seen.join('')).toBe(first + second); // nothing twice
  });

  it('drainNow processes the queue synchronously; from inside the lane’s own processing it does nothing', async () => {
    const scheduler = new IngestScheduler({ pieceBytes: 20 });
    const seen: string[] = [];
    let reentered = false;
    const lane = scheduler.lane((piece) => {
      seen.push(piece.toString());
      if (!reentered) {
        reentered = true;
        lane.drainNow(); // must not re-enter the consumer
      }
    });
    const input = lines('d', 5);
    lane.push(Buffer.from(input));
    lane.drainNow();
    expect(seen.join('')).toBe(input);
    expect(seen).toHaveLength(5);
    expect(scheduler.stats().backlogBytes).toBe(0);
  });

  it('dispose drops what is still queued, counts it, and ignores later input', async () => {
    const scheduler = new IngestScheduler();
    const seen: string[] = [];
    const lane = scheduler.lane((piece) => seen.push(piece.toString()));
    const input = lines('z', 3);
    lane.push(Buffer.from(input));
    lane.dispose();
    lane.push(Buffer.from('late\n'));
    await settle(scheduler);
    expect(seen).toEqual([]);
    expect(scheduler.stats()).toMatchObject({ backlogBytes: 0, discardedBytes: input.length, backlogConnections: 0 });
  });
});
