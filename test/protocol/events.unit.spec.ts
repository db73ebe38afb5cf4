/**
 * Validation of NodePass payloads (src/protocol/events.ts): every payload becomes an event or a rejection
 * with a reason; the API-key record becomes `kind: 'master'` and its key goes nowhere.
 */
import { describe, expect, it } from 'vitest';
import type { ParsedEvent } from '../../actors/model.js';
import { API_KEY_RECORD_ID, parseGoTime, parseNodePassPayload } from '../../src/protocol/events.js';
import { captureDataLines } from '../support/captures.js';

const S1 = 'nodepass-s1-main-debug.sse';
const S1_KEY = '1a040764b530633900dadf3b18cc8830';
const S1_MASTER_ID = '1ab781946d30b9c8';
const TIME = '2026-11-26T09:15:51.15912337Z';

/** A real checkpoint update from recording s1 (PROTOCOL §11). */
const UPDATE = JSON.parse(
  '{"type":"update","time":"2026-11-26T09:15:51.15912337Z","instance":{"id":"a236701f","alias":"np-server","type":"server","status":"running","url":"server://127.0.0.1:19100/127.0.0.1:19200?log=debug\\u0026max=16\\u0026mode=1","config":"server://127.0.0.1:19100/127.0.0.1:19200?block=0\\u0026dial=auto","restart":true,"meta":{"peer":{"sid":"","type":"","alias":""},"tags":{}},"mode":1,"ping":0,"pool":6,"tcps":0,"udps":1,"tcprx":655360,"tcptx":655360,"udprx":10240,"udptx":10240},"logs":""}',
) as { instance: Record<string, unknown> } & Record<string, unknown>;

/** The update with some envelope or instance fields replaced, as raw JSON text. */
function variant(envelope: Record<string, unknown> = {}, inst: Record<string, unknown> = {}): string {
  return JSON.stringify({ ...UPDATE, ...envelope, instance: { ...UPDATE.instance, ...inst } });
}

const reasonOf = (p: ParsedEvent): string => {
  expect(p.kind).toBe('rejected');
  return p.kind === 'rejected' ? p.reason : '';
};

describe('valid payloads', () => {
  it('parses a checkpoint update into an instance event with epoch-ms time and the exact time string', () => {
    const p = parseNodePassPayload(JSON.stringify(UPDATE));
    expect(p).toMatchObject({ kind: 'instance', event: { type: 'update', at: Date.parse('2026-11-26T09:15:51.159Z'), time: TIME, logs: '' } });
    if (p.kind === 'instance') expect(p.event.instance).toMatchObject({ id: 'a236701f', status: 'running', tcprx: 655360, udptx: 10240 });
  });

  it('accepts every payload of the s1 capture, with the counts of PROTOCOL §5.5', () => {
    const byKind: Record<string, number> = {};
    for (const data of captureDataLines(S1)) {
      const p = parseNodePassPayload(data);
      const key = p.kind === 'instance' ? p.event.type : p.kind;
      byKind[key] = (byKind[key] ?? 0) + 1;
    }
    expect(byKind).toEqual({ master: 1, create: 2, update: 54, delete: 1, log: 569, shutdown: 1 });
  });

  it('parses shutdown with a null instance', () => {
    const p = parseNodePassPayload('{"type":"shutdown","time":"2026-11-26T09:17:39.124609345Z","instance":null,"logs":""}');
    expect(p).toEqual({ kind: 'shutdown', at: Date.parse('2026-11-26T09:17:39.124Z'), time: '2026-11-26T09:17:39.124609345Z' });
  });

  it('accepts counters up to 2^53 − 1 exactly', () => {
    const p = parseNodePassPayload(variant({}, { tcprx: Number.MAX_SAFE_INTEGER }));
    expect(p.kind).toBe('instance');
  });

  it('parses Go times with a zone offset and 1 to 9 fraction digits', () => {
    expect(parseGoTime('2026-11-26T17:15:34.054947825+08:00')).toBe(Date.parse('2026-11-26T09:15:34.054Z'));
    expect(parseGoTime('2026-11-26T09:15:34Z')).toBe(Date.parse('2026-11-26T09:15:34Z'));
    expect(parseGoTime('2026-11-26T09:15:34.1Z')).toBe(Date.parse('2026-11-26T09:15:34.100Z'));
  });
});

describe('rejections, each with its reason', () => {
  it('not JSON', () => {
    expect(reasonOf(parseNodePassPayload('{"type":"update",'))).toMatch(/^not JSON/);
    expect(reasonOf(parseNodePassPayload(''))).toMatch(/^not JSON/);
  });

  it('not an object', () => {
    for (const data of ['[]', '42', '"update"', 'null', 'true']) {
      expect(reasonOf(parseNodePassPayload(data))).toBe('payload is not a JSON object');
    }
  });

  it('unknown or missing type', () => {
    expect(reasonOf(parseNodePassPayload(variant({ type: 'restart' })))).toBe('unknown event type "restart"');
    expect(reasonOf(parseNodePassPayload(variant({ type: 'x'.repeat(500) })))).toHaveLength('unknown event type ""'.length + 40);
    expect(reasonOf(parseNodePassPayload(variant({ type: undefined })))).toBe('missing "type"');
  });

  it('missing or bad time', () => {
    expect(reasonOf(parseNodePassPayload(variant({ time: undefined })))).toBe('missing "time"');
    expect(reasonOf(parseNodePassPayload(variant({ time: 1764148551159 })))).toBe('missing "time"');
    for (const bad of ['yesterday', '2026-11-26 09:15:51Z', '2026-11-26T09:15:51.1234567890Z', '2026-11-26T09:15:51', '2026-13-45T99:15:51Z']) {
      expect(reasonOf(parseNodePassPayload(variant({ time: bad })))).toMatch(/^bad "time"/);
    }
  });

  it('negative, fractional and above-2^53 counters', () => {
    expect(reasonOf(parseNodePassPayload(variant({}, { tcprx: -1 })))).toMatch(/tcprx/);
    expect(reasonOf(parseNodePassPayload(variant({}, { udptx: 1.5 })))).toMatch(/udptx/);
    // 2^53 + 1 cannot be represented; JSON.parse rounds it to 2^53, which is past the safe range.
    const huge = JSON.stringify(UPDATE).replace('"tcptx":655360', '"tcptx":9007199254740993');
    expect(reasonOf(parseNodePassPayload(huge))).toMatch(/tcptx/);
    expect(reasonOf(parseNodePassPayload(variant({}, { udprx: '10240' })))).toMatch(/udprx/);
  });

  it('bad status', () => {
    for (const status of ['paused', '', null, 'RUNNING']) {
      expect(reasonOf(parseNodePassPayload(variant({}, { status })))).toMatch(/status/);
    }
  });

  it('missing instance', () => {
    expect(reasonOf(parseNodePassPayload(JSON.stringify({ ...UPDATE, instance: null })))).toBe('update event without an instance');
    expect(reasonOf(parseNodePassPayload(JSON.stringify({ ...UPDATE, type: 'log', instance: 'a236701f' })))).toBe('log event without an instance');
    const { instance: _dropped, ...noInstance } = UPDATE;
    expect(reasonOf(parseNodePassPayload(JSON.stringify({ ...noInstance, type: 'initial' })))).toBe('initial event without an instance');
  });

  it('an instance with a missing field, and non-string logs', () => {
    const { meta: _m, ...noMeta } = UPDATE.instance;
    expect(reasonOf(parseNodePassPayload(JSON.stringify({ ...UPDATE, instance: noMeta })))).toMatch(/meta/);
    expect(reasonOf(parseNodePassPayload(variant({ logs: 42 })))).toBe('"logs" is not a string');
  });

  it('an SSE event name other than "instance"', () => {
    expect(reasonOf(parseNodePassPayload(JSON.stringify(UPDATE), 'message'))).toMatch(/event name "message"/);
  });

  it('never throws, whatever the bytes', () => {
    for (const data of ['{', '{"type":{}}', '{"type":"log","time":"2026-11-26T09:15:51Z","instance":[]}', '\u0000', '{"__proto__":{"type":"update"}}']) {
      expect(() => parseNodePassPayload(data)).not.toThrow();
    }
  });
});

describe('the API-key record ********', () => {
  const first = captureDataLines(S1)[0]!;

  it('becomes kind "master" with the master id and alias, and the key appears nowhere in the result', () => {
    expect(first).toContain(S1_KEY);
    const p = parseNodePassPayload(first);
    expect(p).toEqual({ kind: 'master', type: 'initial', at: Date.parse('2026-11-26T09:15:34.054Z'), masterId: S1_MASTER_ID, alias: '' });
    expect(JSON.stringify(p)).not.toContain(S1_KEY);
  });

  it('keeps the key out for every event type and for a record that would fail validation', () => {
    const rec = JSON.parse(first) as { instance: Record<string, unknown> };
    for (const type of ['initial', 'create', 'update', 'delete', 'log']) {
      for (const inst of [rec.instance, { ...rec.instance, status: 'bogus', tcprx: -1, alias: 'lab' }]) {
        const p = parseNodePassPayload(JSON.stringify({ ...rec, type, instance: inst }));
        expect(p.kind).toBe('master');
        expect(JSON.stringify(p)).not.toContain(S1_KEY);
      }
    }
    expect(API_KEY_RECORD_ID).toBe('********');
  });

  it('does not leak the key through a rejection reason of a damaged API-key record', () => {
    const rec = JSON.parse(first) as Record<string, unknown>;
    for (const damaged of [{ ...rec, time: 'bad' }, { ...rec, type: 'bogus' }, { ...rec, logs: 7 }]) {
      expect(JSON.stringify(parseNodePassPayload(JSON.stringify(damaged)))).not.toContain(S1_KEY);
    }
    expect(JSON.stringify(parseNodePassPayload(first.slice(0, -1)))).not.toContain(S1_KEY); // truncated JSON
  });
});
