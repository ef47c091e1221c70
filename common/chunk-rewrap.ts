// Master key rotation, one chunk: its encoding made over under the ring's writing key. A version 3
// chunk keeps every block byte for byte and gets a new key section (the same data key, wrapped by
// the new master key): its blocks' tags do not cover that section (FORMAT.md). A version 2 chunk's
// tags do, and a data key must never seal the same block twice under different headers (GCM nonce
// reuse), so it is sealed again whole, under a fresh data key, as version 3. Either way the new
// encoding is verified in full with the ring before anyone may store it.
import { crc32c } from '@node-rs/crc32';
import { ChunkEncoder, ChunkReader, SEALED_FORMAT_VERSION, bufferSource, newChunkSeal, readChunkHead } from './chunk-codec.js';
import { keyUnavailable, type KeyRing } from './master-key.js';

/** plain: not encrypted; current: already under the writing key; rewrapped: new key section; resealed: a version 2 chunk sealed again. */
export type RewrapOutcome = 'plain' | 'current' | 'rewrapped' | 'resealed';

export async function rewrapEncoding(chunkId: string, encoding: Buffer, keys: KeyRing, location: string): Promise<{ outcome: RewrapOutcome; encoding?: Buffer }> {
  const source = bufferSource(encoding, location);
  const head = await readChunkHead(chunkId, source);
  const { keyId, rawLengthBytes } = head.layout;
  if (!keyId || !head.wrappedKey) return { outcome: 'plain' };
  const writer = keys.current;
  if (keyId === writer.keyId) return { outcome: 'current' };
  const what = `chunk ${chunkId} on ${location}`;
  let next: Buffer;
  let outcome: RewrapOutcome;
  if (head.version === SEALED_FORMAT_VERSION) {
    const dataKey = await keys.get(keyId, what).unwrap(head.wrappedKey);
    const wrappedKey = await writer.wrap(dataKey);
    const id = Buffer.from(writer.keyId, 'latin1');
    if (id.length > 64 || wrappedKey.length < 1 || wrappedKey.length > 512) throw keyUnavailable(`${what}: master key '${writer.keyId}' gives a key section out of bounds`);
    // head.aad is the header up to the key section in version 3.
    const header = Buffer.concat([head.aad, Buffer.of(id.length), id, u16(wrappedKey.length), wrappedKey]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32LE(crc32c(header), 0);
    next = Buffer.concat([header, crc, encoding.subarray(head.headerBytes)]); // the table and every block as they were
    outcome = 'rewrapped';
  } else {
    const reader = await ChunkReader.open(chunkId, source, keys);
    const encoder = new ChunkEncoder(chunkId, rawLengthBytes, await newChunkSeal(writer));
    const payloads: Buffer[] = [];
    for await (const piece of reader.read(0, rawLengthBytes)) payloads.push(...(await encoder.push(piece)));
    const done = await encoder.finish();
    next = Buffer.concat([done.head, ...payloads, ...done.payloads]);
    outcome = 'resealed';
  }
  const check = await ChunkReader.open(chunkId, bufferSource(next, location), keys);
  for await (const _block of check.read(0, rawLengthBytes)); // every block's crc, tag and raw crc
  return { outcome, encoding: next };
}

function u16(value: number): Buffer {
  const bytes = Buffer.alloc(2);
  bytes.writeUInt16LE(value, 0);
  return bytes;
}

/** One page of a master key rotation on one data node (`strata keys rotate-master`). */
export interface RewrapPage {
  /** The node's newest master key, which wraps the data keys now ('' = the node has none). */
  keyId: string;
  checked: number;
  rewrapped: number;
  resealed: number;
  current: number;
  plain: number;
  failed: number;
  failures: string[];
  nextAfter: string;
  done: boolean;
}
