// Encryption at rest, the key side: every encrypted chunk (and export object) has its own random
// data key, stored beside it wrapped by a master key. The master key sits behind a KMS-shaped
// interface (KeyWrapper: a key id, wrap, unwrap), so a real KMS is a drop-in; the one here is a
// local key from a file or the environment. A key that is absent or wrong is KeyUnavailable:
// the data may well be intact, so nothing treats it as corrupt (no quarantine, no repair).
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { StrataError, invalid } from './errors.js';

export const DATA_KEY_BYTES = 32; // AES-256
export const MASTER_KEY_BYTES = 32;
/** A key id is what readers look a master key up by: ASCII, stored in every encrypted head. */
const KEY_ID_PATTERN = /^[A-Za-z0-9:._/-]{1,64}$/;

export interface KeyWrapper {
  /** Names the master key; stored with each wrapped key, so a reader knows which key it needs. */
  readonly keyId: string;
  /** The data key sealed under the master key (at most 512 bytes). */
  wrap(dataKey: Buffer): Promise<Buffer>;
  /** The data key back; KeyUnavailable when `wrapped` was not sealed by this master key. */
  unwrap(wrapped: Buffer): Promise<Buffer>;
}

/**
 * The master keys a node holds: `current` wraps new data keys; any of them may unwrap old ones.
 * One ring is shared by everything of a node that reads or writes chunks, so a reload (SIGHUP)
 * swaps its keys in place for all of them.
 */
export class KeyRing {
  private byId = new Map<string, KeyWrapper>();
  private writer: KeyWrapper;

  constructor(current: KeyWrapper, older: KeyWrapper[] = []) {
    this.writer = current;
    for (const wrapper of [current, ...older]) {
      if (!KEY_ID_PATTERN.test(wrapper.keyId)) throw invalid(`master key id '${wrapper.keyId.slice(0, 80)}': use 1..64 of A-Z a-z 0-9 : . _ / -`);
      this.byId.set(wrapper.keyId, wrapper);
    }
  }

  /** The key new data keys are wrapped with: a ring file's last one. */
  get current(): KeyWrapper {
    return this.writer;
  }

  /** Takes `other`'s keys (a reloaded key file): from now on it writes with other's current key. */
  replaceWith(other: KeyRing): void {
    this.byId = new Map(other.byId);
    this.writer = other.writer;
  }

  /** Every key's id, the writing one first: what heartbeats report for the cluster's key check. */
  ids(): string[] {
    return [...this.byId.keys()];
  }

  /** The key named `keyId`; KeyUnavailable (naming `what`) when this ring lacks it. */
  get(keyId: string, what: string): KeyWrapper {
    const wrapper = this.byId.get(keyId);
    if (!wrapper) throw keyUnavailable(`${what}: encrypted with master key '${keyId}', but the configured key is '${this.current.keyId}' (wrong key file?)`);
    return wrapper;
  }
}

/** What a reader without any master key says of an encrypted chunk or object. */
export function noMasterKey(what: string, keyId: string): StrataError {
  return keyUnavailable(`${what}: encrypted with master key '${keyId}', but no master key is configured (set --encrypt-key-file or STRATA_MASTER_KEY)`);
}

export function keyUnavailable(message: string): StrataError {
  return new StrataError('KeyUnavailable', message);
}

/**
 * A master key held in memory: data keys wrapped with AES-256-GCM under a random 96-bit nonce.
 * Random nonces are safe for up to 2^32 wraps per key (NIST SP 800-38D): one per chunk written,
 * some 32 PiB of 8 MiB chunks across the cluster before the key should be rotated. The id is a
 * fingerprint of the key, so a different key is told apart before any unwrap is tried.
 */
export class LocalKeyWrapper implements KeyWrapper {
  readonly keyId: string;
  private readonly aad: Buffer;

  constructor(private readonly key: Buffer) {
    if (key.length !== MASTER_KEY_BYTES) throw invalid(`a master key is ${MASTER_KEY_BYTES} bytes, not ${key.length}`);
    this.keyId = `local-${createHash('sha256').update('strata master key id\0').update(key).digest('hex').slice(0, 16)}`;
    this.aad = Buffer.from(`strata data key\0${this.keyId}`);
  }

  async wrap(dataKey: Buffer): Promise<Buffer> {
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, nonce);
    cipher.setAAD(this.aad);
    const sealed = Buffer.concat([cipher.update(dataKey), cipher.final()]);
    return Buffer.concat([nonce, sealed, cipher.getAuthTag()]);
  }

  async unwrap(wrapped: Buffer): Promise<Buffer> {
    const bad = () => keyUnavailable(`master key '${this.keyId}' does not open this data key (wrong key, or the wrapped key was altered)`);
    if (wrapped.length !== 12 + DATA_KEY_BYTES + 16) throw bad();
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, wrapped.subarray(0, 12));
      decipher.setAAD(this.aad);
      decipher.setAuthTag(wrapped.subarray(12 + DATA_KEY_BYTES));
      return Buffer.concat([decipher.update(wrapped.subarray(12, 12 + DATA_KEY_BYTES)), decipher.final()]);
    } catch {
      throw bad();
    }
  }
}

/**
 * The master keys a role is configured with: `encryptKeyFile` or `masterKey` (hex or base64, from
 * STRATA_MASTER_KEY: one key). Neither: no key. A key file is one key (32 raw bytes, 64 hex digits
 * or base64 of 32 bytes) or a key ring: one key per line, hex or base64, `#` comments and blank
 * lines skipped, the last key the newest (it wraps new data keys; every one unwraps). Rotation
 * appends a key. The keys themselves never appear in a message or a log; their ids do.
 */
export function loadKeyRing(config: { encryptKeyFile?: string; masterKey?: string }): KeyRing | undefined {
  if (config.encryptKeyFile && config.masterKey) throw invalid('invalid config: set one of encryptKeyFile (--encrypt-key-file) and masterKey (STRATA_MASTER_KEY), not both');
  if (config.encryptKeyFile) {
    let bytes: Buffer;
    try {
      bytes = readFileSync(config.encryptKeyFile);
    } catch (err) {
      throw invalid(`invalid config: encryptKeyFile: cannot read ${config.encryptKeyFile}: ${(err as NodeJS.ErrnoException).code ?? err}`);
    }
    return parseKeyRing(bytes, `encryptKeyFile: ${config.encryptKeyFile}`);
  }
  if (config.masterKey) return new KeyRing(new LocalKeyWrapper(parseMasterKey(Buffer.from(config.masterKey), 'masterKey (STRATA_MASTER_KEY)')));
  return undefined;
}

/** A key file's ring: the file one key (raw, hex or base64), or one key per line, newest last. */
export function parseKeyRing(bytes: Buffer, what: string): KeyRing {
  if (bytes.length === MASTER_KEY_BYTES) return new KeyRing(new LocalKeyWrapper(Buffer.from(bytes)));
  const lines = bytes
    .toString('latin1')
    .split('\n')
    .map((line, index) => ({ text: line.replace(/#.*/, '').trim(), number: index + 1 }))
    .filter((line) => line.text.length > 0);
  if (lines.length === 0) return new KeyRing(new LocalKeyWrapper(parseMasterKey(bytes, what))); // fails: says what a key is
  const wrappers = lines.map((line) => new LocalKeyWrapper(parseMasterKey(Buffer.from(line.text, 'latin1'), `${what} line ${line.number}`)));
  const newest = wrappers[wrappers.length - 1];
  return new KeyRing(newest, wrappers.slice(0, -1).reverse());
}

/** 32 bytes from a key file's or variable's contents: raw, hex or base64. */
export function parseMasterKey(bytes: Buffer, what: string): Buffer {
  if (bytes.length === MASTER_KEY_BYTES) return Buffer.from(bytes);
  const text = bytes.toString('latin1').trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  if (/^[A-Za-z0-9+/]{43}=?$/.test(text)) {
    const decoded = Buffer.from(text, 'base64');
    if (decoded.length === MASTER_KEY_BYTES) return decoded;
  }
  throw invalid(`invalid config: ${what}: a master key is 32 bytes: raw, 64 hex digits or base64 (make one with: head -c 32 /dev/urandom > FILE)`);
}

/** A new random master key as a key file holds it (hex, one line). */
export function newMasterKeyText(): string {
  return `${randomBytes(MASTER_KEY_BYTES).toString('hex')}\n`;
}
