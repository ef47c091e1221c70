/** What a data node reports about itself in every heartbeat (proto NodeInfo). */
export interface NodeInfo {
  nodeId: string;
  address: string;
  /** host:port of the byte path (chunk bytes without gRPC); '' or absent: none, use gRPC. */
  dataAddress?: string;
  capacityBytes: number;
  usedBytes: number;
  freeBytes: number;
  chunks: number;
  zone: string;
  /** Chunks found corrupt and quarantined here, until DeleteChunk clears each. */
  corruptChunks?: string[];
  scrub?: ScrubStatus;
  tierCache?: TierCacheStatus;
  /** Encode-once writes this node stores: 'plain' or 'sealed:<key id>'; '' or absent: none (datanode/encode-once.ts). */
  encodedWrites?: string;
}

/** The cache of chunks read through from object tiers (proto TierCacheStatus). */
export interface TierCacheStatus {
  bytes: number;
  budgetBytes: number;
  chunks: number;
  hits: number;
  misses: number; // reads that had to fetch from the tier
  fetchErrors: number; // tier unreachable, or an object failed its checks
}

/** Background scrub counters since the node started (proto ScrubStatus). */
export interface ScrubStatus {
  passes: number; // full passes completed
  chunksChecked: number;
  bytesChecked: number; // raw (decompressed) bytes verified
  corruptFound: number;
  lastPassMs: number; // when the last full pass ended; 0 = none yet
}
