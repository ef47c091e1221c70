// The receiving side of an encode-once write: a replica checks the forwarded encoding (payloads,
// head, trailer) and stores it byte for byte, or refuses it and stores nothing.
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { ChunkEncoder, newChunkSeal } from '../common/chunk-codec.js';
import { loadKeyRing, newMasterKeyText, type KeyRing } from '../common/master-key.js';
import { LocalChunkStore, chunkFilePath } from './chunk-store.js';
import type * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { EncodingReplicaSession, PeerEncodedWrites, ReplicaMemoryBudget, splitForwarded, trailerOf } from './encode-once.js';

const KIB = 1024;

/** What a head sends for `raw`: its payloads as encoded, then the head, then the trailer; and the stored file. */
async function forwardedOf(chunkId: string, raw: Buffer, keys?: KeyRing): Promise<{ wire: Buffer; file: Buffer }> {
  const encoder = new ChunkEncoder(chunkId, raw.length, keys ? await newChunkSeal(keys.current) : undefined);
  const payloads: Buffer[] = [];
  for (let at = 0; at < raw.length; at += 100_003) payloads.push(...(await encoder.push(raw.subarray(at, at + 100_003))));
  const done = await encoder.finish();
  payloads.push(...done.payloads);
  const wire = Buffer.concat([...payloads, done.head, trailerOf(done.head.length, crc32c(raw))]);
  return { wire, file: Buffer.concat([done.head, ...payloads]) };
}

async function receive(store: LocalChunkStore, chunkId: string, rawLength: number, wire: Buffer): Promise<unknown> {
  const writer = await store.createWriter(chunkId, rawLength, { encoded: true });
  const session = new EncodingReplicaSession(writer, [], 'dn-test', rawLength, store.keys);
  try {
    for (let at = 0; at < wire.length; at += 64 * KIB) await session.piece(wire.subarray(at, at + 64 * KIB));
    return await session.finish();
  } catch (err) {
    await session.abort();
    throw err;
  }
}

// Half compressible, half random: both lz4 and raw blocks.
const raw = Buffer.concat([Buffer.alloc(600 * KIB, 'strata encode once '), randomBytes(500 * KIB)]);

describe('encode-once replica', () => {
  const dirs: string[] = [];
  const stores: LocalChunkStore[] = [];
  const openStore = async (keys?: KeyRing) => {
    const dir = await mkdtemp(path.join(tmpdir(), 'strata-encode-once-'));
    dirs.push(dir);
    const store = await LocalChunkStore.open(dir, { keys });
    stores.push(store);
    return store;
  };
  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close();
    for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
  });

  for (const sealed of [false, true]) {
    it(`stores a forwarded ${sealed ? 'sealed' : 'plain'} encoding byte for byte, and it reads back`, async () => {
      const keys = sealed ? loadKeyRing({ masterKey: newMasterKeyText() }) : undefined;
      const { wire, file } = await forwardedOf('c-ok', raw, keys);
      const store = await openStore(keys);
      expect(await receive(store, 'c-ok', raw.length, wire)).toMatchObject({ storedOn: ['dn-test'], failed: [] });
      expect((await readFile(chunkFilePath(store.dir, 'c-ok'))).equals(file)).toBe(true);
      const pieces: Buffer[] = [];
      for await (const piece of store.read('c-ok', 0, raw.length)) pieces.push(piece);
      expect(Buffer.concat(pieces).equals(raw)).toBe(true);
    });
  }

  it('refuses an encoding with a byte flipped in a block, a head or a trailer, and stores nothing', async () => {
    const keys = loadKeyRing({ masterKey: newMasterKeyText() });
    const { wire } = await forwardedOf('c-bad', raw, keys);
    const store = await openStore(keys);
    const headAt = wire.length - 8 - wire.readUInt32LE(wire.length - 8);
    // In a compressed block, in a raw one (the last payload), in the head, in the trailer.
    for (const at of [10, headAt - 1000, headAt + 40, wire.length - 2]) {
      const flipped = Buffer.from(wire);
      flipped[at] ^= 0x01;
      const outcome = await receive(store, "c-bad", raw.length, flipped).then(() => "stored", (err) => err.kind);
      expect(`${at}: ${outcome}`).toBe(`${at}: Corrupt`);
      expect(await store.has('c-bad')).toBe(false);
    }
    // Too short (a lost message), or a raw length other than the encoding's.
    await expect(receive(store, 'c-bad', raw.length, wire.subarray(64 * KIB))).rejects.toMatchObject({ kind: 'Corrupt' });
    await expect(receive(store, 'c-bad', raw.length - 1, wire)).rejects.toMatchObject({ kind: 'Corrupt' });
    expect(await store.has('c-bad')).toBe(false);
    // The intact one is then accepted: the refusals left nothing behind.
    await receive(store, 'c-bad', raw.length, wire);
    expect(await store.has('c-bad')).toBe(true);
  });

  it('refuses a sealed encoding without its key, and a plain one on a keyed node', async () => {
    const keys = loadKeyRing({ masterKey: newMasterKeyText() });
    const other = loadKeyRing({ masterKey: newMasterKeyText() });
    const sealed = (await forwardedOf('c-key', raw, keys)).wire;
    const plain = (await forwardedOf('c-key', raw)).wire;
    await expect(receive(await openStore(), 'c-key', raw.length, sealed)).rejects.toMatchObject({ kind: 'KeyUnavailable' });
    await expect(receive(await openStore(other), 'c-key', raw.length, sealed)).rejects.toMatchObject({ kind: 'KeyUnavailable' });
    const keyed = await openStore(keys);
    await expect(receive(keyed, 'c-key', raw.length, plain)).rejects.toMatchObject({ kind: 'KeyUnavailable' });
    expect(await keyed.has('c-key')).toBe(false);
  });

  it('refuses more bytes than any encoding of the chunk can have, while they arrive', async () => {
    const store = await openStore();
    await expect(receive(store, 'c-big', 1000, randomBytes(64 * KIB))).rejects.toMatchObject({ kind: 'Invalid' });
    expect(await store.has('c-big')).toBe(false);
    expect(() => splitForwarded('c', Buffer.alloc(3))).toThrow(/no trailer/);
  });
});

describe('encode-once peers and budget', () => {
  /** A peer that answers NodeStatus with whatever `announced` is now, counting the asks. */
  const peer = () => {
    const state = { announced: 'sealed:k1', asks: 0 };
    const client = {
      NodeStatus: (_req: unknown, _opts: unknown, callback: (err: null, reply: unknown) => void) => {
        state.asks++;
        callback(null, { nodeId: 'dn9', encodedWrites: state.announced });
      },
    } as unknown as grpc.Client;
    return { state, client };
  };
  const pipeline = [{ nodeId: 'dn9', address: '127.0.0.1:9' }];
  const log = pino({ level: 'silent' });

  it('asks a peer again once it refused (forget), so a peer with another key gets raw bytes', async () => {
    const { state, client } = peer();
    const peers = new PeerEncodedWrites(() => client, log);
    expect(await peers.allAccept(pipeline, 'sealed:k1')).toBe(true);
    expect(await peers.allAccept(pipeline, 'sealed:k1')).toBe(true);
    expect(state.asks).toBe(1); // cached within its TTL
    state.announced = 'sealed:k2'; // restarted with another key
    peers.forget(['dn9']);
    expect(await peers.allAccept(pipeline, 'sealed:k1')).toBe(false);
    expect(state.asks).toBe(2);
  });

  it('asks a peer again once its answer is older than the TTL', async () => {
    const { state, client } = peer();
    const peers = new PeerEncodedWrites(() => client, log, 0);
    expect(await peers.allAccept(pipeline, 'sealed:k1')).toBe(true);
    state.announced = 'plain';
    expect(await peers.allAccept(pipeline, 'sealed:k1')).toBe(false);
  });

  it('reserves replica memory up to its budget, refuses Busy past it, and releases once', () => {
    const budget = new ReplicaMemoryBudget(100);
    const first = budget.reserve('a', 60);
    expect(() => budget.reserve('b', 60)).toThrow(expect.objectContaining({ kind: 'Busy' }));
    first();
    first(); // twice is once
    expect(budget.held).toBe(0);
    const second = budget.reserve('b', 60);
    expect(budget.held).toBe(60);
    second();
  });
});
