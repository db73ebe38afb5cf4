import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SecretBoxError } from '../../src/db/errors.js';
import { SecretBox } from '../../src/db/secret-box.js';

const folder = mkdtempSync(join(tmpdir(), 'tp-secret-'));
afterAll(() => rmSync(folder, { recursive: true, force: true }));

const key = randomBytes(32);

function errorOf(fn: () => unknown): SecretBoxError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(SecretBoxError);
    return error as SecretBoxError;
  }
  throw new Error('expected a SecretBoxError');
}

describe('SecretBox', () => {
  it('round-trips a key, sealing the same plaintext differently every time', () => {
    const box = new SecretBox(key);
    const first = box.seal('s3cr3t-api-key');
    const second = box.seal('s3cr3t-api-key');
    expect(first).not.toBe(second);
    expect(first).toMatch(/^tp1\.[0-9a-f]{8}\.[\w-]+\.[\w-]+$/);
    expect(first).not.toContain('s3cr3t');
    expect(box.open(first)).toBe('s3cr3t-api-key');
    expect(box.open(box.seal(''))).toBe('');
  });

  it('accepts the key as 64 hex characters or as base64', () => {
    const sealed = new SecretBox(key).seal('x');
    expect(SecretBox.fromConfig({ key: key.toString('hex') }).open(sealed)).toBe('x');
    expect(SecretBox.fromConfig({ key: key.toString('base64') }).open(sealed)).toBe('x');
    expect(SecretBox.fromConfig({ key: key.toString('base64url') }).open(sealed)).toBe('x');
    expect(errorOf(() => SecretBox.fromConfig({ key: 'too-short' })).code).toBe('SECRET_KEY_INVALID');
    expect(errorOf(() => SecretBox.fromConfig({ key: randomBytes(16).toString('hex') })).code).toBe('SECRET_KEY_INVALID');
  });

  it('names the mismatch when opened with a different key, instead of returning garbage', () => {
    const sealed = new SecretBox(key).seal('x');
    const other = new SecretBox(randomBytes(32));
    const error = errorOf(() => other.open(sealed));
    expect(error.code).toBe('SECRET_WRONG_KEY');
    expect(error.message).toContain(other.keyId);
  });

  it('detects tampering with the ciphertext or with the authenticated header', () => {
    const box = new SecretBox(key);
    const [format, keyId, iv, body] = box.seal('api-key-value').split('.') as [string, string, string, string];
    const flipped = Buffer.from(body, 'base64url');
    flipped[0]! ^= 1;
    expect(errorOf(() => box.open([format, keyId, iv, flipped.toString('base64url')].join('.'))).code).toBe('SECRET_CORRUPT');
    expect(errorOf(() => box.open(['tp2', keyId, iv, body].join('.'))).code).toBe('SECRET_FORMAT');
    expect(errorOf(() => box.open('plaintext-key')).code).toBe('SECRET_FORMAT');
  });

  it('creates a key file with mode 0600 on first use and reuses it afterwards', () => {
    const keyFile = join(folder, 'nested', 'secret.key');
    const first = SecretBox.fromConfig({ keyFile });
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(keyFile, 'utf8').trim()).toMatch(/^[0-9a-f]{64}$/);
    const second = SecretBox.fromConfig({ keyFile });
    expect(second.keyId).toBe(first.keyId);
    expect(second.open(first.seal('kept across restarts'))).toBe('kept across restarts');
  });

  it('refuses a key file that group or others can read', () => {
    const keyFile = join(folder, 'open.key');
    writeFileSync(keyFile, key.toString('hex'));
    chmodSync(keyFile, 0o644);
    const error = errorOf(() => SecretBox.fromConfig({ keyFile }));
    expect(error.code).toBe('SECRET_KEY_FILE_MODE');
    expect(error.message).toContain('chmod 600');
    chmodSync(keyFile, 0o600);
    expect(SecretBox.fromConfig({ keyFile }).keyId).toBe(new SecretBox(key).keyId);
  });
});
