/** What a data node reports about itself in every heartbeat (proto NodeInfo). */
export interface NodeInfo {
  nodeId: string;
  address: string;
  capacityBytes: number;
  usedBytes: number;
  freeBytes: number;
  chunks: number;
  zone: string;
}
