import { describe, expect, it } from 'vitest';
import {
  InvalidMasterUrlError,
  masterResourceUrl,
  normaliseMasterUrl,
  tryNormaliseMasterUrl,
} from '../../src/ingest/master-url.js';

describe('normaliseMasterUrl', () => {
  it.each([
    ['http://h:9090/api/v1', 'http://h:9090/api/v1'],
    ['http://h:9090/api/v1/', 'http://h:9090/api/v1'],
    ['http://h:9090/api/v1//', 'http://h:9090/api/v1'],
    ['http://h:9090/api', 'http://h:9090/api/v1'],
    ['http://h:9090/api/', 'http://h:9090/api/v1'],
    ['http://h:9090', 'http://h:9090/api/v1'],
    ['http://h:9090/', 'http://h:9090/api/v1'],
    ['  https://Master.Example.COM:8443/admin  ', 'https://master.example.com:8443/admin/v1'],
    ['https://h/admin/v1', 'https://h/admin/v1'],
    ['http://h:80/api', 'http://h/api/v1'],
    ['https://h:443', 'https://h/api/v1'],
    ['http://[::1]:9090/api/v1', 'http://[::1]:9090/api/v1'],
    ['http://[::1]:9090', 'http://[::1]:9090/api/v1'],
    ['http://[2001:DB8::1]:9090/api', 'http://[2001:db8::1]:9090/api/v1'],
    ['http://127.0.0.1:19090/api', 'http://127.0.0.1:19090/api/v1'],
    // A resource URL pasted from the browser or the master's docs:
    ['http://h:9090/api/v1/events', 'http://h:9090/api/v1'],
    ['http://h:9090/api/v1/info/', 'http://h:9090/api/v1'],
    ['http://h:9090/api/v1/docs', 'http://h:9090/api/v1'],
  ])('%s → %s', (input, expected) => {
    expect(normaliseMasterUrl(input)).toBe(expected);
  });

  it.each([
    ['', /empty/],
    ['h:9090/api', /http or https/],
    ['9090', /not a valid absolute URL/],
    ['ftp://h:9090/api', /http or https, not ftp/],
    ['ws://h:9090/api', /http or https, not ws/],
    ['master://0.0.0.0:9090?log=info', /http or https/],
    ['http://user:secret@h:9090/api', /credentials/],
    ['http://0123456789abcdef0123456789abcdef@h:9090/api', /credentials/],
    ['http://h:9090/api/v1?apiKey=0123456789abcdef0123456789abcdef', /query string/],
    ['http://h:9090/api/v1?', /query string/],
    ['http://h:9090/api#top', /fragment/],
    ['http://', /not a valid absolute URL/],
  ])('rejects %j', (input, message) => {
    expect(() => normaliseMasterUrl(input)).toThrow(InvalidMasterUrlError);
    expect(() => normaliseMasterUrl(input)).toThrow(message);
  });

  it('never repeats the rejected input (it may hold a pasted secret)', () => {
    const secret = '0123456789abcdef0123456789abcdef';
    for (const input of [`http://u:${secret}@h/api`, `http://h/api?key=${secret}`, `ftp://${secret}/`]) {
      const result = tryNormaliseMasterUrl(input);
      expect(result.ok).toBe(false);
      expect(JSON.stringify(result)).not.toContain(secret);
    }
  });

  it('tryNormaliseMasterUrl returns the base on success', () => {
    expect(tryNormaliseMasterUrl('http://h:9090')).toEqual({ ok: true, baseUrl: 'http://h:9090/api/v1' });
  });
});

describe('masterResourceUrl', () => {
  it('appends the resource to the base, IPv6 included', () => {
    expect(masterResourceUrl('http://h:9090/api/v1', 'events').href).toBe('http://h:9090/api/v1/events');
    const v6 = masterResourceUrl('http://[::1]:9090/admin/v1', 'info');
    expect(v6.href).toBe('http://[::1]:9090/admin/v1/info');
    expect(v6.hostname).toBe('[::1]');
  });
});
