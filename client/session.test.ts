// The client's session against a coordinator that predates the stream: a stand-in server that
// serves only the unary Stat (grpc-js answers UNIMPLEMENTED for the rest, as an old version would).
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { bindServer, strataProto, unaryHandler } from '../common/grpc.js';
import { Strata } from './index.js';

describe('session: a coordinator without the Session method', () => {
  let server: grpc.Server;
  let address: string;
  let stats = 0;

  beforeAll(async () => {
    server = new grpc.Server();
    server.addService(strataProto.Coordinator.service, {
      Stat: unaryHandler(async () => {
        stats++;
        return { attr: { ino: 1, type: 'DIRECTORY', mode: 0o755 } };
      }),
    });
    address = `127.0.0.1:${await bindServer(server, '127.0.0.1:0')}`;
  });
  afterAll(() => server?.forceShutdown());

  test('path calls fall back to the unary RPCs; inode calls say what is missing', async () => {
    const fs = Strata.connect({ coordinators: address, failoverTimeoutMs: 2000 });
    try {
      expect((await fs.stat('/')).ino).toBe(1);
      expect((await fs.stat('/')).isDirectory()).toBe(true);
      expect(stats).toBe(2);
      await expect(fs.inodes.getattr(1)).rejects.toMatchObject({ kind: 'Unavailable', message: expect.stringMatching(/no session stream/) });
    } finally {
      fs.close();
    }
  });
});
