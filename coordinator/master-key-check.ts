// The cluster's master key check: which master keys its data nodes encrypt chunks with, recorded
// by id only (a key id is a fingerprint, common/master-key.ts: never the key) under g/master-keys,
// shared by every coordinator through the metadata store. After that a node is accepted when its
// writing key is one of them, or when its ring also holds one of them (a rotation: the new key
// joins, vouched for by an old one). A node whose keys are all unknown would write chunks the
// others cannot read, and a node with no key would write them in clear: both are refused
// (KeyUnavailable), so neither is ever placed on, and each exits before storing anything.
//
// Who may set the record (the rule): only a heartbeat that reached a coordinator whose node plane
// is authenticated: one with a node secret (every heartbeat reaching the handler passed
// nodePlaneInterceptor, an HMAC bound to its body, master key ids included, and to the node id it
// names) or with TLS (the node-only interceptor let through only peers holding a node certificate
// of the cluster CA). Such a coordinator writes the record with `trust: "node-plane"`. A
// coordinator whose node plane is open never writes it: anyone who reaches its port can heartbeat,
// so what a heartbeat says there is no evidence of the cluster's keys. A record without that mark
// (written by an older version from any heartbeat) is not trusted: it counts as no record, and the
// first authenticated keyed heartbeat replaces it. Every coordinator, open or not, checks nodes
// only against a trusted record; without one every node is accepted (an open plane then has no key
// check: `cluster up --encrypt` authenticates its node plane for that). So an unauthenticated
// heartbeat can neither change the record nor make any node be refused.
import { StrataError, corrupt } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { Kv } from './meta/kv.js';
import { MASTER_KEYS_KEY } from './meta/keys.js';

/** Ids kept at most: a bound on what a heartbeat can make the record grow to. */
const MAX_RECORDED_IDS = 64;
const MAX_ID_BYTES = 64;
/** The mark of a record written from authenticated heartbeats (the only kind trusted). */
const TRUSTED_FROM = 'node-plane';
/** While the trusted record is empty, a keyless or unknown key's heartbeat re-reads it at most this often (another coordinator may have written it). */
const EMPTY_RECHECK_MS = 5_000;

/** What a keyless node is told to start with. */
export const MASTER_KEY_FLAGS = '--encrypt-key-file FILE (or STRATA_MASTER_KEY)';

export class MasterKeyCheck {
  /** The trusted ids as last read or written (only ever grows: a rotation adds, nothing removes, an untrusted record counts as none). */
  private known = new Set<string>();
  private knownReadMs = -Infinity;
  private openPlaneLogged = false;

  constructor(
    private readonly kv: Kv,
    private readonly log: Logger,
    /** This coordinator's node plane is authenticated (a node secret or TLS): its heartbeats may write the record. */
    private readonly nodePlaneAuthenticated: boolean,
  ) {}

  /**
   * Accepts or refuses a data node's master keys (`ringIds`: the one it writes with first, then
   * the ones it only reads with; none: it writes in clear, refused once the cluster encrypts).
   */
  async check(nodeId: string, ringIds: readonly string[]): Promise<void> {
    const ids = ringIds.map(String).filter((id) => id.length > 0 && id.length <= MAX_ID_BYTES).slice(0, MAX_RECORDED_IDS);
    if (ids.length > 0 && this.known.has(ids[0])) return; // the usual heartbeat: no store read
    if (ids.length === 0) return this.checkKeyless(nodeId);
    if (!this.nodePlaneAuthenticated) return this.checkOnly(nodeId, ids);
    for (let attempt = 0; attempt < 20; attempt++) {
      const { entry, trusted } = await this.read();
      if (this.known.has(ids[0])) return;
      const voucher = ids.find((id) => this.known.has(id));
      if (trusted.length > 0 && !voucher) throw notThisClusters(nodeId, ids[0], trusted);
      const next = [...trusted, ...ids.filter((id) => !this.known.has(id))].slice(-MAX_RECORDED_IDS);
      const value = Buffer.from(JSON.stringify({ ids: next, trust: TRUSTED_FROM }));
      if (await this.kv.txn({ compares: [{ key: MASTER_KEYS_KEY, modRevision: entry?.modRevision ?? 0 }], ops: [{ type: 'put', key: MASTER_KEYS_KEY, value }] })) {
        this.known = new Set(next);
        if (voucher) this.log.info({ nodeId, keyId: ids[0], vouchedBy: voucher }, 'master key joins the cluster\'s keys (rotation)');
        else this.log.info({ nodeId, keyIds: ids }, 'master key check recorded: the cluster encrypts with these keys');
        return;
      }
    }
    throw new StrataError('Conflict', 'master key check: too many concurrent changes');
  }

  /** A node without a key: refused once the trusted record holds any id (it only grows: no read after that). */
  private async checkKeyless(nodeId: string): Promise<void> {
    if (this.known.size === 0 && Date.now() - this.knownReadMs >= EMPTY_RECHECK_MS) await this.read();
    if (this.known.size === 0) return;
    throw new StrataError(
      'KeyUnavailable',
      `data node ${nodeId} has no master key, but this cluster encrypts its chunks (with ${quoted([...this.known])}): start the node with the cluster's key in ${MASTER_KEY_FLAGS}`,
    );
  }

  /** On an open node plane: the keys are checked against a trusted record, never recorded. */
  private async checkOnly(nodeId: string, ids: string[]): Promise<void> {
    const accepted = () => this.known.size === 0 || ids.some((id) => this.known.has(id));
    let fresh = false;
    if (Date.now() - this.knownReadMs >= EMPTY_RECHECK_MS) {
      await this.read();
      fresh = true;
    }
    if (!accepted() && !fresh) await this.read(); // refused only on what the store says now
    if (!accepted()) throw notThisClusters(nodeId, ids[0], [...this.known]);
    if (this.known.size === 0 && !this.openPlaneLogged) {
      this.openPlaneLogged = true;
      this.log.warn({ nodeId }, 'master key check off: this coordinator\'s node plane is open (no --node-secret-file, no TLS), so a heartbeat\'s master keys are no evidence of the cluster\'s and are not recorded; a data node with a wrong key or none is not refused');
    }
  }

  /** The record as stored, and its ids when trusted (none otherwise); `known` follows it. */
  private async read(): Promise<{ entry: { value: Buffer; modRevision: number } | undefined; trusted: string[] }> {
    const [entry] = await this.kv.getMany([MASTER_KEYS_KEY]);
    const record = decode(entry?.value);
    const trusted = record.trust === TRUSTED_FROM ? record.ids : [];
    this.known = new Set(trusted);
    this.knownReadMs = Date.now();
    return { entry, trusted };
  }
}

function notThisClusters(nodeId: string, keyId: string, recorded: readonly string[]): StrataError {
  return new StrataError(
    'KeyUnavailable',
    `data node ${nodeId}: master key '${keyId}' is not this cluster's (it encrypts with ${quoted(recorded)}): start the node with the cluster's key in --encrypt-key-file or STRATA_MASTER_KEY`,
  );
}

const quoted = (ids: readonly string[]) => ids.map((id) => `'${id}'`).join(', ');

function decode(value: Buffer | undefined): { ids: string[]; trust?: string } {
  if (!value) return { ids: [] };
  try {
    const parsed = JSON.parse(value.toString()) as { ids?: unknown; trust?: unknown } | null;
    return { ids: Array.isArray(parsed?.ids) ? parsed.ids.map(String) : [], trust: typeof parsed?.trust === 'string' ? parsed.trust : undefined };
  } catch (err) {
    throw corrupt(`the master key check (${MASTER_KEYS_KEY}) is not readable JSON: ${(err as Error).message}`);
  }
}
