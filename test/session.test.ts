// The metadata session stream against real coordinator processes, over both of its transports
// (the gRPC Session call, and plain TCP frames): pipelining, the in-flight limit, malformed and
// oversized messages (only that stream closes), unary RPCs beside it, and kill -9 of a
// coordinator with sessions open on etcd with 2 coordinators (failover, no double apply).
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { StrataError, Strata } from '../client/index.js';
import { CHANNEL_OPTIONS, callUnary, strataProto } from '../common/grpc.js';
import { SessionFrameKind, SessionFrameParser, messageFrame } from '../common/session-frames.js';
import { startCluster, type TestCluster } from './harness/cluster.js';
import { freePort } from './harness/ports.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- raw wire messages */

const SESSION = strataProto.Coordinator.service.Session;

type Transport = 'grpc' | 'tcp';
const TRANSPORTS: Transport[] = ['tcp', 'grpc'];

/** The SDK on one transport. */
const connect = (coordinators: string, transport: Transport, options: { callTimeoutMs?: number; failoverTimeoutMs?: number } = {}) =>
  Strata.connect({ coordinators, failoverTimeoutMs: 10_000, ...options, sessionTransport: transport === 'tcp' ? 'auto' : 'grpc' });

/** Where a coordinator's TCP session listens (its SessionEndpoint). */
const endpointOf = async (client: grpc.Client) => String((await callUnary<any>(client, 'SessionEndpoint', {}, 5000)).address);

/** A raw session stream, for what the SDK would never send. */
interface RawSession {
  readonly replies: any[];
  readonly status: Promise<{ code: number; details: string }>;
  /** A message (encoded here), or raw bytes as they are. */
  write(message: unknown): void;
  answers(count: number, timeoutMs?: number): Promise<any[]>;
  close(): void;
}

abstract class RawBase {
  readonly replies: any[] = [];
  private waiters: Array<() => void> = [];

  protected received(reply: any): void {
    this.replies.push(reply);
    for (const wake of this.waiters.splice(0)) wake();
  }

  /** Waits until `count` answers (id > 0) have come, bounded. */
  async answers(count: number, timeoutMs = 20_000): Promise<any[]> {
    const giveUpAt = Date.now() + timeoutMs;
    for (;;) {
      const answers = this.replies.filter((r) => Number(r.id) > 0);
      if (answers.length >= count) return answers;
      if (Date.now() > giveUpAt) throw new Error(`${answers.length}/${count} session answers after ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 200);
      });
    }
  }

}

class GrpcRawSession extends RawBase implements RawSession {
  readonly status: Promise<grpc.StatusObject>;
  private readonly call: grpc.ClientDuplexStream<any, any>;

  constructor(client: grpc.Client, raw: boolean) {
    super();
    this.call = raw
      ? client.makeBidiStreamRequest(SESSION.path, (b: Buffer) => b, SESSION.responseDeserialize)
      : (client as any).Session();
    this.call.on('data', (reply) => this.received(reply));
    this.status = new Promise((resolve) => this.call.on('status', resolve));
    this.call.on('error', () => undefined); // the status says it
  }

  write(message: unknown): void {
    this.call.write(message);
  }

  close(): void {
    this.call.cancel();
  }
}

/** The same over the framed TCP session: a close frame carries the status, as gRPC's trailers would. */
class TcpRawSession extends RawBase implements RawSession {
  readonly status: Promise<{ code: number; details: string }>;
  private readonly socket: net.Socket;

  constructor(address: string) {
    super();
    const at = address.lastIndexOf(':');
    this.socket = net.connect({ host: address.slice(0, at), port: Number(address.slice(at + 1)) });
    const parser = new SessionFrameParser(64 * 1024 * 1024);
    let closeStatus: { code: number; details: string } | undefined;
    this.socket.on('data', (chunk: Buffer) => {
      for (const frame of parser.push(chunk)) {
        if (frame.kind === SessionFrameKind.Close) closeStatus = { code: frame.code, details: frame.details };
        else this.received(SESSION.responseDeserialize(frame.payload));
      }
    });
    this.socket.on('error', () => undefined);
    this.status = new Promise((resolve) => this.socket.on('close', () => resolve(closeStatus ?? { code: grpc.status.UNAVAILABLE, details: 'closed without a status' })));
  }

  write(message: unknown): void {
    this.socket.write(Buffer.isBuffer(message) ? message : messageFrame(SESSION.requestSerialize(message)));
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Raw sessions of one transport to one coordinator. */
async function rawSessions(client: grpc.Client, transport: Transport): Promise<(raw?: boolean) => RawSession> {
  if (transport === 'grpc') return (raw = false) => new GrpcRawSession(client, raw);
  const address = await endpointOf(client);
  return () => new TcpRawSession(address);
}

/** Bytes that are no session message, as each transport carries them. */
function garbageBytes(transport: Transport): Buffer {
  const bytes = Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]);
  return transport === 'grpc' ? bytes : messageFrame(bytes);
}

const withTimeout = <T>(promise: Promise<T>, ms: number, what: string) =>
  Promise.race([promise, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms))]);

describe.each(TRANSPORTS)('session stream over %s: embedded, in-flight limit 8', (transport) => {
  let cluster: TestCluster;
  let client: grpc.Client;
  let fs: Strata;
  let open: (raw?: boolean) => RawSession;

  beforeAll(async () => {
    cluster = await startCluster({ datanodes: 1, replication: 1, chunkSize: '64KiB', env: { STRATA_SESSION_MAX_IN_FLIGHT: '8' } });
    client = new strataProto.Coordinator(cluster.coordinators[0].address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
    fs = connect(cluster.coordinatorList, transport);
    open = await rawSessions(client, transport);
  });
  afterAll(async () => {
    fs?.close();
    client?.close();
    await cluster?.stop();
  });

  test('the SDK takes the transport asked for', async () => {
    await fs.stat('/');
    expect(fs.sessionTransports).toEqual([transport]);
  });

  test('the hello first, then many requests pipelined on one stream, each answered once by id', async () => {
    const session = open();
    for (let id = 1; id <= 8; id++) session.write({ id, mkdir: { path: `/pipelined-${id}` } });
    const answers = await session.answers(8);
    expect(session.replies[0].id).toBe(0);
    expect(session.replies[0].hello).toMatchObject({ maxInFlight: 8, maxMessageBytes: 64 * 1024 });
    expect(answers.map((a) => a.id).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    for (const answer of answers) {
      expect(answer.error).toBeNull();
      expect(answer.result).toBe('mkdir');
      expect(answer.mkdir.attr.type).toBe('DIRECTORY');
    }
    // A failed request is an answer with an error; the stream stays open for the next one.
    session.write({ id: 9, stat: { path: '/no/such/thing' } });
    session.write({ id: 10, lookup: { parent: 1, name: 'pipelined-3' } });
    const [notFound, found] = (await session.answers(10)).slice(8).sort((a, b) => a.id - b.id);
    expect(notFound.error).toMatchObject({ code: grpc.status.NOT_FOUND, kind: 'NotFound' });
    expect(found.lookup.attr.ino).toBe(answers.find((a) => a.id === 3).mkdir.attr.ino);
    session.close();
  });

  test('past the in-flight limit requests are refused unstarted (RESOURCE_EXHAUSTED, not_started); the stream lives on', async () => {
    const session = open();
    const count = 200;
    // All written at once: the coordinator reads them faster than the metadata engine answers.
    for (let id = 1; id <= count; id++) session.write({ id, mkdir: { path: `/limit-${id}` } });
    const answers = await session.answers(count);
    const refused = answers.filter((a) => a.error?.notStarted);
    const done = answers.filter((a) => !a.error);
    expect(refused.length).toBeGreaterThan(0);
    expect(done.length).toBeGreaterThanOrEqual(8);
    expect(refused.length + done.length).toBe(count);
    for (const r of refused) expect(r.error.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    // Refused means not applied: exactly the answered mkdirs exist.
    const listed = new Set((await fs.readdir('/')).map((e) => e.name));
    for (const a of done) expect(listed.has(`limit-${a.id}`)).toBe(true);
    for (const a of refused) expect(listed.has(`limit-${a.id}`)).toBe(false);
    session.write({ id: count + 1, stat: { path: '/' } });
    expect((await session.answers(count + 1)).at(-1).stat.attr.ino).toBe(1);
    session.close();
  });

  test('the SDK stays under the limit by itself: 500 concurrent calls on one client all succeed', async () => {
    const many = await fs.mkdir('/many');
    const [made, looked] = await Promise.all([
      Promise.all(Array.from({ length: 250 }, (_, i) => fs.mkdir(`/many/d${i}`))),
      Promise.all(Array.from({ length: 250 }, () => fs.inodes.lookup(1, 'many'))),
    ]);
    expect(new Set(made.map((s) => s.ino)).size).toBe(250);
    expect(looked.every((s) => s.ino === many.ino)).toBe(true);
    expect(await fs.readdir('/many')).toHaveLength(250);
  });

  test('malformed messages close only their own stream, with INVALID_ARGUMENT', async () => {
    const bystander = open();
    bystander.write({ id: 1, stat: { path: '/' } });
    await bystander.answers(1);

    const garbage = open(true);
    garbage.write(garbageBytes(transport));
    expect((await withTimeout(garbage.status, 10_000, 'garbage')).code).toBe(grpc.status.INVALID_ARGUMENT);

    const noId = open();
    noId.write({ stat: { path: '/' } });
    const noIdStatus = await withTimeout(noId.status, 10_000, 'no id');
    expect(noIdStatus.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(noIdStatus.details).toMatch(/id/);

    const twice = open();
    twice.write({ id: 5, mkdir: { path: '/twice-a' } });
    twice.write({ id: 5, mkdir: { path: '/twice-b' } });
    const twiceStatus = await withTimeout(twice.status, 10_000, 'duplicate id');
    expect(twiceStatus.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(twiceStatus.details).toMatch(/already in flight/);

    // No op at all is a per-request error, not a broken stream.
    bystander.write({ id: 2 });
    const [, noOp] = await bystander.answers(2);
    expect(noOp.error).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, kind: 'Invalid' });

    // The other stream, the unary RPCs and the SDK carry on.
    bystander.write({ id: 3, stat: { path: '/' } });
    expect((await bystander.answers(3)).at(-1).stat.attr.ino).toBe(1);
    expect((await callUnary<any>(client, 'Stat', { path: '/' }, 5000)).attr.ino).toBe(1);
    expect((await fs.stat('/')).ino).toBe(1);
    bystander.close();
  });

  test('an oversized message closes only its own stream, with RESOURCE_EXHAUSTED', async () => {
    const bystander = open();
    const big = open();
    big.write({ id: 1, stat: { path: '/' + 'x'.repeat(100 * 1024) } });
    const status = await withTimeout(big.status, 10_000, 'oversized');
    expect(status.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(status.details).toMatch(/over the 65536-byte limit/);
    // Over the transport's own limit (5 MiB) too.
    const huge = open(true);
    huge.write(transport === 'grpc' ? Buffer.alloc(6 * 1024 * 1024, 1) : messageFrame(Buffer.alloc(6 * 1024 * 1024, 1)));
    expect((await withTimeout(huge.status, 10_000, 'huge')).code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    bystander.write({ id: 1, stat: { path: '/' } });
    expect((await bystander.answers(1))[0].stat.attr.ino).toBe(1);
    bystander.close();
    // The SDK refuses such a request itself, alone: the calls beside it on its session go through.
    const [tooBig, fine] = await Promise.allSettled([fs.stat('/' + 'y'.repeat(70 * 1024)), fs.stat('/')]);
    expect(tooBig).toMatchObject({ status: 'rejected', reason: { kind: 'Invalid' } });
    expect(fine).toMatchObject({ status: 'fulfilled', value: { ino: 1 } });
  });

  test.runIf(transport === 'tcp')('TCP frames: a length over the limit is refused before its payload comes; an unknown frame kind is malformed', async () => {
    const bystander = open();
    bystander.write({ id: 1, stat: { path: '/' } });
    await bystander.answers(1);
    // Only a header announcing 1 GiB: the coordinator answers without waiting for (or buffering) it.
    const header = Buffer.alloc(5);
    header.writeUInt32BE(1024 * 1024 * 1024, 0);
    header.writeUInt8(SessionFrameKind.Message, 4);
    const announced = open(true);
    announced.write(header);
    const status = await withTimeout(announced.status, 10_000, 'announced');
    expect(status).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED, details: expect.stringMatching(/over the 65536-byte limit/) });
    const unknownKind = open(true);
    unknownKind.write(Buffer.from([0, 0, 0, 1, 9, 0]));
    expect(await withTimeout(unknownKind.status, 10_000, 'unknown kind')).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringMatching(/unknown kind/) });
    // A close frame is the coordinator's to send.
    const closing = open(true);
    closing.write(Buffer.concat([Buffer.from([0, 0, 0, 2, SessionFrameKind.Close]), Buffer.from('{}')]));
    expect((await withTimeout(closing.status, 10_000, 'client close frame')).code).toBe(grpc.status.INVALID_ARGUMENT);
    bystander.write({ id: 2, stat: { path: '/' } });
    expect((await bystander.answers(2)).at(-1).stat.attr.ino).toBe(1);
    bystander.close();
  });

  test('the unary RPCs keep working, beside open sessions and for a client without them', async () => {
    const unaryOnly = Strata.connect({ coordinators: cluster.coordinatorList, session: false });
    try {
      await unaryOnly.mkdir('/unary/a/b', { parents: true });
      await unaryOnly.writeFile('/unary/a/b/f.txt', 'over unary');
      await unaryOnly.rename('/unary/a/b/f.txt', '/unary/g.txt');
      expect((await fs.readFile('/unary/g.txt')).toString()).toBe('over unary');
      expect((await unaryOnly.readdir('/unary')).map((e) => e.name)).toEqual(['a', 'g.txt']);
      await unaryOnly.rm('/unary', { recursive: true });
      expect(await fs.exists('/unary')).toBe(false);
      // Inode operations exist only on the stream: they use it whatever the option says.
      await expect(unaryOnly.inodes.getattr(1)).resolves.toMatchObject({ ino: 1 });
    } finally {
      unaryOnly.close();
    }
  });
});

describe.each(TRANSPORTS)('session stream over %s: etcd, 2 coordinators, kill -9 with sessions open', (transport) => {
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await startCluster({ meta: 'etcd', coordinators: 2, datanodes: 1, replication: 1, chunkSize: '64KiB' });
  });
  afterAll(async () => cluster?.stop());

  test('requests in flight fail over to the other coordinator; none is applied twice', async () => {
    const fs = connect(cluster.coordinatorList, transport, { failoverTimeoutMs: 30_000 });
    try {
      const ops = fs.inodes;
      const dir = await ops.mkdir(1, 'failover', 0o755);
      // A session whose transport is still being chosen says 'unknown'; none may be the other one.
      expect(fs.sessionTransports.filter((t) => t !== 'unknown').every((t) => t === transport)).toBe(true);
      const N = 150;
      // Files to unlink and rename while the coordinator dies.
      await Promise.all(Array.from({ length: N }, (_, i) => ops.create(dir.ino, `u${i}`)));
      await Promise.all(Array.from({ length: N }, (_, i) => ops.create(dir.ino, `r${i}`)));
      // The client's first coordinator is the one its session runs on: kill it once some answers
      // came back, with many requests in flight on it (some applied, not yet answered).
      const outcomes: Array<Promise<string>> = [];
      let settled = 0;
      let killed!: () => void;
      const killedOnce = new Promise<void>((resolve) => (killed = resolve));
      const settle = (p: Promise<unknown>) =>
        settleKind(p).finally(() => {
          if (++settled === N / 2) {
            cluster.coordinators[0].kill9();
            killed();
          }
        });
      for (let i = 0; i < N; i++) {
        outcomes.push(settle(ops.mkdir(dir.ino, `m${i}`, 0o755)));
        outcomes.push(settle(ops.unlink(dir.ino, `u${i}`)));
        outcomes.push(settle(ops.rename(dir.ino, `r${i}`, dir.ino, `s${i}`)));
        outcomes.push(settle(ops.create(dir.ino, `c${i}`, { exclusive: true })));
      }
      await killedOnce;
      const results = await withTimeout(Promise.all(outcomes), 60_000, 'requests across the failover');
      const count = (kind: string) => results.filter((r) => r === kind).length;
      // Every request got an answer. A change whose first attempt may have been applied is
      // retried once on the other coordinator: it then finds its own result (Exists for a
      // create, NotFound for a rename source); unlink reads that as done.
      expect(count('ok') + count('Exists') + count('NotFound')).toBe(results.length);
      expect(count('ok')).toBeGreaterThanOrEqual(N / 2); // at least those answered before the kill
      const unlinks = results.filter((_, i) => i % 4 === 1);
      expect(unlinks.every((r) => r === 'ok')).toBe(true);

      // The namespace holds each name once, in its final state: nothing applied twice.
      const names: string[] = [];
      for (let after = ''; ; ) {
        const page = await ops.readdirplus(dir.ino, { after, limit: 1000 });
        names.push(...page.entries.map((e) => e.name));
        if (!page.more) break;
        after = names[names.length - 1];
      }
      const expected = Array.from({ length: N }, (_, i) => [`m${i}`, `s${i}`, `c${i}`]).flat().sort();
      expect(names).toEqual(expected);
      expect(cluster.coordinators[1].running).toBe(true);
    } finally {
      fs.close();
    }
  });

  test('a frozen coordinator: the request times out, goes to the other one, and the thawed one does not apply it late', async () => {
    const [frozen, live] = cluster.coordinators;
    // The one killed above comes back on its address, then is frozen (accepts, never answers).
    if (!frozen.running) frozen.start();
    const probe = (address: string) => {
      const client = connect(address, transport, { callTimeoutMs: 2000, failoverTimeoutMs: 20_000 });
      return client.stat('/').finally(() => client.close());
    };
    await probe(frozen.address);
    const fs = connect([frozen.address, live.address].join(','), transport, { callTimeoutMs: 1500, failoverTimeoutMs: 20_000 });
    try {
      // Set up with the default deadline: right after the kill above, a change may wait out the
      // killed coordinator's leases, longer than this test's short one (then ambiguous, and Exists).
      const setup = connect(cluster.coordinatorList, transport, { failoverTimeoutMs: 20_000 });
      const dir = await setup.inodes.mkdir(1, 'frozen', 0o755);
      const { stat: old } = await setup.inodes.create(dir.ino, 'a');
      setup.close();
      await fs.stat('/'); // through the first coordinator: its session and clock are known
      frozen.process.kill('SIGSTOP');
      try {
        // Times out on the frozen one (outcome unknown), then applies on the other.
        await fs.inodes.rename(dir.ino, 'a', dir.ino, 'b');
        // A new 'a': if the frozen coordinator applied the stale rename once thawed, it would move this one over 'b'.
        const { stat: fresh } = await fs.inodes.create(dir.ino, 'a');
        frozen.process.kill('SIGCONT');
        await probe(frozen.address); // it is answering again: its buffered, stale request was read first
        expect((await fs.inodes.lookup(dir.ino, 'a')).ino).toBe(fresh.ino);
        expect((await fs.inodes.lookup(dir.ino, 'b')).ino).toBe(old.ino);
      } finally {
        frozen.process.kill('SIGCONT');
      }
    } finally {
      fs.close();
    }
  });

  test('a request read after its deadline is refused unstarted (DEADLINE_EXCEEDED) and applies nothing', async () => {
    const [frozen] = cluster.coordinators;
    const client = new strataProto.Coordinator(frozen.address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
    const fs = connect(cluster.coordinatorList, transport);
    try {
      const dir = await fs.inodes.mkdir(1, 'late', 0o755);
      await fs.inodes.create(dir.ino, 'src');
      const session = (await rawSessions(client, transport))();
      session.write({ id: 1, stat: { path: '/' } });
      await session.answers(1);
      const offset = Number(session.replies[0].hello.nowMs) - Date.now();
      frozen.process.kill('SIGSTOP');
      try {
        session.write({ id: 2, deadlineMs: Date.now() + offset + 300, renameAt: { srcParent: dir.ino, srcName: 'src', dstParent: dir.ino, dstName: 'dst' } });
        await new Promise((r) => setTimeout(r, 1000)); // let the deadline pass while it is frozen
      } finally {
        frozen.process.kill('SIGCONT');
      }
      const [, late] = await session.answers(2);
      expect(late.error).toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED, notStarted: true });
      expect((await fs.inodes.lookup(dir.ino, 'src')).isFile()).toBe(true);
      await expect(fs.inodes.lookup(dir.ino, 'dst')).rejects.toMatchObject({ kind: 'NotFound' });
      session.close();
    } finally {
      fs.close();
      client.close();
    }
  });
});

const settleKind = (p: Promise<unknown>) => p.then(() => 'ok', (e: StrataError) => e.kind ?? String(e));

describe('session transport choice: a coordinator without a reachable TCP session', () => {
  test('--session-listen off: SessionEndpoint offers none and the SDK takes the gRPC call', async () => {
    const cluster = await startCluster({ datanodes: 0, coordinatorArgs: ['--session-listen', 'off'] });
    const client = new strataProto.Coordinator(cluster.coordinators[0].address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
    const fs = connect(cluster.coordinatorList, 'tcp');
    try {
      expect(await endpointOf(client)).toBe('');
      await fs.mkdir('/over-grpc');
      expect((await fs.stat('/over-grpc')).isDirectory()).toBe(true);
      expect(fs.sessionTransports).toEqual(['grpc']);
    } finally {
      fs.close();
      client.close();
      await cluster.stop();
    }
  });

  test('an advertised address nothing listens on: the refused requests are retried, on the gRPC call, and applied once', async () => {
    const closed = await freePort();
    const cluster = await startCluster({ datanodes: 0, coordinatorArgs: ['--session-advertise', `127.0.0.1:${closed}`] });
    const fs = connect(cluster.coordinatorList, 'tcp');
    try {
      // A create is not idempotent: had a refused attempt been counted as maybe applied, its retry would answer Exists.
      const made = await Promise.all(Array.from({ length: 20 }, (_, i) => fs.create(`/f${i}`, { exclusive: true })));
      expect(new Set(made.map((s) => s.ino)).size).toBe(20);
      expect(fs.sessionTransports).toEqual(['grpc']);
      expect((await fs.readdir('/')).map((e) => e.name).sort()).toEqual(Array.from({ length: 20 }, (_, i) => `f${i}`).sort());
    } finally {
      fs.close();
      await cluster.stop();
    }
  });
});
