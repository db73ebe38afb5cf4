import { describe, expect, it } from 'vitest';
import { classifyNetworkError, classifyStatus, describeFailure, mediaType, scrubBody } from '../../src/ingest/transport-failure.js';

const errorWithCode = (code: string, message = `boom ${code}`) => Object.assign(new Error(message), { code });

describe('classifyNetworkError', () => {
  it.each([
    ['ECONNREFUSED', 'refused'],
    ['ENOTFOUND', 'dns'],
    ['EAI_AGAIN', 'dns'],
    ['ETIMEDOUT', 'timeout'],
    ['ECONNRESET', 'reset'],
    ['EPIPE', 'reset'],
    ['DEPTH_ZERO_SELF_SIGNED_CERT', 'tls'],
    ['ERR_TLS_CERT_ALTNAME_INVALID', 'tls'],
    ['ERR_SSL_WRONG_VERSION_NUMBER', 'tls'],
    ['CERT_HAS_EXPIRED', 'tls'],
    ['EHOSTUNREACH', 'network'],
    ['HPE_INVALID_CONSTANT', 'network'],
  ])('%s → %s', (code, kind) => {
    expect(classifyNetworkError(errorWithCode(code))).toEqual({ kind, message: `boom ${code}` });
  });

  it('falls back to network for errors without a code, and for non-errors', () => {
    expect(classifyNetworkError(new Error('odd'))).toEqual({ kind: 'network', message: 'odd' });
    expect(classifyNetworkError('string thrown')).toEqual({ kind: 'network', message: 'string thrown' });
  });
});

describe('status and body', () => {
  it('401 and 403 are auth; everything else is http', () => {
    expect(classifyStatus(401, 'b')).toEqual({ kind: 'auth', status: 401, body: 'b' });
    expect(classifyStatus(403, 'b')).toEqual({ kind: 'auth', status: 403, body: 'b' });
    expect(classifyStatus(502, 'b')).toEqual({ kind: 'http', status: 502, body: 'b' });
  });

  it('scrubBody keeps 200 bytes and blanks the key', () => {
    const key = 'k'.repeat(32);
    const scrubbed = scrubBody(Buffer.from(`echo ${key} ${'x'.repeat(500)}`), key);
    expect(scrubbed.startsWith('echo [redacted] x')).toBe(true);
    expect(scrubbed).not.toContain(key);
    expect(scrubBody(Buffer.from('y'.repeat(500)), key)).toHaveLength(200);
  });

  it('mediaType drops parameters and case', () => {
    expect(mediaType({ 'content-type': 'Text/Event-Stream; charset=utf-8' })).toBe('text/event-stream');
    expect(mediaType({})).toBe('');
  });

  it('describeFailure is one short line', () => {
    expect(describeFailure({ kind: 'auth', status: 401, body: '{"error":"x"}' })).toBe('HTTP 401: {"error":"x"}');
    expect(describeFailure({ kind: 'refused', message: 'connect ECONNREFUSED' })).toBe('refused: connect ECONNREFUSED');
  });
});
