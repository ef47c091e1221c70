// The SDK's public surface: deliberately small.
export { Strata, type ChunkGrant, type ChunkPlacement, type ConnectOptions, type ListOptions } from './strata.js';
export type { TokenProvider } from './auth/token-source.js';
export { storedLoginTokens } from './auth/token-sources.js';
export type { AckPolicy, AttrChanges, DirEntry, FileStat, FileType, FsStats, QuotaInfo, SpecialFileType, HealthReport, NodeStatus, ReadOptions, RewrapPage, WriteOptions } from './types.js';
export type { TierInfo, TierPathInfo, TierPolicy, TierRecallResult, TierStatusReport } from './tiering.js';
export type { CoveredItem, InodeOps, InvalidateEvent, Owner } from './inodes.js';
export { StrataError, type ErrorKind } from '../common/errors.js';
export type { TlsFiles } from '../common/tls.js';
