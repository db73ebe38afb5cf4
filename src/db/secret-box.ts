/**
 * Encryption at rest for endpoint API keys: AES-256-GCM (node:crypto), authenticated and versioned.
 *
 * Sealed format (ASCII, safe in a text column):   tp1.<key id>.<iv>.<ciphertext+tag>
 *   tp1      format version; a future format gets a new prefix and old values stay readable
 *   key id   8 hex chars of SHA-256 over the key: names which key sealed a value, so a wrong key is reported as
 *            such instead of failing as "corrupt" (it reveals nothing usable about a 256-bit key)
 *   iv       12 random bytes, base64url
 *   rest     ciphertext followed by the 16-byte GCM tag, base64url
 * The version and key id are authenticated as additional data: changing either makes opening fail.
 *
 * The key is 32 bytes, from configuration (64 hex chars or base64) or from a key file that is generated on first
 * use with mode 0600. A key file that group or others can read is refused: it guards every stored API key.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, linkSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { SecretBoxError } from './errors.js';

export const DEFAULT_SECRET_KEY_FILE = './data/secret.key';

const FORMAT = 'tp1';
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;

export interface SecretKeySource {
  /** The key itself: 64 hex characters or base64 of 32 bytes. Takes precedence over `keyFile`. */
  key?: string;
  /** Where to read the key, or create it if missing. Default `./data/secret.key`. */
  keyFile?: string;
}

export class SecretBox {
  /** Identifies the key without revealing it (also shown in errors and logs). */
  readonly keyId: string;
  readonly #key: Buffer;

  constructor(key: Buffer) {
    if (key.length !== KEY_BYTES) {
      throw new SecretBoxError(`the secret key must be ${KEY_BYTES} bytes, got ${key.length}`, 'SECRET_KEY_INVALID');
    }
    this.#key = Buffer.from(key);
    this.keyId = createHash('sha256').update(key).digest('hex').slice(0, 8);
  }

  /** The key from configuration if given, otherwise from the key file (generated on first use). */
  static fromConfig(source: SecretKeySource = {}): SecretBox {
    if (source.key !== undefined) return new SecretBox(parseKey(source.key, 'the configured secret key'));
    return new SecretBox(loadOrCreateKeyFile(source.keyFile ?? DEFAULT_SECRET_KEY_FILE));
  }

  seal(plaintext: string): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv);
    cipher.setAAD(this.#additionalData(this.keyId));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final(), cipher.getAuthTag()]);
    return [FORMAT, this.keyId, iv.toString('base64url'), body.toString('base64url')].join('.');
  }

  open(sealed: string): string {
    const parts = sealed.split('.');
    if (parts.length !== 4 || parts[0] !== FORMAT) {
      throw new SecretBoxError(`not a sealed secret of format ${FORMAT}`, 'SECRET_FORMAT');
    }
    const [, keyId, ivText, bodyText] = parts as [string, string, string, string];
    if (keyId !== this.keyId) {
      throw new SecretBoxError(
        `this secret was sealed with key ${keyId} but the configured key is ${this.keyId}; ` +
          'configure the original key (or re-enter the API key)',
        'SECRET_WRONG_KEY',
      );
    }
    const iv = Buffer.from(ivText, 'base64url');
    const body = Buffer.from(bodyText, 'base64url');
    if (iv.length !== IV_BYTES || body.length < TAG_BYTES) {
      throw new SecretBoxError('the sealed secret is truncated', 'SECRET_CORRUPT');
    }
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#key, iv);
      decipher.setAAD(this.#additionalData(keyId));
      decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
      return Buffer.concat([decipher.update(body.subarray(0, body.length - TAG_BYTES)), decipher.final()]).toString('utf8');
    } catch (error) {
      throw new SecretBoxError('the sealed secret failed authentication (corrupt or tampered)', 'SECRET_CORRUPT', {
        cause: error,
      });
    }
  }

  #additionalData(keyId: string): Buffer {
    return Buffer.from(`${FORMAT}.${keyId}`, 'ascii');
  }
}

/** 64 hex characters, or base64 / base64url that decodes to exactly 32 bytes. */
export function parseKey(text: string, what: string): Buffer {
  const trimmed = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(trimmed)) return Buffer.from(trimmed, 'hex');
  if (/^[A-Za-z0-9+/_-]{43}={0,1}$/.test(trimmed)) {
    const key = Buffer.from(trimmed, trimmed.includes('-') || trimmed.includes('_') ? 'base64url' : 'base64');
    if (key.length === KEY_BYTES) return key;
  }
  throw new SecretBoxError(`${what} must be ${KEY_BYTES} bytes, written as 64 hex characters or base64`, 'SECRET_KEY_INVALID');
}

function loadOrCreateKeyFile(path: string): Buffer {
  if (!existsSync(path)) createKeyFile(path);
  assertPrivate(path);
  return parseKey(readFileSync(path, 'utf8'), `the key file ${path}`);
}

function createKeyFile(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  // Written whole to a private temporary file, then linked into place: link() fails if the file exists, so when
  // two processes start on a fresh folder exactly one key wins, and nobody ever reads a half-written key.
  const temporary = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(temporary, `${randomBytes(KEY_BYTES).toString('hex')}\n`, { flag: 'wx', mode: 0o600 });
  try {
    chmodSync(temporary, 0o600); // exact, whatever the umask
    linkSync(temporary, path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  } finally {
    rmSync(temporary, { force: true });
  }
}

function assertPrivate(path: string): void {
  // Windows has no POSIX modes; its ACLs are out of our reach here.
  if (process.platform === 'win32') return;
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new SecretBoxError(
      `the key file ${path} is readable by group or others (mode ${mode.toString(8).padStart(4, '0')}); ` +
        `run: chmod 600 ${path}`,
      'SECRET_KEY_FILE_MODE',
    );
  }
}
