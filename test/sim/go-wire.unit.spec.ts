/**
 * The simulator's wire encoding against the real captures: every `data:` line of the main recording, decoded
 * and re-encoded, must come out byte for byte the same.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { encodeEnvelope, encodeInstance, formatGoTime, GoTimeStamper, goJsonString, type WireInstance } from '../../src/sim/go-wire.js';
import { enhanceInstanceUrl, instanceConfig, parseInstanceUrl } from '../../src/sim/instance-url.js';

const capture = readFileSync(new URL('../../fixtures/captures/nodepass-s1-main-debug.sse', import.meta.url), 'utf8');
const s2 = readFileSync(new URL('../../fixtures/captures/nodepass-s2-info-level.sse', import.meta.url), 'utf8');
const dataLines = (body: string): string[] => body.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6));

describe('Go encoding', () => {
  it('re-encodes every event of the real captures byte for byte', () => {
    const lines = [...dataLines(capture), ...dataLines(s2)];
    expect(lines.length).toBeGreaterThan(600);
    for (const line of lines) {
      const env = JSON.parse(line) as { type: 'update'; time: string; instance: WireInstance | null; logs: string };
      const again = encodeEnvelope(env.type, env.time, env.instance ? encodeInstance(env.instance) : null, env.logs);
      expect(again).toBe(line);
    }
  });

  it('escapes like encoding/json: HTML characters, ESC, line separators, lone surrogates', () => {
    expect(goJsonString('a&b<c>d\u001b[0m\u2028')).toBe('"a\\u0026b\\u003cc\\u003ed\\u001b[0m\\u2028"');
    expect(goJsonString('bad \ud800 half')).toBe('"bad \ufffd half"');
  });

  it('writes map keys sorted as strings, as Go does (JS would put integer-like keys first)', () => {
    const meta = { peer: { sid: '', type: '', alias: '' }, tags: { b: '1', '10': 'x', '2': 'y', a: '0' } };
    const json = encodeInstance({
      id: 'abcd1234', alias: '', type: 'server', status: 'running', url: '', config: '', restart: true, meta,
      mode: 0, ping: 0, pool: 0, tcps: 0, udps: 0, tcprx: 0, tcptx: 0, udprx: 0, udptx: 0,
    });
    expect(json).toContain('"tags":{"10":"x","2":"y","a":"0","b":"1"}');
  });
});

describe('Go RFC 3339 nano time', () => {
  const ms = Date.UTC(2026, 10, 26, 9, 15, 34, 54);

  it('trims trailing zeros of the fraction, and the dot when nothing is left', () => {
    expect(formatGoTime(ms, 947_825)).toBe('2026-11-26T09:15:34.054947825Z');
    expect(formatGoTime(Date.UTC(2026, 10, 26, 9, 15, 35, 83), 840_760)).toBe('2026-11-26T09:15:35.08384076Z');
    expect(formatGoTime(Date.UTC(2026, 10, 26, 9, 15, 35, 0), 0)).toBe('2026-11-26T09:15:35Z');
  });

  it('stamps strictly increasing, unique times even on a frozen clock', () => {
    const stamper = new GoTimeStamper(() => ms);
    const stamps = Array.from({ length: 5000 }, () => stamper.stamp());
    expect(new Set(stamps).size).toBe(stamps.length);
    const asNanos = stamps.map((t) => {
      const m = /\.(\d+)Z$/.exec(t);
      return BigInt(Date.parse(t.replace(/\.\d+Z$/, 'Z'))) * 1_000_000n + BigInt((m?.[1] ?? '').padEnd(9, '0')) % 1_000_000_000n;
    });
    for (let i = 1; i < asNanos.length; i++) expect(asNanos[i]! > asNanos[i - 1]!).toBe(true);
  });
});

describe('instance URL enhancement (PROTOCOL §3.2)', () => {
  it.each([
    [
      'server://127.0.0.1:19100/127.0.0.1:19200?mode=1&max=16',
      'debug',
      'server://127.0.0.1:19100/127.0.0.1:19200?log=debug&max=16&mode=1',
      'server://127.0.0.1:19100/127.0.0.1:19200?block=0&dial=auto&dns=5m0s&log=debug&max=16&mode=1&notcp=0&noudp=0&proxy=0&rate=0&read=0s&slot=65536&type=0',
    ],
    [
      'client://127.0.0.1:19100/127.0.0.1:19001?mode=2&min=4',
      'debug',
      'client://127.0.0.1:19100/127.0.0.1:19001?log=debug&min=4&mode=2',
      'client://127.0.0.1:19100/127.0.0.1:19001?block=0&dial=auto&dns=5m0s&log=debug&min=4&mode=2&notcp=0&noudp=0&proxy=0&rate=0&read=0s&slot=65536&sni=none',
    ],
    [
      'client://127.0.0.1:19300/127.0.0.1:19001?mode=1',
      'info',
      'client://127.0.0.1:19300/127.0.0.1:19001?log=info&mode=1',
      'client://127.0.0.1:19300/127.0.0.1:19001?block=0&dial=auto&dns=5m0s&log=info&min=64&mode=1&notcp=0&noudp=0&proxy=0&rate=0&read=0s&slot=65536&sni=none',
    ],
    [
      'server://127.0.0.1:19110/127.0.0.1:19210?mode=1&log=event',
      'info',
      'server://127.0.0.1:19110/127.0.0.1:19210?log=event&mode=1',
      'server://127.0.0.1:19110/127.0.0.1:19210?block=0&dial=auto&dns=5m0s&log=event&max=1024&mode=1&notcp=0&noudp=0&proxy=0&rate=0&read=0s&slot=65536&type=0',
    ],
  ])('%s on a log=%s master', (input, level, url, config) => {
    const parsed = parseInstanceUrl(input);
    expect(enhanceInstanceUrl(parsed, level)).toBe(url);
    expect(instanceConfig(parsed, level)).toBe(config);
    // The captures show the Go-escaped form of the same strings.
    expect(capture + s2).toContain(goJsonString(config).slice(1, -1));
  });

  it('rejects schemes other than server and client', () => {
    expect(() => parseInstanceUrl('http://127.0.0.1:1/x')).toThrow('Invalid URL scheme');
  });
});
