// The cluster's master key check (master-key-check.ts) on a real LevelDB store: the first keyed
// node records its key ids, a node with none of them is refused, a ring that holds a known key
// brings a new one in (rotation), a node without a key is let be; coordinators share the record.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createLogger } from '../common/log.js';
import { tempDir, type TempDir } from '../test/harness/ports.js';
import { MasterKeyCheck } from './master-key-check.js';
import { LevelKv } from './meta/level-kv.js';
import { MASTER_KEYS_KEY } from './meta/keys.js';

const log = createLogger('coordinator', 'silent');

describe('master key check', () => {
  let dir: TempDir;
  let kv: LevelKv;
  beforeAll(async () => {
    dir = await tempDir('master-key-check');
    kv = await LevelKv.open(path.join(dir.path, 'meta'));
  });
  afterAll(async () => {
    await kv?.close();
    await dir?.cleanup();
  });

  test('record, refuse a stranger, admit a rotation vouched for by a known key, ignore keyless nodes', async () => {
    const first = new MasterKeyCheck(kv, log);
    await first.check('dn0', []); // writes in clear: nothing to check, nothing recorded
    expect((await kv.getMany([MASTER_KEYS_KEY]))[0]).toBeUndefined();
    await first.check('dn1', ['local-aaaa']);
    const other = new MasterKeyCheck(kv, log); // another coordinator: the same record
    await other.check('dn2', ['local-aaaa']);
    await expect(other.check('dn3', ['local-bbbb'])).rejects.toMatchObject({
      kind: 'KeyUnavailable',
      message: "data node dn3: master key 'local-bbbb' is not this cluster's (it encrypts with 'local-aaaa'): start the node with the cluster's key in --encrypt-key-file or STRATA_MASTER_KEY",
    });
    await other.check('dn1', ['local-cccc', 'local-aaaa']); // rotated: the new key writes, the old one reads
    await first.check('dn2', ['local-cccc']); // the first coordinator re-reads the record for an id it does not know
    const [entry] = await kv.getMany([MASTER_KEYS_KEY]);
    expect(JSON.parse(entry!.value.toString())).toEqual({ ids: ['local-aaaa', 'local-cccc'] });
    await expect(first.check('dn3', ['local-bbbb', 'local-dddd'])).rejects.toMatchObject({ kind: 'KeyUnavailable' });
  });
});
