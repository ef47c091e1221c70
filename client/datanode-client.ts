// Byte transfer to and from data nodes: one cached channel per node address.
import * as grpc from '@grpc/grpc-js';
import { StrataError } from '../common/errors.js';
import { DataNodeChannels, fromServiceError } from '../common/grpc.js';

export interface NodeAddress {
  nodeId: string;
  address: string;
}

export interface WriteChunkResult {
  storedOn: string[];
  failed: string[];
  errors: string[];
}

/** Size of one data message on the wire: large enough to amortise framing, far below the limit. */
export const PIECE_BYTES = 1024 * 1024;

export class DataNodeClients {
  private readonly channels = new DataNodeChannels();

  constructor(private readonly options: { writeTimeoutMs: number; readTimeoutMs: number }) {}

  private client(address: string): grpc.Client {
    return this.channels.get(address);
  }

  /** Streams one chunk to pipeline[0], which forwards it along the rest of the pipeline. */
  writeChunk(pipeline: NodeAddress[], chunkId: string, data: Buffer): Promise<WriteChunkResult> {
    const [head, ...rest] = pipeline;
    return new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + this.options.writeTimeoutMs);
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      const call = (this.client(head.address) as any).WriteChunk({ deadline }, (err: grpc.ServiceError | null, reply: WriteChunkResult) => {
        if (err) reject(fromServiceError(err, `data node ${head.nodeId} (${head.address})`));
        else resolve({ storedOn: reply.storedOn ?? [], failed: reply.failed ?? [], errors: reply.errors ?? [] });
      }) as grpc.ClientWritableStream<unknown>;
      call.on('error', () => undefined); // reported through the callback
      const pieces = function* () {
        yield { header: { chunkId, length: data.length, pipeline: rest } };
        for (let offset = 0; offset < data.length; offset += PIECE_BYTES) yield { data: data.subarray(offset, offset + PIECE_BYTES) };
      };
      const iterator = pieces();
      const pump = () => {
        for (let next = iterator.next(); !next.done; next = iterator.next()) {
          if (!call.write(next.value)) {
            call.once('drain', pump);
            return;
          }
        }
        call.end();
      };
      pump();
    });
  }

  /**
   * Reads [offset, offset+length) of a chunk from one node; yields verified raw pieces. `tier`
   * (a ChunkLocation's, as the coordinator sent it) lets a node without a copy read it through.
   */
  async *readChunk(node: NodeAddress, chunkId: string, offset: number, length: number, tier?: unknown): AsyncGenerator<Buffer> {
    const deadline = new Date(Date.now() + this.options.readTimeoutMs);
    const request = { chunkId, offset, length, tier: tier ?? null };
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const call = (this.client(node.address) as any).ReadChunk(request, { deadline }) as grpc.ClientReadableStream<{ data: Buffer }>;
    try {
      for await (const reply of call) yield reply.data;
    } catch (err) {
      throw fromServiceError(err, `data node ${node.nodeId} (${node.address})`);
    } finally {
      call.cancel();
    }
  }

  close(): void {
    this.channels.close();
  }
}

export function describeWriteFailure(chunkId: string, result: WriteChunkResult, required: number): StrataError {
  const reasons = result.failed.map((node, i) => `${node}: ${result.errors[i] ?? 'failed'}`).join('; ');
  return new StrataError('Unavailable', `chunk ${chunkId}: ${result.storedOn.length} of ${required} required replicas stored${reasons ? ` (${reasons})` : ''}`);
}
