// A fetch from a store that accepts connections but never answers, or stops mid-object, fails
// Unavailable once its limits pass (short here): a tier read never hangs. Loopback servers only.
import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { S3ObjectTier } from '../common/object-tier.js';
import type { StrataError } from '../common/errors.js';
import { checkTierCopy, fetchToMemory } from './tier-fetch.js';

const LIMITS = { answerTimeoutMs: 500, idleTimeoutMs: 500 };
const COPY = { tier: 'cold', key: 'chunks/c1', storedBytes: 1000, crc32c: 0 };

describe('tier fetch limits', () => {
  const servers: http.Server[] = [];
  const tiers: S3ObjectTier[] = [];

  afterEach(async () => {
    for (const tier of tiers.splice(0)) tier.close();
    for (const server of servers.splice(0)) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  async function storeThat(handle: (res: http.ServerResponse) => void): Promise<S3ObjectTier> {
    const server = http.createServer((_req, res) => handle(res));
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const tier = new S3ObjectTier({
      name: 'cold', endpoint: `http://127.0.0.1:${port}`, region: 'us-east-1', bucket: 'b', prefix: '',
      forcePathStyle: true, accessKeyId: 'k', secretAccessKey: 's', sessionToken: '',
    });
    tiers.push(tier);
    return tier;
  }

  const failure = (promise: Promise<unknown>) => promise.then(() => expect.unreachable('expected a failure'), (err: StrataError) => err);

  it('gives up on a store that never answers', async () => {
    const tier = await storeThat(() => {}); // accepts, reads the request, never replies
    const err = await failure(fetchToMemory(tier, 'c1', COPY, LIMITS));
    expect(err.kind).toBe('Unavailable');
    expect(err.message).toMatch(/^chunk c1: object chunks\/c1 in tier 'cold': the store stalled \(no answer within 0.5 s\); retry later$/);
  });

  it('gives up on a body that stops coming', async () => {
    const tier = await storeThat((res) => {
      res.writeHead(200, { 'content-length': String(COPY.storedBytes) });
      res.write(Buffer.alloc(100)); // then nothing
    });
    const err = await failure(fetchToMemory(tier, 'c1', COPY, LIMITS));
    expect(err.kind).toBe('Unavailable');
    expect(err.message).toContain('no bytes for 0.5 s');
  });

  it('checks a requested tier copy', () => {
    expect(() => checkTierCopy('c1', { tier: 'cold', key: '', storedBytes: 10 })).toThrow(/needs a tier name and an object key/);
    expect(() => checkTierCopy('c1', { tier: 'cold', key: 'k', storedBytes: 0 })).toThrow(/not a chunk's stored size/);
    expect(checkTierCopy('c1', { tier: 'cold', key: 'k', storedBytes: 10 })).toEqual({ tier: 'cold', key: 'k', storedBytes: 10, crc32c: 0 });
  });
});
