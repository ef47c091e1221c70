// A bounded fuzz run at every edge a client can reach, on a real cluster: every method of every
// gRPC service of both roles (enumerated from proto/strata.proto's reflection), the coordinator's
// framed-TCP session port and the data nodes' byte path port. Each gets random bytes as its raw
// message and well-formed messages with hostile field values (test/harness/fuzz-values.ts).
// Asserted: every call ends with a status within its deadline (no hang), no handler fails with an
// unexpected error (INTERNAL from our own code, UNKNOWN), every process lives on and serves, and
// what was stored before reads back byte-identical: the namespace outside /fuzz, every file's
// bytes, every chunk each node held. Mutating requests act only under /fuzz and its inodes.
// Cases are drawn with a fixed seed (FUZZ_SEED to change it, FUZZ_CASES per method and mode).
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import protobuf from 'protobufjs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startCluster, type TestCluster } from './harness/cluster.js';
import { confine, escapesScratch, extremeMessages, messageArb, rawMessageArb, type Confinement } from './harness/fuzz-values.js';
import { strataProto } from '../common/grpc.js';
import { FRAME_HEADER_BYTES, FrameParser, FrameType, frameOf } from '../common/byte-frames.js';
import { SESSION_FRAME_HEADER_BYTES, SessionFrameKind, SessionFrameParser, messageFrame } from '../common/session-frames.js';
import type { QuotaInfo, Strata } from '../client/index.js';

const SEED = Number(process.env.FUZZ_SEED ?? 1307);
const CASES = Number(process.env.FUZZ_CASES ?? 12);
const CALL_DEADLINE_MS = 5_000;
/** The coordinators' --lease-ttl-ms default: how long a silent lease holder can hold a change up. */
const LEASE_TTL_MS = 5_000;
const PARALLEL_CALLS = 6;
const SCRATCH = '/fuzz';

const root = protobuf.loadSync(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../proto/strata.proto'));
root.resolveAll();

/** Methods that change nothing a later read could see (so they may aim at the protected data). */
const READ_ONLY = new Set([
  'Coordinator.Stat', 'Coordinator.ReadDir', 'Coordinator.GetChunks', 'Coordinator.ListNodes', 'Coordinator.StatFs', 'Coordinator.Health',
  'Coordinator.TierGet', 'Coordinator.TierStatus', 'Coordinator.SessionEndpoint', 'Coordinator.QuotaGet', 'Coordinator.QuotaList', 'LeasePeers.Stats',
  'DataNode.ReadChunk', 'DataNode.StatChunk', 'DataNode.NodeStatus', 'DataNode.ListChunks',
]);
/** Data node methods that need a chunk grant (common/chunk-grants.ts): a fuzzed call never has one. */
const GRANTED_METHODS = new Set(['DataNode.ReadChunk', 'DataNode.WriteChunk', 'DataNode.DeleteChunk', 'DataNode.ReplicateChunk', 'DataNode.TierUpload']);
const READ_ONLY_SESSION_OPS = new Set(['stat', 'readDir', 'getChunks', 'lookup', 'getAttr', 'readDirPlus', 'readlink', 'leasedLookup', 'leasedGetAttr', 'leasedReadDirPlus', 'leaseRenew', 'leaseAck']);

interface Outcome {
  target: string;
  mode: string;
  code: number | 'hang' | 'closed';
  details: string;
  strataKind?: string;
}

/** Ends with a status or a clean close; anything else (a hang, a crash inside a handler) is a finding. */
function isFinding(outcome: Outcome): boolean {
  if (outcome.code === 'hang' || outcome.code === grpc.status.UNKNOWN || outcome.code === grpc.status.DEADLINE_EXCEEDED) return true;
  if (outcome.code === grpc.status.INTERNAL) return !/^Error deserializing request|^Failed to parse|^Received message larger/.test(outcome.details);
  return false;
}

/** Runs `jobs` with at most `limit` at once. */
async function pool<T>(jobs: (() => Promise<T>)[], limit: number): Promise<T[]> {
  const results: T[] = new Array(jobs.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < jobs.length) {
        const i = next++;
        results[i] = await jobs[i]();
      }
    }),
  );
  return results;
}

const identity = (b: Buffer) => b;

/** One gRPC call of any shape with raw messages; resolves with its status, never rejects. */
function rawCall(client: grpc.Client, method: protobuf.Method, fullPath: string, messages: Buffer[]): Promise<{ code: number | 'hang'; details: string; kind?: string }> {
  return new Promise((resolve) => {
    const deadline = Date.now() + CALL_DEADLINE_MS;
    let settled = false;
    const done = (err: grpc.ServiceError | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(guard);
      resolve({ code: err ? err.code : grpc.status.OK, details: err?.details ?? '', kind: err?.metadata?.get('strata-error')?.[0] as string | undefined });
    };
    // The client's own deadline ends the call; this guard only catches a client-side bug.
    const guard = setTimeout(() => {
      settled = true;
      resolve({ code: 'hang', details: 'no status 2 s past the deadline' });
    }, CALL_DEADLINE_MS + 2_000);
    const options = { deadline };
    if (!method.requestStream && !method.responseStream) {
      client.makeUnaryRequest(fullPath, identity, identity, messages[0], new grpc.Metadata(), options, (err) => done(err));
    } else if (method.requestStream && !method.responseStream) {
      const call = client.makeClientStreamRequest(fullPath, identity, identity, new grpc.Metadata(), options, (err) => done(err));
      for (const message of messages) call.write(message);
      call.end();
    } else {
      const call = method.requestStream
        ? client.makeBidiStreamRequest(fullPath, identity, identity, new grpc.Metadata(), options)
        : client.makeServerStreamRequest(fullPath, identity, identity, messages[0], new grpc.Metadata(), options);
      call.on('data', () => undefined);
      call.on('error', (err: grpc.ServiceError) => done(err));
      call.on('status', (status: grpc.StatusObject) => done(status.code === grpc.status.OK ? null : ({ ...status, message: status.details } as unknown as grpc.ServiceError)));
      if (method.requestStream) {
        const duplex = call as grpc.ClientDuplexStream<Buffer, Buffer>;
        for (const message of messages) duplex.write(message);
        duplex.end();
      }
    }
  });
}

interface Snapshot {
  entries: Map<string, string>;
  inos: Set<number>;
}

/** Every entry outside scratch with what a change would move (mtime and ctime of directories aside). */
async function snapshot(client: Strata): Promise<Snapshot> {
  const entries = new Map<string, string>();
  const inos = new Set<number>([1]);
  const walk = async (dir: string) => {
    for (const entry of await client.readdir(dir)) {
      const full = dir === '/' ? `/${entry.name}` : `${dir}/${entry.name}`;
      if (full === SCRATCH) continue;
      const stat = await client.stat(full);
      inos.add(stat.ino);
      const { ino, type, size, mode, uid, gid, nlink, target } = stat as unknown as Record<string, unknown>;
      entries.set(full, JSON.stringify({ ino, type, size, mode, uid, gid, nlink, target, mtime: type === 'dir' ? undefined : (stat as unknown as { mtimeMs: number }).mtimeMs }));
      if (stat.type === 'dir') await walk(full);
    }
  };
  await walk('/');
  return { entries, inos };
}

/** chunk id -> length for every chunk a data node serves. */
function listChunks(address: string): Promise<Map<string, number>> {
  const client = new strataProto.DataNode(address, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    const chunks = new Map<string, number>();
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const call = (client as any).ListChunks({}, { deadline: Date.now() + 10_000 }) as grpc.ClientReadableStream<{ chunks: { chunkId: string; length: number }[] }>;
    call.on('data', (reply) => reply.chunks.forEach((c) => chunks.set(c.chunkId, Number(c.length))));
    call.on('error', (err) => (client.close(), reject(err)));
    call.on('end', () => (client.close(), resolve(chunks)));
  });
}

/** Writes `bytes` to a TCP port, half-closes, and waits for the server to close; reads what came back. */
function tcpExchange(address: string, bytes: Buffer[], deadlineMs = CALL_DEADLINE_MS): Promise<{ closed: boolean; received: Buffer }> {
  const at = address.lastIndexOf(':');
  return new Promise((resolve) => {
    const socket = net.connect({ host: address.slice(0, at), port: Number(address.slice(at + 1)) });
    const received: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ closed: false, received: Buffer.concat(received) });
    }, deadlineMs);
    socket.on('data', (d) => received.push(d));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ closed: true, received: Buffer.concat(received) });
    });
    socket.on('connect', () => {
      for (const b of bytes) socket.write(b);
      socket.end();
    });
  });
}

describe('fuzz: hostile messages at every edge', () => {
  let cluster: TestCluster;
  let client: Strata;
  const files = new Map<string, Buffer>([
    ['/keep/big.bin', randomBytes(1024 * 1024 + 4321)],
    ['/keep/small.txt', Buffer.from('small and inline\n')],
    ['/keep/sub/deep/empty', Buffer.alloc(0)],
    ['/top.bin', randomBytes(70_000)],
  ]);
  let before: Snapshot;
  let chunksBefore: Map<string, number>[];
  let where: Confinement;
  let scratchInos: number[];
  let keepQuota: QuotaInfo;
  const outcomes: Outcome[] = [];

  beforeAll(async () => {
    // On etcd, so the coordinators' LeasePeers links are served (the embedded engine has none).
    cluster = await startCluster({ meta: 'etcd', datanodes: 2, replication: 2, chunkSize: '1MiB' });
    client = cluster.client();
    for (const [file, bytes] of files) {
      await client.mkdir(path.posix.dirname(file), { parents: true });
      await client.writeFile(file, bytes);
    }
    await client.symlink('big.bin', '/keep/link');
    // A quota outside scratch: every change the fuzz makes then walks the quota sets, and none may move this one.
    keepQuota = await client.quotaSet('/keep', { bytes: 64 * 1024 * 1024, files: 100 });
    await client.mkdir(`${SCRATCH}/x`, { parents: true });
    const scratch = await client.stat(SCRATCH);
    // A file of the scratch tree for the ops by inode (chunk commits, setattr, links) to reach.
    const scratchFile = await client.writeFile(`${SCRATCH}/x/file.bin`, randomBytes(3000));
    scratchInos = [scratch.ino, scratchFile.ino, (await client.stat(`${SCRATCH}/x`)).ino];
    before = await snapshot(client);
    chunksBefore = await Promise.all(cluster.datanodes.map((n) => listChunks(n.address)));
    where = { scratchDir: SCRATCH, protectedInos: before.inos, scratchIno: scratch.ino };
  });
  afterAll(async () => {
    const findings = outcomes.filter(isFinding);
    if (findings.length > 0) console.log('fuzz findings', JSON.stringify(findings.slice(0, 30), null, 1));
    if (process.env.FUZZ_VERBOSE) {
      const seen = new Map<string, number>();
      for (const o of outcomes) {
        const key = `${o.target} ${o.mode} ${o.code} ${o.strataKind ?? ''} ${o.details.slice(0, 120)}`;
        seen.set(key, (seen.get(key) ?? 0) + 1);
      }
      console.log([...seen].sort().map(([k, n]) => `${n}\t${k}`).join('\n'));
    }
    await cluster?.stop();
  });

  test('every gRPC method of both roles: random and hostile messages get a status', async () => {
    const targets: { service: string; address: string }[] = [
      { service: 'Coordinator', address: cluster.coordinators[0].address },
      { service: 'LeasePeers', address: cluster.coordinators[0].address },
      { service: 'DataNode', address: cluster.datanodes[0].address },
    ];
    let cases = 0;
    let skipped = 0;
    for (const { service, address } of targets) {
      const definition = root.lookupService(`strata.v1.${service}`);
      const grpcClient = new grpc.Client(address, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': 8 * 1024 * 1024 });
      const jobs: (() => Promise<void>)[] = [];
      for (const [index, method] of definition.methodsArray.entries()) {
        const name = `${service}.${method.name}`;
        const fullPath = `/strata.v1.${service}/${method.name}`;
        const type = method.resolvedRequestType!;
        const mutating = !READ_ONLY.has(name);
        const seed = SEED + index * 1000 + service.length;
        const messages = (one: fc.Arbitrary<Buffer>) => (method.requestStream ? fc.array(one, { minLength: 1, maxLength: 4 }) : one.map((m) => [m]));
        let raw = fc.sample(messages(rawMessageArb), { numRuns: CASES, seed });
        if (mutating) {
          const kept = raw.filter((list) => !list.some((m) => escapesScratch(type, m, where)));
          skipped += raw.length - kept.length;
          raw = kept;
        }
        const encode = (value: Record<string, unknown>) => Buffer.from(type.encode(type.fromObject((mutating ? confine(value, where) : value) as Record<string, unknown>)).finish());
        const hostile = fc.sample(messages(messageArb(type, before.inos, scratchInos).map(encode)), { numRuns: CASES, seed: seed + 1 });
        // A session's first request with a bad id closes it: corner cases get a good one, to reach their op.
        const corners = extremeMessages(type).map((value) => [encode(type.name === 'SessionRequest' ? { ...value, id: 1, deadlineMs: 0 } : value)]);
        for (const [mode, list] of [['raw', raw], ['hostile', hostile], ['corner', corners]] as const) {
          for (const sent of list) {
            jobs.push(async () => {
              const result = await rawCall(grpcClient, method, fullPath, sent);
              outcomes.push({ target: name, mode, code: result.code, details: result.details.slice(0, 300), strataKind: result.kind });
            });
          }
        }
      }
      cases += jobs.length;
      await pool(jobs, PARALLEL_CALLS);
      grpcClient.close();
    }
    console.log(`fuzz cases ${cases} grpc (seed ${SEED}, ${skipped} raw cases skipped as able to act outside scratch)`);
    const byCode = new Map<string, number>();
    for (const o of outcomes) byCode.set(String(o.code), (byCode.get(String(o.code)) ?? 0) + 1);
    console.log('fuzz grpc statuses', JSON.stringify(Object.fromEntries(byCode)));
    expect(outcomes.filter(isFinding)).toEqual([]);
    // No fuzzed message carries a coordinator-signed grant: none of the calls that touch a chunk's
    // bytes may succeed, and the grant check is what turns (some of) them away.
    const granted = outcomes.filter((o) => GRANTED_METHODS.has(o.target));
    expect(granted.filter((o) => o.code === grpc.status.OK)).toEqual([]);
    expect(granted.filter((o) => o.code === grpc.status.PERMISSION_DENIED).length).toBeGreaterThan(0);
    // Some 1,200 calls of up to 5 s each, 6 at a time: on a loaded machine that passes the 120 s default.
  }, 300_000);

  test('the session TCP port: random frames and hostile requests end in answers or a close', async () => {
    const endpoint = await new Promise<string>((resolve, reject) => {
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      const c = new strataProto.Coordinator(cluster.coordinators[0].address, grpc.credentials.createInsecure()) as any;
      c.SessionEndpoint({}, (err: Error | null, reply: { address: string }) => (c.close(), err ? reject(err) : resolve(reply.address)));
    });
    expect(endpoint).not.toBe('');
    const sessionType = root.lookupType('strata.v1.SessionRequest');
    const header = (length: number, kind: number) => {
      const b = Buffer.alloc(SESSION_FRAME_HEADER_BYTES);
      b.writeUInt32BE(length >>> 0, 0);
      b.writeUInt8(kind, 4);
      return b;
    };
    const rawFrames = fc.sample(
      fc.oneof(
        fc.uint8Array({ maxLength: 300 }).map((b) => [Buffer.from(b)]),
        rawMessageArb.filter((m) => m.length < 70_000).map((m) => [messageFrame(m)]),
        fc.tuple(fc.nat({ max: 0xffffffff }), fc.nat({ max: 255 })).map(([length, kind]) => [header(length, kind), Buffer.from('abc')]),
        fc.constantFrom([header(0xffffffff, 1)], [header(0, 1)], [header(10, 2), Buffer.from('{"code":1}')], [header(3, 9), Buffer.from('abc')]),
      ),
      { numRuns: CASES * 4, seed: SEED + 7 },
    );
    const requests = fc.sample(
      fc.array(
        // Mostly fresh ids (so the ops run), now and then one that breaks the protocol.
        fc.tuple(fc.oneof({ weight: 12, arbitrary: fc.constant(-2) }, { weight: 1, arbitrary: fc.constantFrom(0, 1, 2 ** 53, -1) }), messageArb(sessionType, before.inos, scratchInos)),
        { minLength: 1, maxLength: 6 },
      ),
      { numRuns: CASES * 4, seed: SEED + 8 },
    ).map((list) =>
      list.map(([chosen, request], i) => {
        const id = chosen === -2 ? i + 1 : chosen;
        const op = Object.keys(request).find((k) => !['id', 'deadlineMs'].includes(k) && sessionType.fields[k]?.resolvedType instanceof protobuf.Type);
        const safe = op && !READ_ONLY_SESSION_OPS.has(op) ? confine(request, where) : request;
        return messageFrame(Buffer.from(sessionType.encode(sessionType.fromObject({ ...(safe as object), id, deadlineMs: 0 })).finish()));
      }),
    );
    const corners = extremeMessages(sessionType).map((value) => [messageFrame(Buffer.from(sessionType.encode(sessionType.fromObject({ ...(confine(value, where) as object), id: 1, deadlineMs: 0 })).finish()))]);
    const all = [...rawFrames.map((f) => ['raw', f] as const), ...requests.map((f) => ['hostile', f] as const), ...corners.map((f) => ['corner', f] as const)];
    await pool(
      all.map(([mode, frames]) => async () => {
        // A change may rightly wait out the lease of a session that holds it and never acks the push
        // (another hostile session in this pool, say): a hang is no answer past the lease time too.
        const { closed, received } = await tcpExchange(endpoint, frames, CALL_DEADLINE_MS + LEASE_TTL_MS);
        let code: Outcome['code'] = closed ? 'closed' : 'hang';
        let details = '';
        try {
          for (const frame of new SessionFrameParser(8 * 1024 * 1024).push(received)) {
            if (frame.kind === SessionFrameKind.Close) ({ code, details } = frame);
          }
        } catch (err) {
          code = 'hang';
          details = `unparseable reply: ${(err as Error).message}`;
        }
        outcomes.push({ target: 'session-tcp', mode, code, details });
      }),
      PARALLEL_CALLS,
    );
    console.log(`fuzz cases ${all.length} session-tcp`);
    expect(outcomes.filter((o) => o.target === 'session-tcp' && isFinding(o))).toEqual([]);
  });

  test('the byte path port: random frames and hostile requests end in an answer and a close', async () => {
    const dataAddress = await new Promise<string>((resolve, reject) => {
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      const c = new strataProto.DataNode(cluster.datanodes[0].address, grpc.credentials.createInsecure()) as any;
      c.NodeStatus({}, (err: Error | null, reply: { dataAddress: string }) => (c.close(), err ? reject(err) : resolve(reply.dataAddress)));
    });
    expect(dataAddress).toBeTruthy();
    const control = (type: number, body: unknown) => Buffer.concat(frameOf(type as 1, Buffer.from(JSON.stringify(body) ?? 'null')));
    const header = (length: number, type: number) => {
      const b = Buffer.alloc(FRAME_HEADER_BYTES);
      b.writeUInt32BE(length >>> 0, 0);
      b.writeUInt8(type, 4);
      return b;
    };
    const hostileNumber = fc.oneof(fc.constantFrom<unknown>(-1, 0, 1, 1.5, NaN, 1e300, 2 ** 53, '10', null, [], {}), fc.nat());
    const hostileString = fc.oneof(fc.constantFrom<unknown>('', '..', '../../x', 'A'.repeat(129), 'c/x', 'q/x', '\0', '\0'.repeat(12_000), 5, null, {}), fc.stringMatching(/^[A-Za-z0-9_-]{1,30}$/));
    const request = fc.record(
      {
        // An op of 12,000 NULs: its error message once outgrew the error frame and crashed the node.
        op: fc.constantFrom<unknown>('read', 'write', 'readEncoding', 'read', 'write', 'delete', '', 7, null),
        nodeId: fc.constantFrom<unknown>('dn1', 'dn1', 'dn2', '', 3),
        chunkId: hostileString,
        offset: hostileNumber,
        length: hostileNumber,
        timeoutMs: fc.oneof(fc.constantFrom<unknown>(-1, 0, 1e12, 'x', 3000), fc.integer({ min: 1, max: 4000 })),
        pipeline: fc.oneof(fc.constantFrom<unknown>([], null, 'x', [{}], [{ nodeId: 'dn1', address: '127.0.0.1:1' }], [{ nodeId: 'zz', address: '127.0.0.1:1', dataAddress: '127.0.0.1:1' }]), fc.array(fc.record({ nodeId: hostileString, address: hostileString }), { maxLength: 20 })),
        tier: fc.constantFrom<unknown>(undefined, null, {}, { tier: 'nope', key: '../x', storedBytes: -1, crc32c: 1 }, { tier: '', key: '' }),
      },
      { requiredKeys: [] },
    );
    // An op of 10,000 NULs: quoted in its error (60 KB of JSON escapes), it once outgrew the error
    // frame, and the throw crashed the data node.
    const corners = ['\0'.repeat(10_000), 'x'.repeat(60_000)].flatMap((big) => [
      [control(FrameType.Request, { op: big, nodeId: 'dn1', chunkId: 'a', timeoutMs: 1000 })],
      [control(FrameType.Request, { op: 'read', nodeId: big, chunkId: 'a', timeoutMs: 1000 })],
      [control(FrameType.Request, { op: 'read', nodeId: 'dn1', chunkId: big, offset: 0, length: 0, timeoutMs: 1000 })],
      [control(FrameType.Request, { op: 'write', nodeId: 'dn1', chunkId: 'fuzz-w', length: 10, pipeline: [{ nodeId: big, address: big }], timeoutMs: 1000 })],
      [control(FrameType.Request, { op: 'read', nodeId: 'dn1', chunkId: 'fuzz-t', offset: 0, length: 0, tier: { tier: big, key: big, storedBytes: 100, crc32c: 1 }, timeoutMs: 1000 })],
    ]);
    const sampled = fc.sample(
      fc.oneof(
        { weight: 2, arbitrary: fc.uint8Array({ maxLength: 300 }).map((b) => [Buffer.from(b)]) },
        { weight: 1, arbitrary: fc.tuple(fc.nat({ max: 0xffffffff }), fc.nat({ max: 8 })).map(([length, type]) => [header(length, type), Buffer.from('abc')]) },
        {
          weight: 4,
          arbitrary: fc
            .tuple(request, fc.array(fc.oneof(fc.uint8Array({ maxLength: 2048 }).map((b) => Buffer.concat(frameOf(FrameType.Data, Buffer.from(b)))), fc.constant(header(0, FrameType.End)), fc.constant(header(5 * 1024 * 1024, FrameType.Data))), { maxLength: 4 }))
            .map(([body, after]) => [control(FrameType.Request, body), ...after]),
        },
      ),
      { numRuns: CASES * 4, seed: SEED + 9 },
    );
    const frames = [...corners, ...sampled];
    await pool(
      frames.map((sent) => async () => {
        const { closed, received } = await tcpExchange(dataAddress, sent);
        let code: Outcome['code'] = closed ? 'closed' : 'hang';
        let details = '';
        try {
          const parser = new FrameParser();
          parser.mode = { maxDataBytes: 8 * 1024 * 1024, slices: false };
          for (const frame of parser.push(received)) {
            if (frame.type === FrameType.Error) {
              const body = frame.body as { kind?: string; message?: string };
              details = `${body.kind}: ${body.message}`;
              if (body.kind === 'Internal') code = grpc.status.INTERNAL;
            }
          }
        } catch (err) {
          code = 'hang';
          details = `unparseable reply: ${(err as Error).message}`;
        }
        outcomes.push({ target: 'byte-path', mode: 'frames', code, details });
      }),
      PARALLEL_CALLS,
    );
    console.log(`fuzz cases ${frames.length} byte-path`);
    expect(cluster.datanodes[0].running, 'the data node lives on').toBe(true);
    expect(outcomes.filter((o) => o.target === 'byte-path' && isFinding(o))).toEqual([]);
  });

  test('afterwards: every process serves, and everything stored before is unchanged', async () => {
    for (const role of [...cluster.coordinators, ...cluster.datanodes]) expect(role.running, role.name).toBe(true);
    const after = await snapshot(client);
    expect([...after.entries]).toEqual([...before.entries]);
    for (const [file, bytes] of files) expect((await client.readFile(file)).equals(bytes), file).toBe(true);
    expect(await client.quotaGet('/keep')).toEqual(keepQuota);
    const chunksAfter = await Promise.all(cluster.datanodes.map((n) => listChunks(n.address)));
    for (const [i, chunks] of chunksBefore.entries()) {
      for (const [chunkId, length] of chunks) expect(chunksAfter[i].get(chunkId), `${cluster.datanodes[i].name} ${chunkId}`).toBe(length);
    }
    // What the fuzz left in scratch lists like anything else (a size of 2^64 once broke `ls -l`).
    for (const dir of [SCRATCH, `${SCRATCH}/x`]) {
      const ls = await cluster.cli(['ls', '-l', dir]);
      expect(ls.code, `ls -l ${dir}: ${ls.stderr}`).toBe(0);
    }
    // Node ids a hostile heartbeat registered are dead after the grace; then writes place on real nodes only.
    await cluster.waitForLiveNodes(cluster.datanodes.length);
    const fresh = randomBytes(200_000);
    await client.writeFile(`${SCRATCH}/after.bin`, fresh);
    expect((await client.readFile(`${SCRATCH}/after.bin`)).equals(fresh)).toBe(true);
  });
});
