// Is a data node's process gone? One TCP connect per advertised port. Only "connection refused"
// on every port counts: nothing listens there, so the process died (or stopped). A connect that
// succeeds (even to a frozen process: its kernel still accepts) or times out proves nothing, and
// the node then waits out the heartbeat grace like any silent one.
import net from 'node:net';

export type PortState = 'refused' | 'open' | 'unknown';

export const PROBE_TIMEOUT_MS = 2000;

/** Connects to host:port once and hangs up: refused, open, or unknown (timeout, other errors). */
export function probePort(address: string, timeoutMs = PROBE_TIMEOUT_MS): Promise<PortState> {
  const match = /^(.*):(\d{1,5})$/.exec(address);
  if (!match) return Promise.resolve('unknown');
  const host = match[1]!.replace(/^\[(.*)\]$/, '$1');
  return new Promise((resolve) => {
    const socket = net.connect({ host, port: Number(match[2]) });
    const done = (state: PortState) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(state);
    };
    const timer = setTimeout(() => done('unknown'), timeoutMs);
    socket.once('connect', () => done('open'));
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED' ? 'refused' : 'unknown'));
  });
}

/** Of several ports: refused when every one refuses, open when any accepts, else unknown. */
export async function probePorts(addresses: readonly string[], timeoutMs = PROBE_TIMEOUT_MS): Promise<PortState> {
  const wanted = addresses.filter(Boolean);
  if (wanted.length === 0) return 'unknown';
  const states = await Promise.all(wanted.map((a) => probePort(a, timeoutMs)));
  if (states.every((s) => s === 'refused')) return 'refused';
  return states.includes('open') ? 'open' : 'unknown';
}
