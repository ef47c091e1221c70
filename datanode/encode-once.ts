// Encode once at the head: the first data node of a write encodes (compresses, and seals when
// keyed) the chunk once and streams its stored encoding to the other replicas, which check it and
// store it byte for byte: LZ4 and AES run once per chunk, not once per replica.
//
// On the wire (WriteChunkHeader.encoded), the data is the encoding's payloads in file order as
// the head encodes them, then its head (FORMAT.md: what goes at offset 0), then an 8-byte
// trailer: u32 LE the head's size, u32 LE the crc32c of the raw bytes the head received. A
// replica holds it in memory (at most maxEncodingBytes), checks it (checkEncodingStored) and only
// then ends its own downstreams and commits. A head uses this only when every node of the
// pipeline announces (NodeInfo.encodedWrites) what the head itself would write: a node that
// predates it, or with another master key or none, gets raw bytes as before.
import type * as grpc from '@grpc/grpc-js';
import { crc32c } from '@node-rs/crc32';
import { MAX_CHUNK_BYTES, maxEncodingBytes } from '../common/chunk-codec.js';
import { StrataError, invalid } from '../common/errors.js';
import { callUnary } from '../common/grpc.js';
import { MAX_DATA_FRAME_BYTES } from '../common/byte-frames.js';
import type { KeyRing } from '../common/master-key.js';
import type { Logger } from '../common/log.js';
import type { ChunkLayout } from '../common/chunk-codec.js';
import type { ChunkWriter } from './chunk-writer.js';
import { checkEncodingStored } from './encoding-check.js';
import { gatherReply, type Downstream, type NodeAddress, type WriteChunkReply } from './forward.js';

export const ENCODED_TRAILER_BYTES = 8;

/** STRATA_ENCODE_ONCE=off: every replica encodes its own copy from raw bytes (to compare, or to rule it out). */
export const ENCODE_ONCE_ENABLED = (process.env.STRATA_ENCODE_ONCE ?? 'on') !== 'off';

/** What this node announces, and would write: 'plain', or 'sealed:<the key it seals with>'. */
export function encodedWritesOf(keys: KeyRing | undefined): string {
  return keys ? `sealed:${keys.current.keyId}` : 'plain';
}

const STATUS_TIMEOUT_MS = 2_000;
/** A peer whose status could not be learnt gets raw bytes; asked again after this. */
const UNKNOWN_RETRY_MS = 10_000;
/** A peer's answer is asked again after this: it may have restarted with another key, or none. */
export const KNOWN_TTL_MS = 60_000;

/**
 * What all encode-once replica sessions of this node may hold in memory at once (each holds its
 * whole encoding until finish): a few chunks' worth. Anyone with a write grant can open such a
 * write, so without this a client could run the node out of memory; past it a write is refused
 * Busy, and the client re-places that replica (client/writer.ts) as for any failed node.
 */
export const ENCODED_REPLICA_BUDGET_BYTES = 4 * (MAX_CHUNK_BYTES + 2 * 1024 * 1024);

/** Bytes reserved by the encode-once replica sessions open on this node, up to a fixed budget. */
export class ReplicaMemoryBudget {
  private heldBytes = 0;

  constructor(readonly budgetBytes: number = ENCODED_REPLICA_BUDGET_BYTES) {}

  get held(): number {
    return this.heldBytes;
  }

  /** Reserves `bytes` (up front, the most the write may hold) or throws Busy; the result releases it, once. */
  reserve(chunkId: string, bytes: number): () => void {
    if (this.heldBytes + bytes > this.budgetBytes) {
      throw new StrataError('Busy', `chunk ${chunkId}: this node already holds ${this.heldBytes} of its ${this.budgetBytes} bytes for encode-once writes; try again later`);
    }
    this.heldBytes += bytes;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.heldBytes -= bytes;
    };
  }
}

/** The most an encode-once replica write of `rawLength` bytes may hold: its encoding and trailer. */
export function replicaHoldBytes(chunkId: string, rawLength: number): number {
  return maxEncodingBytes(chunkId, rawLength) + ENCODED_TRAILER_BYTES;
}

/** What each peer announced, asked once (NodeStatus) and cached; unknown = raw bytes. */
export class PeerEncodedWrites {
  private readonly known = new Map<string, { announced: Promise<string>; untilMs: number }>();

  constructor(
    private readonly channel: (address: string) => grpc.Client,
    private readonly log: Logger,
    private readonly knownTtlMs: number = KNOWN_TTL_MS,
  ) {}

  /**
   * Forgets what these peers announced (e.g. they refused an encode-once write: restarted with
   * another key?), so the next write asks again and, until they answer, forwards raw bytes.
   */
  forget(nodeIds: Iterable<string>): void {
    const gone = new Set(nodeIds);
    for (const key of this.known.keys()) if (gone.has(key.slice(0, key.indexOf('@')))) this.known.delete(key);
  }

  /** Whether every node of `pipeline` stores an encode-once write of what this node writes. */
  async allAccept(pipeline: NodeAddress[], mine: string): Promise<boolean> {
    if (!ENCODE_ONCE_ENABLED || pipeline.length === 0) return false;
    const announced = await Promise.all(pipeline.map((node) => this.announced(node, mine)));
    return announced.every((mode) => mode === mine);
  }

  private announced(node: NodeAddress, mine: string): Promise<string> {
    const key = `${node.nodeId}@${node.address}`;
    const cached = this.known.get(key);
    if (cached && Date.now() < cached.untilMs) return cached.announced;
    const entry = { announced: Promise.resolve(''), untilMs: Date.now() + this.knownTtlMs };
    // Inside then(): an address the channel refuses (unparsable) is an unknown peer, not a failed write.
    entry.announced = Promise.resolve()
      .then(() => callUnary<{ nodeId?: string; encodedWrites?: string }>(this.channel(node.address), 'NodeStatus', {}, STATUS_TIMEOUT_MS, node.address))
      .then(
      (info) => {
        const announced = info.nodeId === node.nodeId ? (info.encodedWrites ?? '') : '';
        // Once per peer: why its writes go raw (an older node, another master key or none).
        if (announced !== mine) this.log.info({ peer: node.nodeId, announced, mine }, 'peer takes no encode-once writes from this node: forwarding raw bytes to it');
        return announced;
      },
      (err) => {
        entry.untilMs = Date.now() + UNKNOWN_RETRY_MS; // down now? raw bytes, ask again later
        this.log.info({ peer: node.nodeId, err: (err as Error).message }, 'peer status unknown: forwarding raw bytes to it');
        return '';
      },
    );
    this.known.set(key, entry);
    return entry.announced;
  }
}

export interface EncodedSession {
  readonly chunkId: string;
  piece(data: Buffer): Promise<void>;
  finish(): Promise<WriteChunkReply>;
  abort(): Promise<void>;
}

/** Local piece writes (each ≤ 4 MiB raw) allowed to queue behind encoding and the network. */
const MAX_PENDING_LOCAL_WRITES = 4;

/** The head of an encode-once write: encodes into its writer and forwards what the writer makes. */
export class EncodingHeadSession implements EncodedSession {
  private readonly pendingLocal: Promise<void>[] = [];
  /** Sends in file order; never rejects (a failed hop settles its outcome instead). */
  private forwarding: Promise<void> = Promise.resolve();
  private rawCrc = 0;

  /** `onFailed`: the nodes whose part failed, told after the reply (to forget what they announced). */
  constructor(
    private readonly writer: ChunkWriter,
    private readonly downstreams: Downstream[],
    private readonly nodeId: string,
    private readonly onFailed: (nodeIds: string[]) => void = () => undefined,
  ) {
    writer.tap((payloads, head) => this.forward(payloads, head));
  }

  get chunkId(): string {
    return this.writer.chunkId;
  }

  async piece(data: Buffer): Promise<void> {
    // Over the bytes as received, apart from the encoder's per-block crcs: the replicas check
    // that the table's raw crcs add up to this.
    this.rawCrc = crc32c(data, this.rawCrc);
    const local = this.writer.write(data); // taps its payloads once encoded
    local.catch(() => undefined); // observed below or in finish()
    this.pendingLocal.push(local);
    // Encoding this piece overlaps forwarding the previous ones; the network paces the sender.
    await this.forwarding;
    while (this.pendingLocal.length > MAX_PENDING_LOCAL_WRITES) await this.pendingLocal.shift();
  }

  async finish(): Promise<WriteChunkReply> {
    try {
      await Promise.all(this.pendingLocal.splice(0));
    } catch (err) {
      this.cancelDownstreams();
      throw err;
    }
    // commit() taps the head before its own fsync: the replicas' checks and fsyncs overlap it.
    const reply = await gatherReply(this.nodeId, this.writer.commit(), this.downstreams);
    // A refusal (KeyUnavailable after a restart with another key, Invalid from an older node, or
    // just down): ask them again before the next encode-once write instead of trusting the cache.
    if (reply.failed.length > 0) this.onFailed(reply.failed);
    return reply;
  }

  async abort(): Promise<void> {
    this.cancelDownstreams();
    await this.writer.abort();
  }

  private forward(payloads: Buffer[], head?: Buffer): void {
    const messages = coalesce(head ? [...payloads, head, trailerOf(head.length, this.rawCrc)] : payloads);
    this.forwarding = this.forwarding.then(async () => {
      for (const message of messages) await Promise.all(this.downstreams.map((downstream) => downstream.send(message)));
      if (head) for (const downstream of this.downstreams) downstream.end();
    });
  }

  private cancelDownstreams(): void {
    for (const downstream of this.downstreams) downstream.cancel();
  }
}

/** A replica of an encode-once write: holds the encoding as it passes on, checks it, stores it as it is. */
export class EncodingReplicaSession implements EncodedSession {
  private readonly parts: Buffer[] = [];
  private receivedBytes = 0;
  private readonly maxBytes: number;

  constructor(
    private readonly writer: ChunkWriter,
    private readonly downstreams: Downstream[],
    private readonly nodeId: string,
    private readonly rawLength: number,
    private readonly keys: KeyRing | undefined,
    /** Returns this session's reservation (ReplicaMemoryBudget) once it holds nothing. */
    private readonly release: () => void = () => undefined,
  ) {
    this.maxBytes = replicaHoldBytes(writer.chunkId, rawLength);
  }

  get chunkId(): string {
    return this.writer.chunkId;
  }

  async piece(data: Buffer): Promise<void> {
    this.receivedBytes += data.length;
    if (this.receivedBytes > this.maxBytes) {
      throw invalid(`chunk ${this.chunkId}: forwarded encoding exceeds the ${this.maxBytes} bytes a ${this.rawLength}-byte chunk can take`);
    }
    this.parts.push(data);
    await Promise.all(this.downstreams.map((downstream) => downstream.send(data)));
  }

  async finish(): Promise<WriteChunkReply> {
    let encoding: Buffer;
    let layout: ChunkLayout;
    try {
      const forwarded = splitForwarded(this.chunkId, Buffer.concat(this.parts, this.receivedBytes));
      this.parts.length = 0;
      encoding = forwarded.encoding;
      const from = `the encoding forwarded to ${this.nodeId}`;
      layout = await checkEncodingStored(encoding, { chunkId: this.chunkId, length: this.rawLength, crc32c: forwarded.rawCrc, from });
      checkSealing(this.chunkId, layout, this.keys);
    } catch (err) {
      // Refused here: nothing goes on to nodes behind this one either.
      this.cancelDownstreams();
      this.release();
      throw err;
    }
    for (const downstream of this.downstreams) downstream.end();
    try {
      return await gatherReply(this.nodeId, this.writer.commitEncoding(encoding, layout.blocks.length), this.downstreams);
    } finally {
      this.release();
    }
  }

  async abort(): Promise<void> {
    this.parts.length = 0;
    this.release();
    this.cancelDownstreams();
    await this.writer.abort();
  }

  private cancelDownstreams(): void {
    for (const downstream of this.downstreams) downstream.cancel();
  }
}

export function trailerOf(headBytes: number, rawCrc: number): Buffer {
  const trailer = Buffer.alloc(ENCODED_TRAILER_BYTES);
  trailer.writeUInt32LE(headBytes, 0);
  trailer.writeUInt32LE(rawCrc >>> 0, 4);
  return trailer;
}

/** The forwarded bytes (payloads, head, trailer) as a stored encoding (head first) and the raw crc. */
export function splitForwarded(chunkId: string, bytes: Buffer): { encoding: Buffer; rawCrc: number } {
  if (bytes.length < ENCODED_TRAILER_BYTES) throw new StrataError('Corrupt', `chunk ${chunkId}: forwarded encoding of ${bytes.length} bytes has no trailer`);
  const trailerAt = bytes.length - ENCODED_TRAILER_BYTES;
  const headBytes = bytes.readUInt32LE(trailerAt);
  if (headBytes > trailerAt) throw new StrataError('Corrupt', `chunk ${chunkId}: forwarded encoding's trailer names a ${headBytes}-byte head in ${trailerAt} bytes`);
  const headAt = trailerAt - headBytes;
  const encoding = Buffer.concat([bytes.subarray(headAt, trailerAt), bytes.subarray(0, headAt)], trailerAt);
  return { encoding, rawCrc: bytes.readUInt32LE(trailerAt + 4) };
}

/**
 * A keyed node stores only chunks sealed under a key it holds (it must read them back), and an
 * unkeyed one only plain chunks: the head checks the same before it forwards (encodedWrites).
 */
function checkSealing(chunkId: string, layout: ChunkLayout, keys: KeyRing | undefined): void {
  if (!layout.keyId && keys) throw new StrataError('KeyUnavailable', `chunk ${chunkId}: a keyed node does not store a forwarded encoding in clear`);
  if (layout.keyId && !keys) throw new StrataError('KeyUnavailable', `chunk ${chunkId}: forwarded encoding is sealed with master key '${layout.keyId}', but this node has no master key`);
  if (layout.keyId && keys) keys.get(layout.keyId, `chunk ${chunkId}`);
}

/** Small payloads (compressed blocks) in fewer messages: each within a data frame's limit. */
function coalesce(buffers: Buffer[]): Buffer[] {
  const messages: Buffer[] = [];
  let group: Buffer[] = [];
  let groupBytes = 0;
  const flush = () => {
    if (group.length > 0) messages.push(group.length === 1 ? group[0]! : Buffer.concat(group, groupBytes));
    group = [];
    groupBytes = 0;
  };
  for (const buffer of buffers) {
    if (groupBytes + buffer.length > MAX_DATA_FRAME_BYTES) flush();
    group.push(buffer);
    groupBytes += buffer.length;
  }
  flush();
  return messages;
}
