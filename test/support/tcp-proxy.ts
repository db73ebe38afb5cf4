/**
 * A TCP proxy on loopback that a test can cut and restore: the database outage without touching the database.
 *
 *   cut('refuse')  — close every open connection (a reset) and refuse new ones until restore();
 *   cut('blackhole') — keep sockets open but stop forwarding in both directions (a hung network, a slow database);
 *   restore()      — forward again (new connections after a refuse; resumed piping after a blackhole).
 *
 * Counts connections and bytes so a test can assert that traffic really went through it.
 */
import net from 'node:net';

export type CutMode = 'refuse' | 'blackhole';

export interface TcpProxy {
  host: string;
  port: number;
  /** `postgres://…` URL with the proxy's host and port substituted. */
  url(targetUrl: string): string;
  cut(mode?: CutMode): void;
  restore(): void;
  readonly state: 'open' | CutMode;
  readonly stats: { connections: number; refused: number; bytesUp: number; bytesDown: number };
  close(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  let state: 'open' | CutMode = 'open';
  const stats = { connections: 0, refused: 0, bytesUp: 0, bytesDown: 0 };
  const pairs = new Set<{ client: net.Socket; upstream: net.Socket; held: Buffer[][] }>();

  const server = net.createServer((client) => {
    if (state === 'refuse') {
      stats.refused++;
      client.destroy();
      return;
    }
    stats.connections++;
    const upstream = net.connect({ host: target.host, port: target.port });
    const pair = { client, upstream, held: [[], []] as Buffer[][] };
    pairs.add(pair);
    const forward = (from: net.Socket, to: net.Socket, heldIndex: 0 | 1, count: 'bytesUp' | 'bytesDown') =>
      from.on('data', (chunk: Buffer) => {
        if (state === 'blackhole') {
          pair.held[heldIndex]!.push(chunk);
          return;
        }
        stats[count] += chunk.length;
        to.write(chunk);
      });
    forward(client, upstream, 0, 'bytesUp');
    forward(upstream, client, 1, 'bytesDown');
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;

  return {
    host: '127.0.0.1',
    port,
    url(targetUrl: string) {
      const u = new URL(targetUrl);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      return u.toString();
    },
    cut(mode: CutMode = 'refuse') {
      state = mode;
      if (mode === 'refuse') for (const p of [...pairs]) (p.client.resetAndDestroy?.() ?? p.client.destroy(), p.upstream.destroy());
    },
    restore() {
      const wasBlackhole = state === 'blackhole';
      state = 'open';
      if (!wasBlackhole) return;
      for (const p of pairs) {
        for (const chunk of p.held[0]!.splice(0)) (stats.bytesUp += chunk.length, p.upstream.write(chunk));
        for (const chunk of p.held[1]!.splice(0)) (stats.bytesDown += chunk.length, p.client.write(chunk));
      }
    },
    get state() {
      return state;
    },
    stats,
    async close() {
      for (const p of pairs) (p.client.destroy(), p.upstream.destroy());
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
