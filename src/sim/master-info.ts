/**
 * The bodies of `GET /info` (PROTOCOL §3.6) and `GET /tcping` (§3.7), Go-encoded. `/info` is a Go map, so its
 * keys come out sorted; host figures are real where Node can read them cheaply and fixed otherwise.
 */
import { connect } from 'node:net';
import os from 'node:os';
import { goJsonString } from './go-wire.js';

export interface MasterInfoFacts {
  alias: string;
  /** `""` on a master's first run (the `mid` bug), the master id after a restart. */
  mid: string;
  logLevel: string;
  /** The host part of the master URL. */
  name: string;
  uptimeSeconds: number;
  version: string;
  cpuPercent: number;
}

export function encodeMasterInfo(facts: MasterInfoFacts): string {
  const totalMem = os.totalmem();
  const arch = process.arch === 'x64' ? 'amd64' : process.arch === 'ia32' ? '386' : process.arch;
  const fields: Array<[string, string | number]> = [
    ['alias', facts.alias],
    ['arch', arch],
    ['cpu', facts.cpuPercent],
    ['crt', ''],
    ['diskr', 628188160],
    ['diskw', 5279629312],
    ['key', ''],
    ['log', facts.logLevel],
    ['mem_total', totalMem],
    ['mem_used', totalMem - os.freemem()],
    ['mid', facts.mid],
    ['name', facts.name],
    ['netrx', 110207658],
    ['nettx', 250325],
    ['os', process.platform],
    ['swap_total', 0],
    ['swap_used', 0],
    ['sysup', Math.floor(os.uptime())],
    ['tls', '0'],
    ['uptime', Math.max(0, Math.floor(facts.uptimeSeconds))],
    ['ver', facts.version],
  ];
  return `{${fields.map(([k, v]) => `"${k}":${typeof v === 'string' ? goJsonString(v) : v}`).join(',')}}`;
}

/** A real TCP connect from the simulator, answered in the master's shape (errors worded like Go's dialer). */
export function tcping(target: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const started = Date.now();
    let answered = false;
    const answer = (error: string | null): void => {
      if (answered) return;
      answered = true;
      const latency = error === null ? Date.now() - started : 0;
      resolve(`{"target":${goJsonString(target)},"connected":${error === null},"latency":${latency},"error":${error === null ? 'null' : goJsonString(error)}}`);
    };
    const colon = target.lastIndexOf(':');
    const host = target.slice(0, colon).replace(/^\[|\]$/g, '');
    const port = Number(target.slice(colon + 1));
    if (colon <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) {
      return answer(`dial tcp ${target}: address ${target}: missing port in address`);
    }
    const socket = connect({ host, port });
    socket.setTimeout(timeoutMs);
    socket.once('connect', () => {
      socket.destroy();
      answer(null);
    });
    socket.once('timeout', () => {
      socket.destroy();
      answer(`dial tcp ${target}: i/o timeout`);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      answer(`dial tcp ${target}: connect: ${err.code === 'ECONNREFUSED' ? 'connection refused' : err.message}`);
    });
  });
}
