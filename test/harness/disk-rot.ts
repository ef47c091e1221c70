// Disk rot, injected: one byte of a chunk file changed in place, as a failing disk would.
import { open } from 'node:fs/promises';
import { chunkFilePath } from '../../datanode/chunk-layout.js';

/** Flips one byte of a chunk file, `fromEnd` bytes before its end (a payload byte of the last block). */
export async function flipChunkFileByte(dataDir: string, chunkId: string, fromEnd = 10): Promise<void> {
  const handle = await open(chunkFilePath(dataDir, chunkId), 'r+');
  try {
    const at = (await handle.stat()).size - fromEnd;
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, at);
    byte[0] ^= 0x5a;
    await handle.write(byte, 0, 1, at);
  } finally {
    await handle.close();
  }
}
