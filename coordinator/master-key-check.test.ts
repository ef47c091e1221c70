// The cluster's master key check (master-key-check.ts) on a real LevelDB store: on an
// authenticated node plane the first keyed node records its key ids, a node with none of them is
// refused, a ring that holds a known key brings a new one in (rotation), and a node without a key is
// refused once the cluster encrypts; coordinators share the record. On an open node plane a
// heartbeat never writes the record (nor makes anyone refused without a trusted one), and a record
// not marked as written from authenticated heartbeats is not trusted.
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { createLogger } from '../common/log.js';
import { tempDir, type TempDir } from '../test/harness/ports.js';
import { MasterKeyCheck } from './master-key-check.js';
import { LevelKv } from './meta/level-kv.js';
import { MASTER_KEYS_KEY } from './meta/keys.js';

const log = createLogger('coordinator', 'silent');
const AUTHENTICATED = true;
const OPEN = false;

describe('master key check', () => {
  let dir: TempDir;
  let kv: LevelKv;
  let stores = 0;
  beforeAll(async () => {
    dir = await tempDir('master-key-check');
  });
  beforeEach(async () => {
    kv = await LevelKv.open(path.join(dir.path, `meta-${stores++}`));
  });
  afterEach(async () => {
    await kv?.close();
  });
  afterAll(async () => {
    await dir?.cleanup();
  });
  const record = async () => {
    const [entry] = await kv.getMany([MASTER_KEYS_KEY]);
    return entry && JSON.parse(entry.value.toString());
  };

  test('authenticated: record, refuse a stranger, admit a rotation vouched for by a known key, refuse keyless nodes once the cluster encrypts', async () => {
    const first = new MasterKeyCheck(kv, log, AUTHENTICATED);
    await first.check('dn0', []); // nothing recorded yet: a keyless node writes in clear, which every node reads
    expect(await record()).toBeUndefined();
    await first.check('dn1', ['local-aaaa']);
    const other = new MasterKeyCheck(kv, log, AUTHENTICATED); // another coordinator: the same record
    await other.check('dn2', ['local-aaaa']);
    await expect(other.check('dn3', ['local-bbbb'])).rejects.toMatchObject({
      kind: 'KeyUnavailable',
      message: "data node dn3: master key 'local-bbbb' is not this cluster's (it encrypts with 'local-aaaa'): start the node with the cluster's key in --encrypt-key-file or STRATA_MASTER_KEY",
    });
    await other.check('dn1', ['local-cccc', 'local-aaaa']); // rotated: the new key writes, the old one reads
    await first.check('dn2', ['local-cccc']); // the first coordinator re-reads the record for an id it does not know
    expect(await record()).toEqual({ ids: ['local-aaaa', 'local-cccc'], trust: 'node-plane' });
    await expect(first.check('dn3', ['local-bbbb', 'local-dddd'])).rejects.toMatchObject({ kind: 'KeyUnavailable' });
    for (const check of [first, other]) {
      await expect(check.check('dn0', [])).rejects.toMatchObject({
        kind: 'KeyUnavailable',
        message: "data node dn0 has no master key, but this cluster encrypts its chunks (with 'local-aaaa', 'local-cccc'): start the node with the cluster's key in --encrypt-key-file FILE (or STRATA_MASTER_KEY)",
      });
    }
    // An open-plane coordinator on the same store checks against the trusted record too.
    const open = new MasterKeyCheck(kv, log, OPEN);
    await open.check('dn1', ['local-cccc']);
    await expect(open.check('dn3', ['local-bbbb'])).rejects.toMatchObject({ kind: 'KeyUnavailable' });
    await expect(open.check('dn0', [])).rejects.toMatchObject({ kind: 'KeyUnavailable' });
    expect(await record()).toEqual({ ids: ['local-aaaa', 'local-cccc'], trust: 'node-plane' });
  });

  test('open node plane: heartbeats record nothing and refuse no one; an untrusted record counts as none, and an authenticated heartbeat replaces it', async () => {
    const open = new MasterKeyCheck(kv, log, OPEN);
    await open.check('evil', ['local-ffff', 'local-eeee']);
    await open.check('dn1', ['local-aaaa']);
    await open.check('dn0', []);
    expect(await record()).toBeUndefined();

    // What an older version wrote from any heartbeat: not trusted by anyone.
    const untrusted = Buffer.from(JSON.stringify({ ids: ['local-ffff'] }));
    expect(await kv.txn({ compares: [{ key: MASTER_KEYS_KEY, modRevision: 0 }], ops: [{ type: 'put', key: MASTER_KEYS_KEY, value: untrusted }] })).toBe(true);
    const again = new MasterKeyCheck(kv, log, OPEN);
    await again.check('dn1', ['local-aaaa']);
    await again.check('dn0', []);
    const authenticated = new MasterKeyCheck(kv, log, AUTHENTICATED);
    await authenticated.check('dn0', []);
    await authenticated.check('dn1', ['local-aaaa']);
    expect(await record()).toEqual({ ids: ['local-aaaa'], trust: 'node-plane' });
    await expect(authenticated.check('evil', ['local-ffff'])).rejects.toMatchObject({ kind: 'KeyUnavailable' });
  });
});
