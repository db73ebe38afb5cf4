/**
 * Runs one `openEventStream` to its end and collects what every callback reported, in order, so a test can
 * assert on the outcome. Bounded: a stream that never closes fails the test after `timeoutMs`.
 */
import {
  openEventStream,
  type AcceptedEvent,
  type EventStreamHandle,
  type EventStreamOptions,
  type StreamCloseResult,
  type StreamOpenInfo,
  type StreamRejection,
} from '../../src/ingest/event-stream.js';

export interface StreamRun {
  opened: StreamOpenInfo[];
  events: { parsed: AcceptedEvent; rawData: string }[];
  retries: number[];
  comments: string[];
  rejections: StreamRejection[];
  close: StreamCloseResult;
  /** Every callback name in call order (to check that `close` is last and unique). */
  calls: string[];
}

type Callbacks = 'onOpen' | 'onEvent' | 'onRetry' | 'onComment' | 'onRejected' | 'onClose';
type RunSoFar = Omit<StreamRun, 'close'>;

export function runStream(
  options: Omit<EventStreamOptions, Callbacks> & Partial<Pick<EventStreamOptions, 'onEvent'>>,
  { timeoutMs = 10_000, onHandle }: { timeoutMs?: number; onHandle?: (handle: EventStreamHandle, run: RunSoFar) => void } = {},
): Promise<StreamRun> {
  const run: RunSoFar = { opened: [], events: [], retries: [], comments: [], rejections: [], calls: [] };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`stream did not close within ${timeoutMs} ms`)), timeoutMs);
    const handle = openEventStream({
      ...options,
      onOpen: (info) => {
        run.calls.push('open');
        run.opened.push(info);
      },
      onEvent: (parsed, rawData) => {
        run.calls.push('event');
        run.events.push({ parsed, rawData });
        options.onEvent?.(parsed, rawData);
      },
      onRetry: (ms) => {
        run.calls.push('retry');
        run.retries.push(ms);
      },
      onComment: (text) => {
        run.calls.push('comment');
        run.comments.push(text);
      },
      onRejected: (rejection) => {
        run.calls.push('rejected');
        run.rejections.push(rejection);
      },
      onClose: (close) => {
        run.calls.push('close');
        clearTimeout(timer);
        // Let any (wrong) late callback land before the test looks.
        setTimeout(() => resolve({ ...run, close }), 20);
      },
    });
    onHandle?.(handle, run);
  });
}

/** Accepted events counted like `countCaptureEvents`: by `data.type`, the API-key record apart. */
export function countAccepted(events: readonly { parsed: AcceptedEvent }[]): {
  byType: Record<string, number>;
  masterRecords: number;
} {
  const byType: Record<string, number> = {};
  let masterRecords = 0;
  for (const { parsed } of events) {
    if (parsed.kind === 'master') {
      masterRecords += 1;
      continue;
    }
    const type = parsed.kind === 'shutdown' ? 'shutdown' : parsed.event.type;
    byType[type] = (byType[type] ?? 0) + 1;
  }
  return { byType, masterRecords };
}
