// The cluster's master key check: which master keys its data nodes encrypt chunks with, recorded
// by id only (a key id is a fingerprint, common/master-key.ts: never the key) under g/master-keys,
// shared by every coordinator through the metadata store. The first data node with a key records
// its ring's ids. After that a node is accepted when its writing key is one of them, or when its
// ring also holds one of them (a rotation: the new key joins, vouched for by an old one). A node
// whose keys are all unknown would write chunks the others cannot read: its heartbeats are
// refused (KeyUnavailable), so it is never placed on, and it exits before storing anything.
import { StrataError, corrupt } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { Kv } from './meta/kv.js';
import { MASTER_KEYS_KEY } from './meta/keys.js';

/** Ids kept at most: a bound on what a heartbeat can make the record grow to. */
const MAX_RECORDED_IDS = 64;
const MAX_ID_BYTES = 64;

export class MasterKeyCheck {
  /** The recorded ids as last read or written (only ever grows: a rotation adds, nothing removes). */
  private known = new Set<string>();

  constructor(
    private readonly kv: Kv,
    private readonly log: Logger,
  ) {}

  /**
   * Accepts or refuses a data node's master keys (`ringIds`: the one it writes with first, then
   * the ones it only reads with; none: it writes in clear, which every node can read).
   */
  async check(nodeId: string, ringIds: readonly string[]): Promise<void> {
    const ids = ringIds.map(String).filter((id) => id.length > 0 && id.length <= MAX_ID_BYTES).slice(0, MAX_RECORDED_IDS);
    if (ids.length === 0 || this.known.has(ids[0])) return; // the usual heartbeat: no store read
    for (let attempt = 0; attempt < 20; attempt++) {
      const [entry] = await this.kv.getMany([MASTER_KEYS_KEY]);
      const recorded = decode(entry?.value);
      this.known = new Set(recorded);
      if (this.known.has(ids[0])) return;
      const voucher = ids.find((id) => this.known.has(id));
      if (recorded.length > 0 && !voucher) {
        throw new StrataError(
          'KeyUnavailable',
          `data node ${nodeId}: master key '${ids[0]}' is not this cluster's (it encrypts with ${recorded.map((id) => `'${id}'`).join(', ')}): start the node with the cluster's key in --encrypt-key-file or STRATA_MASTER_KEY`,
        );
      }
      const next = [...recorded, ...ids.filter((id) => !this.known.has(id))].slice(-MAX_RECORDED_IDS);
      const value = Buffer.from(JSON.stringify({ ids: next }));
      if (await this.kv.txn({ compares: [{ key: MASTER_KEYS_KEY, modRevision: entry?.modRevision ?? 0 }], ops: [{ type: 'put', key: MASTER_KEYS_KEY, value }] })) {
        this.known = new Set(next);
        if (voucher) this.log.info({ nodeId, keyId: ids[0], vouchedBy: voucher }, 'master key joins the cluster\'s keys (rotation)');
        else this.log.info({ nodeId, keyIds: ids }, 'master key check recorded: the cluster encrypts with these keys');
        return;
      }
    }
    throw new StrataError('Conflict', 'master key check: too many concurrent changes');
  }
}

function decode(value: Buffer | undefined): string[] {
  if (!value) return [];
  try {
    const parsed = JSON.parse(value.toString()) as { ids?: unknown } | null;
    return Array.isArray(parsed?.ids) ? parsed.ids.map(String) : [];
  } catch (err) {
    throw corrupt(`the master key check (${MASTER_KEYS_KEY}) is not readable JSON: ${(err as Error).message}`);
  }
}
