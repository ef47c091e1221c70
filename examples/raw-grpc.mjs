// Talks to strata with nothing but the .proto and a generic gRPC library: lists the root
// directory, then writes and reads back a small file by hand (allocate, stream, commit, read).
// Usage: node examples/raw-grpc.mjs [coordinator host:port]
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const definition = protoLoader.loadSync(new URL('../proto/strata.proto', import.meta.url).pathname, { longs: Number, enums: String, defaults: true, oneofs: true });
const { strata } = grpc.loadPackageDefinition(definition);
const target = process.argv[2] ?? '127.0.0.1:7400';
const coordinator = new strata.v1.Coordinator(target, grpc.credentials.createInsecure());
const call = (client, method, request) =>
  new Promise((resolve, reject) => client[method](request, (err, reply) => (err ? reject(err) : resolve(reply))));

const { entries } = await call(coordinator, 'ReadDir', { path: '/' });
console.log('/ holds:', entries.map((e) => `${e.name} (${e.type})`).join(', ') || '(nothing)');

const data = Buffer.from('written over raw gRPC\n');
const { attr } = await call(coordinator, 'Create', { path: '/raw-grpc.txt', truncate: true });
const { chunkId, pipeline } = await call(coordinator, 'AllocateChunk', { ino: attr.ino, index: 0 });
const [head, ...rest] = pipeline;
const dataNode = new strata.v1.DataNode(head.address, grpc.credentials.createInsecure());
const written = await new Promise((resolve, reject) => {
  const stream = dataNode.WriteChunk((err, reply) => (err ? reject(err) : resolve(reply)));
  stream.write({ header: { chunkId, length: data.length, pipeline: rest } });
  stream.write({ data });
  stream.end();
});
await call(coordinator, 'CommitChunk', { ino: attr.ino, index: 0, chunkId, length: data.length, nodes: written.storedOn });
console.log(`stored chunk ${chunkId} on ${written.storedOn.join(', ')}`);

const { chunks } = await call(coordinator, 'GetChunks', { ino: attr.ino });
const pieces = [];
for await (const reply of new strata.v1.DataNode(chunks[0].replicas[0].address, grpc.credentials.createInsecure()).ReadChunk({ chunkId: chunks[0].chunkId })) pieces.push(reply.data);
process.stdout.write(`read back: ${Buffer.concat(pieces)}`);
process.exit(0);
