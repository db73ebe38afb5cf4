/**
 * Backoff for postgres.js's reconnects, through its `socket` option (a function that makes each connection's socket).
 *
 * Why: when a server — or a proxy or load balancer in front of it — accepts a TCP connection and closes it before
 * the startup exchange, postgres.js keeps the query that opened the connection and reconnects at once, with no
 * delay and no limit (connection.js `closed()`: `if (initial) return reconnect()`; its `backoff` option only
 * applies to connections that were established). Measured 300–550 connection attempts per second while a write
 * waited (docs/reliability.md). postgres.js has no option for this path, so the sockets are made here: each new
 * socket waits while the previous ones closed before the server said anything, 25 ms doubling to 1 s (with
 * jitter); the first byte from a server resets it. The write still waits for the database (it is not failed), but
 * costs at most a few attempts per second; the cap bounds how late the first connection after an outage starts.
 */
import net from 'node:net';

export interface ReconnectBackoffOptions {
  baseMs?: number;
  capMs?: number;
}

/** What postgres.js passes the `socket` function: its parsed options. */
interface SocketTarget {
  host: string[];
  port: number[];
  path?: string | false;
}

export interface ReconnectBackoff {
  /** The `socket` option for postgres.js. */
  socket(options: SocketTarget): Promise<net.Socket>;
  /** Sockets that closed before the server sent anything, in a row. */
  readonly earlyCloses: number;
  /** Sockets made (connection attempts), for tests and figures. */
  readonly attempts: number;
  /** Stop waiting (shutdown): later sockets are made at once, as postgres.js would. */
  stop(): void;
}

export function reconnectBackoff(options: ReconnectBackoffOptions = {}): ReconnectBackoff {
  const baseMs = options.baseMs ?? 25;
  const capMs = options.capMs ?? 1_000;
  let earlyCloses = 0;
  let attempts = 0;
  let notBefore = 0;
  let stopped = false;
  let hostIndex = 0;
  return {
    get earlyCloses() {
      return earlyCloses;
    },
    get attempts() {
      return attempts;
    },
    stop() {
      stopped = true;
    },
    async socket(target) {
      const wait = stopped ? 0 : notBefore - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait).unref());
      attempts++;
      let socket: net.Socket;
      if (target.path) {
        socket = net.connect(target.path);
      } else {
        const i = hostIndex % target.host.length;
        hostIndex = i + 1;
        const host = target.host[i]!;
        const port = target.port[i] ?? target.port[0]!;
        // postgres.js names these in its connection errors (it sets them itself on the sockets it makes).
        socket = Object.assign(net.connect({ host, port }), { host, port });
      }
      let answered = false;
      socket.once('data', () => {
        answered = true;
        earlyCloses = 0;
        notBefore = 0;
      });
      socket.once('close', () => {
        if (answered) return;
        earlyCloses++;
        const delay = Math.min(capMs, baseMs * 2 ** (earlyCloses - 1));
        notBefore = Math.max(notBefore, Date.now() + delay * (0.5 + Math.random() / 2));
      });
      return socket;
    },
  };
}
