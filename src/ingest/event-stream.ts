/**
 * One SSE connection to a NodePass master (`GET <base>/events`, PROTOCOL §5): the I/O and nothing else.
 * The endpoint state machine decides when to call `openEventStream` and what to do with the outcome; this
 * module reports precisely what happened, once, through `onClose`.
 *
 * Why `node:http` and not the `eventsource` package (STACK-NOTES): `eventsource` closes for good on any non-200
 * status or a non-SSE content type without telling us which, reconnects on its own fixed delay with no backoff,
 * and hides the socket, so it cannot classify failures (401 vs refused vs TLS), set TCP keepalive, or bound
 * memory. Reconnection is the state machine's job, so a stream here is single-shot.
 *
 * Why the socket is never paused: NodePass gives each subscriber a 10-event buffer and drops silently when it
 * is full (PROTOCOL §7), so every `data` chunk is taken at once and callbacks must not block. With a `scheduler`
 * (the runtime's) a chunk is only queued at once and parsed a little later, in time-boxed slices shared with the
 * other connections (src/runtime/ingest-scheduler.ts); without one it is parsed in the socket's callback. Either
 * way the order holds, and the end or failure of the stream is reported after everything received before it.
 */
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { ParsedEvent } from '../../actors/model.js';
import { NodePassPayloadParser } from '../protocol/payload-parser.js';
import { DEFAULT_MAX_LINE_BYTES, SseParser } from '../protocol/sse-parser.js';
import type { IngestScheduler } from '../runtime/ingest-scheduler.js';
import { masterResourceUrl } from './master-url.js';
import {
  ERROR_BODY_BYTES,
  classifyNetworkError,
  classifyStatus,
  mediaType,
  scrubBody,
  type TransportFailure,
} from './transport-failure.js';

/** Every event that passed validation (a rejected payload goes to `onRejected` instead). */
export type AcceptedEvent = Exclude<ParsedEvent, { kind: 'rejected' }>;

/** Input that never became an accepted event. Each SSE event is reported either here or to `onEvent`, never both. */
export type StreamRejection =
  /** A complete SSE event whose payload failed validation. `rawData` is kept so a journal can replay it. */
  | { kind: 'payload'; reason: string; eventName: string; rawData: string }
  /** A line longer than `maxLineBytes`, discarded while it streamed in (memory stays bounded by the cap). */
  | { kind: 'oversized-line'; reason: string; discardedBytes: number };

export type StreamCloseReason =
  | TransportFailure
  /** 200, but not `text/event-stream` (an HTML login page from a proxy, a JSON API, …). */
  | { kind: 'not-sse'; contentType: string }
  /** The server ended the response cleanly. `afterShutdown`: a `shutdown` event came first (PROTOCOL §5.8). */
  | { kind: 'eof'; afterShutdown: boolean }
  /** `close()` was called. */
  | { kind: 'closed-by-us' }
  /** A callback threw. The stream is ended because the consumer's state can no longer be trusted. */
  | { kind: 'handler-error'; message: string };

export interface StreamStats {
  /** When the request was started and when the stream opened (status 200 + SSE headers), epoch ms. */
  startedAt: number;
  openedAt: number | null;
  closedAt: number;
  /** Response body bytes received (headers excluded). */
  bytes: number;
  /** Accepted events, and those among them that were `shutdown`. */
  events: number;
  shutdownEvents: number;
  /** Payload rejections plus oversized lines. */
  rejected: number;
  comments: number;
  lastEventAt: number | null;
}

export type StreamCloseResult = StreamCloseReason & { stats: StreamStats };

export interface StreamOpenInfo {
  status: number;
  contentType: string;
  /** The remote address actually used (useful when a host name resolves to several). */
  remoteAddress: string | undefined;
  openedAt: number;
}

export interface EventStreamOptions {
  /** The API base from `normaliseMasterUrl` (`…/api/v1`). */
  baseUrl: string;
  /** Sent as `X-API-Key`; never put in a URL, never logged. */
  apiKey: string;
  /** Accept a self-signed certificate (NodePass `tls=1` generates one in memory). Per endpoint. */
  insecureTls?: boolean;
  /** Longest SSE line kept in memory; longer lines are discarded and reported. */
  maxLineBytes?: number;
  /**
   * Time allowed from the request until the response headers arrive (TCP + TLS + first response line).
   * There is deliberately no idle timeout after that: a quiet master may legitimately send nothing for hours
   * (PROTOCOL §5.9); liveness is the state machine's `GET /info` probe plus TCP keepalive here.
   */
  connectTimeoutMs?: number;
  /** TCP keepalive probe delay: a dead peer behind a silent network is noticed within about this plus the kernel's probe count. */
  keepAliveMs?: number;
  /** The clock for the timestamps in stats and open info (epoch ms). */
  now?: () => number;
  /** Defers parsing to time-boxed slices (see the header); absent: each chunk is parsed in the socket's callback. */
  scheduler?: IngestScheduler;

  onOpen?(info: StreamOpenInfo): void;
  onEvent(parsed: AcceptedEvent, rawData: string): void;
  onRetry?(ms: number): void;
  onComment?(text: string): void;
  onRejected(rejection: StreamRejection): void;
  /** After each piece of input was parsed and its events handed to the callbacks (the consumer may flush a batch). */
  onInputProcessed?(): void;
  /** Called exactly once, asynchronously, after which no other callback fires. */
  onClose(result: StreamCloseResult): void;
}

export interface EventStreamHandle {
  /**
   * Ends the connection; `onClose` then reports `closed-by-us` (unless it had already ended). Idempotent. Input
   * already received and still queued by the scheduler is processed first, in this call — except when called from
   * inside one of this stream's own callbacks, where the rest is discarded (and counted by the scheduler).
   */
  close(): void;
}

export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_KEEPALIVE_MS = 15_000;

export function openEventStream(options: EventStreamOptions): EventStreamHandle {
  const now = options.now ?? Date.now;
  const maxLineBytes = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  const keepAliveMs = options.keepAliveMs ?? DEFAULT_KEEPALIVE_MS;
  const url = masterResourceUrl(options.baseUrl, 'events');
  const isHttps = url.protocol === 'https:';

  const stats: StreamStats = {
    startedAt: now(),
    openedAt: null,
    closedAt: 0,
    bytes: 0,
    events: 0,
    shutdownEvents: 0,
    rejected: 0,
    comments: 0,
    lastEventAt: null,
  };
  let finished = false;
  let connectTimer: NodeJS.Timeout | undefined;
  // Set once the parser exists (below): the connection's queue in the scheduler.
  let lane: ReturnType<IngestScheduler['lane']> | undefined;

  /** Ends everything once; later calls (the socket's own close/error echoes) are ignored. */
  const finish = (reason: StreamCloseReason): void => {
    if (finished) return;
    finished = true;
    if (connectTimer) clearTimeout(connectTimer);
    lane?.dispose();
    stats.closedAt = now();
    const result: StreamCloseResult = { ...reason, stats: { ...stats } };
    request.destroy();
    // Asynchronous so that `onClose` never runs inside `close()` or inside another callback of ours.
    queueMicrotask(() => options.onClose(result));
  };

  /** A consumer callback threw: the stream ends rather than the error escaping into a socket handler. */
  const handlerFailed = (error: unknown): void =>
    finish({ kind: 'handler-error', message: error instanceof Error ? error.message : String(error) });

  /** Runs a consumer callback; a throw ends the stream (`handlerFailed`). */
  const deliver = (callback: () => void): void => {
    if (finished) return;
    try {
      callback();
    } catch (error) {
      handlerFailed(error);
    }
  };

  const deliverRejection = (reason: string, eventName: string, rawData: string): void =>
    deliver(() => options.onRejected({ kind: 'payload', reason, eventName, rawData }));

  // Per connection: what it remembers of each tunnel is rebuilt from the snapshot that starts every stream.
  const payloads = new NodePassPayloadParser();
  const parser = new SseParser(
    {
      onEvent(eventName, data) {
        if (finished) return; // the rest of a chunk after a callback closed the stream
        const parsed = payloads.parse(data, eventName);
        if (parsed.kind === 'rejected') {
          stats.rejected += 1;
          deliverRejection(parsed.reason, eventName, data);
          return;
        }
        stats.events += 1;
        stats.lastEventAt = now();
        if (parsed.kind === 'shutdown') stats.shutdownEvents += 1;
        // `deliver`, written out: a closure here (capturing the event) was ~200 bytes of garbage per event.
        try {
          options.onEvent(parsed, data);
        } catch (error) {
          handlerFailed(error);
        }
      },
      onRetry(ms) {
        if (finished) return;
        if (options.onRetry) deliver(() => options.onRetry!(ms));
      },
      onComment(text) {
        if (finished) return;
        stats.comments += 1;
        if (options.onComment) deliver(() => options.onComment!(text));
      },
      onOverflow(discardedBytes) {
        if (finished) return;
        stats.rejected += 1;
        deliver(() =>
          options.onRejected({
            kind: 'oversized-line',
            reason: `SSE line of ${discardedBytes} bytes exceeds the ${maxLineBytes}-byte cap; discarded`,
            discardedBytes,
          }),
        );
      },
    },
    maxLineBytes,
  );

  /** One piece of the body: parsed, its events handed over, then the consumer told (it may flush a batch). */
  const processInput = (piece: Buffer): void => {
    if (finished) return;
    parser.feed(piece);
    if (options.onInputProcessed) deliver(() => options.onInputProcessed!());
  };
  lane = options.scheduler?.lane(processInput);
  /** Runs `fn` after everything received so far has been processed: the end of the stream comes after its events. */
  const afterInput = (fn: () => void): void => {
    if (lane) lane.then(fn);
    else fn();
  };

  const requestOptions: https.RequestOptions = {
    method: 'GET',
    headers: {
      'X-API-Key': options.apiKey,
      Accept: 'text/event-stream',
      'Cache-Control': 'no-cache',
    },
    // A long-lived stream owns its connection: no pooling, so a finished stream never hands a socket on.
    agent: false,
  };
  if (isHttps) requestOptions.rejectUnauthorized = !options.insecureTls;

  let request: http.ClientRequest;
  try {
    request = (isHttps ? https : http).request(url, requestOptions);
  } catch (error) {
    // E.g. a key with a control character (ERR_INVALID_CHAR, whose message names the header, not its value).
    finished = true;
    lane?.dispose();
    const message = error instanceof Error ? error.message : String(error);
    stats.closedAt = now();
    queueMicrotask(() => options.onClose({ kind: 'network', message, stats: { ...stats } }));
    return { close() {} };
  }

  const connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  connectTimer = setTimeout(() => {
    finish({ kind: 'timeout', message: `no response headers within ${connectTimeoutMs} ms` });
  }, connectTimeoutMs);

  request.on('socket', (socket: Socket) => {
    socket.setNoDelay(true);
    socket.setKeepAlive(true, keepAliveMs);
  });

  request.on('error', (error) => afterInput(() => finish(classifyNetworkError(error))));

  request.on('response', (response) => {
    const status = response.statusCode ?? 0;
    const contentType = mediaType(response.headers);

    if (status !== 200) {
      collectErrorBody(response, (body) => finish(classifyStatus(status, scrubBody(body, options.apiKey))));
      return;
    }
    if (contentType !== 'text/event-stream') {
      finish({ kind: 'not-sse', contentType });
      return;
    }

    if (connectTimer) clearTimeout(connectTimer);
    connectTimer = undefined;
    stats.openedAt = now();
    const openedAt = stats.openedAt;
    if (options.onOpen) {
      deliver(() => options.onOpen!({ status, contentType, remoteAddress: response.socket?.remoteAddress, openedAt }));
    }

    // Flowing mode, never paused: see the header comment.
    response.on('data', (chunk: Buffer) => {
      if (finished) return;
      stats.bytes += chunk.length;
      if (lane) lane.push(chunk);
      else processInput(chunk);
    });
    // An aborted chunked body (the master crashed or the connection was cut) surfaces here, not as `end`.
    response.on('error', (error) => afterInput(() => finish(classifyNetworkError(error))));
    response.on('end', () =>
      afterInput(() => {
        if (finished) return;
        parser.end(); // reports a trailing oversized line, drops an unterminated event (per the SSE spec)
        finish({ kind: 'eof', afterShutdown: stats.shutdownEvents > 0 });
      }),
    );
  });

  request.end();

  return {
    close() {
      if (!finished) lane?.drainNow();
      finish({ kind: 'closed-by-us' });
    },
  };

  /**
   * Reads at most `ERROR_BODY_BYTES` of a non-200 body, then stops: a proxy's error page can be large or
   * never end. The status is what matters, so the body gets a short deadline of its own (replacing the
   * connect timer) and whatever arrived by then is reported.
   */
  function collectErrorBody(response: http.IncomingMessage, done: (body: Buffer) => void): void {
    const parts: Buffer[] = [];
    let size = 0;
    let reported = false;
    const report = (): void => {
      if (reported) return;
      reported = true;
      done(Buffer.concat(parts, size));
    };
    if (connectTimer) clearTimeout(connectTimer);
    connectTimer = setTimeout(report, Math.min(1_000, connectTimeoutMs));
    response.on('data', (chunk: Buffer) => {
      if (size >= ERROR_BODY_BYTES) return;
      parts.push(chunk);
      size += chunk.length;
      if (size >= ERROR_BODY_BYTES) report();
    });
    response.on('end', report);
    response.on('error', report);
    response.on('close', report);
  }
}
