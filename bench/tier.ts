// Tiering benchmark (npm run bench:tier): prints `name value unit` lines, never asserted.
//
// One S3-protocol server (s3rver, its own process, loopback) and one strata cluster (1
// coordinator, 3 data nodes, embedded metadata, 8 MiB chunks). Same bytes both ways:
//   tier_upload_plain      a plain @aws-sdk/lib-storage Upload of the same SIZE bytes as one object
//                          (its defaults: 5 MiB parts, 4 at a time)
//   tier_upload_plain_objects  the same bytes as one object per 8 MiB (what a chunk is), 4 at a
//                          time (the job's concurrency): the stricter baseline
//   tier_upload_strata     the leader moving a SIZE file's chunks to the tier: from the policy
//                          being set until every chunk is tiered (upload, verify, commit, drop)
//   tier_upload_ratio      strata / plain (target: at least 0.8); tier_upload_ratio_objects too
//   first_byte_{s3,cache,datanode}  time to the first byte of a 4 KiB read: of a tiered chunk
//                          no node has cached, of the same chunk again once cached (the node's cache), and
//                          of a chunk on a data node; median of SAMPLES reads of distinct chunks.
// Env: SIZE_MIB (256), SAMPLES (9), TIER_CONCURRENCY (4).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import path from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Strata } from '../client/index.js';
import { CoordinatorClient } from '../client/coordinator-client.js';
import { S3ObjectTier } from '../common/object-tier.js';
import { startCluster } from '../test/harness/cluster.js';
import { freePort, tempDir } from '../test/harness/ports.js';
import { S3_ACCESS_KEY, S3_SECRET_KEY, s3Env } from '../test/harness/s3.js';

const MiB = 1024 * 1024;
const CHUNK = 8 * MiB;
const sizeMiB = Number(process.env.SIZE_MIB ?? 256);
const samples = Number(process.env.SAMPLES ?? 9);
const BUCKET = 'strata-bench';

const print = (name: string, value: number, unit: string) => console.log(`${name} ${Number(value.toFixed(value < 10 ? 2 : 1))} ${unit}`);
const log = (message: string) => console.error(`[bench:tier ${new Date().toISOString().slice(11, 19)}] ${message}`);
const seconds = (startNs: bigint) => Number(process.hrtime.bigint() - startNs) / 1e9;
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function startS3(dir: string): Promise<{ endpoint: string; process: ChildProcess }> {
  const port = await freePort();
  const bin = path.join(path.dirname(createRequire(import.meta.url).resolve('s3rver/package.json')), 'bin/s3rver.js');
  const child = spawn(process.execPath, [bin, '-d', dir, '-a', '127.0.0.1', '-p', String(port), '--silent', '--configure-bucket', BUCKET], { stdio: 'ignore' });
  const endpoint = `http://127.0.0.1:${port}`;
  const probe = new S3ObjectTier({ name: 'probe', endpoint, region: 'us-east-1', bucket: BUCKET, prefix: '', forcePathStyle: true, accessKeyId: S3_ACCESS_KEY, secretAccessKey: S3_SECRET_KEY, sessionToken: '' });
  for (let i = 0; ; i++) {
    try {
      await probe.check();
      break;
    } catch (err) {
      if (i > 100) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  probe.close();
  return { endpoint, process: child };
}

async function plainUpload(client: S3Client, data: Buffer): Promise<number> {
  const started = process.hrtime.bigint();
  await new Upload({ client, params: { Bucket: BUCKET, Key: 'plain/one-object', Body: data } }).done();
  return sizeMiB / seconds(started);
}

async function plainObjects(tier: S3ObjectTier, data: Buffer): Promise<number> {
  const started = process.hrtime.bigint();
  const keys = Array.from({ length: Math.ceil(data.length / CHUNK) }, (_, i) => i);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < keys.length; i = next++) await tier.put(`plain/${i}`, data.subarray(i * CHUNK, (i + 1) * CHUNK));
  };
  await Promise.all(Array.from({ length: 4 }, worker));
  return sizeMiB / seconds(started);
}

async function firstByteMs(client: Strata, file: string, offset: number): Promise<number> {
  const started = process.hrtime.bigint();
  const stream = await client.createReadStream(file, { start: offset, end: offset + 4095 });
  for await (const _piece of stream) {
    const ms = seconds(started) * 1000;
    stream.destroy();
    return ms;
  }
  throw new Error(`no bytes from ${file} at ${offset}`);
}

async function main(): Promise<void> {
  const dir = await tempDir('tierbench');
  const s3 = await startS3(path.join(dir.path, 's3'));
  const spec = `cold=s3://${BUCKET}/strata/?endpoint=${encodeURIComponent(s3.endpoint)}&path_style=true`;
  const cluster = await startCluster({
    datanodes: 3,
    chunkSize: '8MiB',
    env: s3Env,
    coordinatorArgs: ['--tier', spec, '--tier-interval-ms', '100', '--tier-concurrency', process.env.TIER_CONCURRENCY ?? '4'],
  });
  const client = cluster.client();
  const coordinator = new CoordinatorClient({ addresses: [cluster.coordinatorList.split(',')[0]!], callTimeoutMs: 30_000, failoverTimeoutMs: 30_000 });
  const s3Client = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: S3_ACCESS_KEY, secretAccessKey: S3_SECRET_KEY } });
  const plainTier = new S3ObjectTier({ name: 'plain', endpoint: s3.endpoint, region: 'us-east-1', bucket: BUCKET, prefix: '', forcePathStyle: true, accessKeyId: S3_ACCESS_KEY, secretAccessKey: S3_SECRET_KEY, sessionToken: '' });
  try {
    log(`writing ${sizeMiB} MiB of random bytes twice (one file to tier, one to keep local)`);
    const data = randomBytes(sizeMiB * MiB);
    await client.mkdir('/cold', { parents: true });
    await client.mkdir('/hot', { parents: true });
    await client.writeFile('/cold/big.bin', data);
    await client.writeFile('/hot/big.bin', data);

    log('plain lib-storage uploads of the same bytes');
    const plain = await plainUpload(s3Client, data);
    const plainPerChunk = await plainObjects(plainTier, data);

    log('tiering /cold');
    const chunks = Math.ceil(data.length / CHUNK);
    const started = process.hrtime.bigint();
    await coordinator.call('TierSet', { path: '/cold', policy: { tier: 'cold' } });
    for (;;) {
      const reply = await coordinator.call<{ chunksTiered: number | string }>('TierGet', { path: '/cold' });
      if (Number(reply.chunksTiered) >= chunks) break;
      if (seconds(started) > 1800) throw new Error('tiering did not finish within 30 min');
      await new Promise((r) => setTimeout(r, 50));
    }
    const strata = sizeMiB / seconds(started);
    print('tier_upload_strata', strata, 'MB/s');
    print('tier_upload_plain', plain, 'MB/s');
    print('tier_upload_plain_objects', plainPerChunk, 'MB/s');
    print('tier_upload_ratio', strata / plain, 'ratio');
    print('tier_upload_ratio_objects', strata / plainPerChunk, 'ratio');

    const offsets = Array.from({ length: Math.min(samples, chunks) }, (_, i) => i * CHUNK + 12_345);
    const fromS3: number[] = [];
    const fromCache: number[] = [];
    const fromNode: number[] = [];
    for (const offset of offsets) fromS3.push(await firstByteMs(client, '/cold/big.bin', offset));
    // A first read answers from ranged GETs while the whole object is fetched into the cache in
    // the background; let those fetches land, so the next pass measures cache hits.
    await new Promise((r) => setTimeout(r, 3000));
    for (const offset of offsets) fromCache.push(await firstByteMs(client, '/cold/big.bin', offset));
    for (const offset of offsets) fromNode.push(await firstByteMs(client, '/hot/big.bin', offset));
    print('first_byte_s3', median(fromS3), 'ms');
    print('first_byte_cache', median(fromCache), 'ms');
    print('first_byte_datanode', median(fromNode), 'ms');
    const back = await client.readFile('/cold/big.bin');
    if (!back.equals(data)) throw new Error('tiered file read back different bytes');
  } finally {
    plainTier.close();
    s3Client.destroy();
    coordinator.close();
    await cluster.stop();
    s3.process.kill('SIGTERM');
    await dir.cleanup();
  }
}

await main();
