// Backpressure on gRPC streams: a writer that got `false` from write() waits here.
import type { EventEmitter } from 'node:events';

/** Resolves on 'drain', or when the stream can no longer drain (closed, cancelled, settled). */
export function waitForDrain(stream: EventEmitter, settled?: Promise<unknown>): Promise<void> {
  return new Promise((resolve) => {
    const events = ['drain', 'close', 'cancelled', 'error'];
    const done = () => {
      for (const event of events) stream.off(event, done);
      resolve();
    };
    for (const event of events) stream.on(event, done);
    settled?.then(done);
  });
}
