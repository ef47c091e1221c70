// Limits on what a client can make a server hold or send back, in one place. Every edge (the
// gRPC services, the session stream, the byte path) takes its bounds from here; name and path
// rules live beside them in common/paths.ts.

/**
 * An error message as it leaves a server, at most. Messages may quote client input (a path, an
 * id): unclipped, a 100 KB name came back as a 100 KB grpc-message trailer, which the client's
 * HTTP/2 layer refused, so the call never got its status and the connection stalled.
 */
export const ERROR_MESSAGE_MAX_BYTES = 2048;
/** Client input quoted inside a message, at most (characters). */
export const QUOTED_MAX_CHARS = 80;

/** A file's size (and the end of its last chunk) at most: JavaScript's integers are exact up to here (8 PiB). */
export const FILE_MAX_BYTES = Number.MAX_SAFE_INTEGER;
/** A timestamp at most: the last millisecond a JavaScript Date holds (year 275760). */
export const TIME_MAX_MS = 8.64e15;

/** `text` cut to ERROR_MESSAGE_MAX_BYTES of UTF-8 (never splitting a character), marked when cut. */
export function clipMessage(text: string, maxBytes = ERROR_MESSAGE_MAX_BYTES): string {
  if (text.length <= maxBytes / 3 || Buffer.byteLength(text) <= maxBytes) return text;
  const cut = Buffer.from(text).subarray(0, maxBytes - 40).toString('utf8').replace(/\uFFFD$/, '');
  return `${cut}… (${Buffer.byteLength(text)} bytes in all)`;
}

/** Client input for a message: JSON-quoted (NUL and controls visible) and cut to `maxChars`. */
export function quoted(value: unknown, maxChars = QUOTED_MAX_CHARS): string {
  if (typeof value !== 'string') return String(value).slice(0, maxChars); // undefined, 7, null: as they are
  const text = value;
  const json = JSON.stringify(text.length > maxChars ? text.slice(0, maxChars) : text);
  return text.length > maxChars ? `${json.slice(0, -1)}…"` : json;
}
