import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, test } from 'vitest';
import { ClientLimiter, clientOf, limitInterceptor } from './client-limits.js';
import { StrataError } from './errors.js';

const identity = (b: Buffer) => b;
const SERVICE: grpc.ServiceDefinition = {
  Hold: { path: '/test.Limits/Hold', requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity, originalName: 'Hold' },
};

describe('per-client limits', () => {
  test('in flight: past the bound Busy, a release frees a slot', () => {
    const limiter = new ClientLimiter({ maxInFlight: 2, ratePerSec: 0 });
    const first = limiter.admit('10.0.0.1');
    limiter.admit('10.0.0.1');
    expect(() => limiter.admit('10.0.0.1')).toThrow(StrataError);
    try {
      limiter.admit('10.0.0.1');
    } catch (err) {
      expect((err as StrataError).kind).toBe('Busy');
      expect((err as StrataError).message).toMatch(/2 in flight at most/);
    }
    expect(() => limiter.admit('10.0.0.2')).not.toThrow(); // another client has its own bound
    first();
    first(); // idempotent: one release per admit
    limiter.admit('10.0.0.1');
    expect(() => limiter.admit('10.0.0.1')).toThrow(/in flight/);
  });

  test('rate: a burst of one second, refilled as time passes', () => {
    let now = 1_000_000;
    const limiter = new ClientLimiter({ maxInFlight: 0, ratePerSec: 5 }, () => now);
    for (let i = 0; i < 5; i++) limiter.admit('c')();
    expect(() => limiter.admit('c')).toThrow(/more than 5 per second/);
    now += 200; // one token back
    limiter.admit('c')();
    expect(() => limiter.admit('c')).toThrow(/per second/);
    now += 10_000; // never more than the burst
    for (let i = 0; i < 5; i++) limiter.admit('c')();
    expect(() => limiter.admit('c')).toThrow(/per second/);
  });

  test('no bounds: nothing tracked', () => {
    const limiter = new ClientLimiter({ maxInFlight: 0, ratePerSec: 0 });
    for (let i = 0; i < 100; i++) limiter.admit(`c${i}`);
    expect(limiter.size).toBe(0);
    expect(clientOf('::ffff:127.0.0.1')).toBe('127.0.0.1');
  });

  describe('the gRPC interceptor', () => {
    let server: grpc.Server | undefined;
    let client: grpc.Client | undefined;
    afterEach(() => {
      client?.close();
      server?.forceShutdown();
    });

    test('a call past the bound ends at once with RESOURCE_EXHAUSTED (kind Busy); finished calls free their slots', async () => {
      const limiter = new ClientLimiter({ maxInFlight: 2, ratePerSec: 0 });
      const held: (() => void)[] = [];
      server = new grpc.Server({ interceptors: [limitInterceptor(limiter)] });
      server.addService(SERVICE, {
        Hold: (_call: unknown, callback: grpc.sendUnaryData<Buffer>) => held.push(() => callback(null, Buffer.from('ok'))),
      });
      const port = await new Promise<number>((resolve, reject) => server!.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
      client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
      const call = () =>
        new Promise<grpc.ServiceError | null>((resolve) =>
          client!.makeUnaryRequest('/test.Limits/Hold', identity, identity, Buffer.alloc(0), { deadline: Date.now() + 10_000 }, (err) => resolve(err)),
        );
      const first = call();
      const second = call();
      while (held.length < 2) await new Promise((r) => setTimeout(r, 5));
      const refused = await call();
      expect(refused?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(refused?.metadata.get('strata-error')).toEqual(['Busy']);
      expect(held).toHaveLength(2); // the refused call never reached its handler
      for (const release of held.splice(0)) release();
      expect(await first).toBeNull();
      expect(await second).toBeNull();
      const third = call();
      while (held.length < 1) await new Promise((r) => setTimeout(r, 5));
      held[0]();
      expect(await third).toBeNull();
      // A call its client gave up on frees its slot then, though its handler has not answered.
      held.length = 0;
      const abandoned = new Promise<grpc.ServiceError | null>((resolve) =>
        client!.makeUnaryRequest('/test.Limits/Hold', identity, identity, Buffer.alloc(0), { deadline: Date.now() + 300 }, (err) => resolve(err)),
      );
      const waiting = call();
      while (held.length < 2) await new Promise((r) => setTimeout(r, 5));
      expect((await abandoned)?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
      while (limiter.inFlight('127.0.0.1') > 1) await new Promise((r) => setTimeout(r, 5)); // the cancel reached the server
      const admitted = call();
      while (held.length < 3) await new Promise((r) => setTimeout(r, 5));
      for (const release of held.splice(0)) release();
      expect(await waiting).toBeNull();
      expect(await admitted).toBeNull();
    });
  });
});
