// The coordinators' chunk grant keys (common/chunk-grants.ts), shared by every coordinator of a
// cluster through the metadata store (key g/keys, either engine): the first coordinator to start
// makes one Ed25519 key pair; every other one reads it. Rotation adds a key that becomes the
// signing key only once `activeFromMs` is past, so data nodes learn its public half (heartbeat
// replies) before any grant needs it; a superseded key stays published until every grant it can
// have signed expired (a coordinator that has not re-read the keys yet still signs with it), then
// it is dropped: by the next rotation, or by any coordinator's periodic re-read.
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { StrataError, corrupt } from '../common/errors.js';
import type { WireGrantKey } from '../common/chunk-grants.js';
import type { Logger } from '../common/log.js';
import type { Kv, KvEntry } from './meta/kv.js';
import { GRANT_KEYS_KEY } from './meta/keys.js';

/** One key as stored: DER, base64. The private half never leaves the metadata store and coordinators. */
interface StoredKey {
  id: string;
  privateKey: string;
  publicKey: string;
  createdAtMs: number;
  /** Grants are signed with it from then on (data nodes have learnt it by then). */
  activeFromMs: number;
}

export interface SigningKey {
  id: string;
  privateKey: KeyObject;
}

/** How often each coordinator re-reads the keys (a rotation made elsewhere). */
export const RELOAD_MS = 30_000;
/** Keys kept at most: a rotation that would need more (grants of all of them still out) is refused. */
const MAX_KEYS = 16;
/** Grants live at most this long (the config's bound on --grant-ttl-ms): the default lifetime kept. */
export const MAX_GRANT_TTL_MS = 24 * 3_600_000;

/**
 * The keys still needed at `nowMs`: a key superseded by a successor active for longer than a
 * coordinator's re-read plus `grantTtlMs` signed its last grant that long ago: gone.
 */
function stillNeeded(keys: StoredKey[], nowMs: number, grantTtlMs: number): StoredKey[] {
  return keys.filter((_key, i) => {
    const successor = keys[i + 1];
    return !successor || successor.activeFromMs + RELOAD_MS + grantTtlMs > nowMs;
  });
}

function newKey(nowMs: number, activeFromMs: number): StoredKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    id: randomBytes(6).toString('hex'),
    privateKey: privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64'),
    publicKey: publicKey.export({ format: 'der', type: 'spki' }).toString('base64'),
    createdAtMs: nowMs,
    activeFromMs,
  };
}

function decode(entry: KvEntry | undefined): StoredKey[] {
  if (!entry) return [];
  let parsed: { keys?: StoredKey[] } | null;
  try {
    parsed = JSON.parse(entry.value.toString()) as { keys?: StoredKey[] } | null;
  } catch (err) {
    throw corrupt(`the chunk grant keys (${GRANT_KEYS_KEY}) are not readable JSON: ${(err as Error).message}`);
  }
  return Array.isArray(parsed?.keys) ? parsed.keys : [];
}

const encode = (keys: StoredKey[]) => Buffer.from(JSON.stringify({ keys }));

/** Changes the stored key list with `change` (read, compare, write: safe against a coordinator doing the same). */
async function update(kv: Kv, change: (keys: StoredKey[]) => StoredKey[] | null): Promise<StoredKey[]> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const [entry] = await kv.getMany([GRANT_KEYS_KEY]);
    const current = decode(entry);
    const next = change(current);
    if (!next) return current;
    if (await kv.txn({ compares: [{ key: GRANT_KEYS_KEY, modRevision: entry?.modRevision ?? 0 }], ops: [{ type: 'put', key: GRANT_KEYS_KEY, value: encode(next) }] })) return next;
  }
  throw new StrataError('Conflict', 'grant keys: too many concurrent changes');
}

/**
 * Adds a key that signs from `activateAfterMs` on (give every coordinator a re-read and data nodes
 * a few heartbeats to learn it), keeping the others while grants they signed may still be out
 * (`grantTtlMs`: the grants' lifetime); Busy when that would be more than MAX_KEYS keys.
 */
export async function rotateGrantKeys(kv: Kv, activateAfterMs: number, nowMs = Date.now(), grantTtlMs = MAX_GRANT_TTL_MS): Promise<{ id: string; activeFromMs: number; keyIds: string[] }> {
  let added: StoredKey | undefined;
  const stored = await update(kv, (keys) => {
    // Activation in the order of rotation: the newest key is always the one signing last.
    added = newKey(nowMs, Math.max(nowMs + activateAfterMs, keys[keys.length - 1]?.activeFromMs ?? 0));
    const next = [...stillNeeded(keys, nowMs, grantTtlMs), added];
    if (next.length > MAX_KEYS) {
      throw new StrataError('Busy', `grant keys: ${next.length - 1} keys may still have grants out; rotate again once the oldest one's have expired (at most ${Math.ceil((grantTtlMs + RELOAD_MS) / 1000)} s after the next one became active)`);
    }
    return next;
  });
  return { id: added!.id, activeFromMs: added!.activeFromMs, keyIds: stored.map((key) => key.id) };
}

export class GrantKeys {
  private stored: StoredKey[] = [];
  private privateKeys = new Map<string, KeyObject>();
  private published: WireGrantKey[] = [];
  private timer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly kv: Kv,
    private readonly log: Logger,
    private readonly grantTtlMs: number,
  ) {}

  /**
   * The cluster's keys, made now if this is the first coordinator ever; re-read every RELOAD_MS,
   * dropping keys no grant of `grantTtlMs` signed by them can still be valid for.
   */
  static async open(kv: Kv, log: Logger, grantTtlMs = MAX_GRANT_TTL_MS): Promise<GrantKeys> {
    const keys = new GrantKeys(kv, log, grantTtlMs);
    const made = newKey(Date.now(), 0);
    const stored = await update(kv, (current) => (current.length > 0 ? null : [made]));
    if (stored[0]?.id === made.id) log.info({ keyId: made.id }, 'chunk grant key created');
    keys.take(stored);
    keys.timer = setInterval(() => void keys.reload(), RELOAD_MS).unref();
    return keys;
  }

  /** The key grants are signed with now: the newest active one. */
  signingKey(nowMs = Date.now()): SigningKey {
    const active = this.stored.filter((key) => key.activeFromMs <= nowMs);
    const key = active[active.length - 1] ?? this.stored[0];
    if (!key) throw new StrataError('Unavailable', 'no chunk grant key is known yet');
    return { id: key.id, privateKey: this.privateKeys.get(key.id)! };
  }

  /** Every public key, for data nodes (heartbeat replies). */
  publicKeys(): WireGrantKey[] {
    return this.published;
  }

  close(): void {
    clearInterval(this.timer);
  }

  /** Re-reads the keys now (after a rotation this coordinator made: it publishes the new one at once). */
  refresh(): Promise<void> {
    return this.reload();
  }

  private async reload(): Promise<void> {
    try {
      const [entry] = await this.kv.getMany([GRANT_KEYS_KEY]);
      let keys = decode(entry);
      const now = Date.now();
      if (stillNeeded(keys, now, this.grantTtlMs).length < keys.length) {
        keys = await update(this.kv, (current) => {
          const needed = stillNeeded(current, now, this.grantTtlMs);
          return needed.length < current.length ? needed : null;
        });
        this.log.info({ keys: keys.map((key) => key.id) }, 'grant keys whose grants have all expired dropped');
      }
      if (keys.length > 0) this.take(keys);
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'grant keys: reload failed; keeping the last ones');
    }
  }

  private take(keys: StoredKey[]): void {
    const privateKeys = new Map<string, KeyObject>();
    const published: WireGrantKey[] = [];
    for (const key of keys) {
      privateKeys.set(key.id, this.privateKeys.get(key.id) ?? createPrivateKey({ key: Buffer.from(key.privateKey, 'base64'), format: 'der', type: 'pkcs8' }));
      published.push({ id: key.id, publicKey: createPublicKey({ key: Buffer.from(key.publicKey, 'base64'), format: 'der', type: 'spki' }).export({ format: 'der', type: 'spki' }) });
    }
    this.stored = keys;
    this.privateKeys = privateKeys;
    this.published = published;
  }
}
