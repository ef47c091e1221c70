// Hostile values for the fuzz run (test/fuzz.test.ts): fast-check arbitraries for every field of
// every request message, walked from the proto's reflection, so a new field or method is fuzzed
// without touching this file. Values are chosen to hit edges: empty, reserved and over-long names,
// NUL, lone surrogates, '..' escapes, over-long paths, ids shaped like index keys or file paths,
// numbers at every integer boundary, huge repeated fields, oversized bytes.
import fc from 'fast-check';
import protobuf from 'protobufjs';

/* eslint-disable @typescript-eslint/no-explicit-any -- plain protobufjs objects */

/** Where a message may write: mutations stay inside the scratch directory and its inodes. */
export interface Confinement {
  /** Paths of mutating requests are rewritten to stay under this directory (e.g. '/fuzz'). */
  scratchDir: string;
  /** Inode numbers that must not be mutated (everything outside scratch). */
  protectedInos: ReadonlySet<number>;
  /** What a protected inode is replaced with in a mutating request. */
  scratchIno: number;
}

const NAMES = [
  '', '.', '..', '...', '/', '//', 'a/b', '\0', 'a\0b', ' ', '\n', '\t', '\u007f', '-', '--help',
  'x'.repeat(255), 'x'.repeat(256), 'x'.repeat(200_000), 'é'.repeat(128), 'é'.repeat(127) + 'x', '\u{1F600}'.repeat(64),
  '\uD800', 'a\uDC00b', '\uFFFD', '\uFEFF', '%2e%2e', '..\\..', 'c/1', 'd/1/x', 'i/', 'q/', 'CON', 'nul',
];
const HUGE = '18446744073709551615';
const INTS = [0, 1, -1, 2, 255, 256, 4095, 4096, 65535, 65536, 2 ** 31 - 1, 2 ** 31, -(2 ** 31), 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, 2 ** 53, -(2 ** 53)];
const STRINGS = [
  '', '\0', '..', '../../etc/passwd', '/etc/passwd', 'A'.repeat(128), 'A'.repeat(129), 'a'.repeat(70_000),
  'c/', 'c0', 'i/x', 'q/x', 'chunks/00/x', '%00', '\uD800', '\uFFFD', 'one', 'quorum', 'all', 'ALL', 'none',
  '127.0.0.1:1', 'localhost:1', '127.0.0.1:0', '127.0.0.1:99999', ':', '::', '[::1]:1', 'x:y', '127.0.0.1', '/tmp/x.sock', 'unix:/tmp/x',
  '00000000-0000-0000-0000-000000000000', 'deadbeef', '-', '_', 'FILE', 'DIRECTORY', 'FIFO', 'CHAR_DEVICE',
];
const IDS = ['', 'dn1x', 'A'.repeat(64), 'A'.repeat(65), 'a b', 'a/b', '..', '\0', 'x'.repeat(1000), '-', 'node.1', '\uD800'];

const nameArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...NAMES) },
  { weight: 2, arbitrary: fc.string({ maxLength: 16 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 300 }) },
  { weight: 1, arbitrary: fc.string({ unit: fc.constantFrom('a', '.', '/', '\0', 'é', '\uD800'), maxLength: 300 }) },
);

const pathArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.array(nameArb, { maxLength: 5 }).map((parts) => '/' + parts.join('/')) },
  { weight: 1, arbitrary: fc.constantFrom('', '/', '//', '/.', '/..', '/../..', 'relative', './x', '/' + 'a/'.repeat(2100), '/'.repeat(5000), '/' + 'x'.repeat(4097), '/keep/../..', '\0/x', 'x'.repeat(1_000_000), '/' + 'y'.repeat(1_000_000)) },
  { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
);

const stringArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...STRINGS) },
  { weight: 2, arbitrary: fc.string({ maxLength: 24 }) },
  { weight: 1, arbitrary: fc.stringMatching(/^[A-Za-z0-9_-]{1,40}$/) },
);

const idArb: fc.Arbitrary<string> = fc.oneof(fc.constantFrom(...IDS), fc.stringMatching(/^[A-Za-z0-9_.-]{1,20}$/).map((id) => `fuzz-${id}`));

const intArb: fc.Arbitrary<number | string> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom<number | string>(...INTS, HUGE, '9223372036854775808') },
  { weight: 2, arbitrary: fc.nat({ max: 10_000 }) },
  { weight: 1, arbitrary: fc.integer() },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String) },
);

const bytesArb: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 4, arbitrary: fc.uint8Array({ maxLength: 256 }) },
  { weight: 1, arbitrary: fc.constantFrom(Buffer.alloc(0), Buffer.alloc(4 * 1024 * 1024 + 1, 7), Buffer.alloc(1024 * 1024, 0)) },
);

const INO_FIELDS = new Set(['ino', 'parent', 'newParent', 'srcParent', 'dstParent', 'releaseDirs', 'releaseAttrs']);
const PATH_FIELDS = new Set(['path', 'from', 'to', 'pathPrefix']);
const NAME_FIELDS = new Set(['name', 'newName', 'srcName', 'dstName']);
const ID_FIELDS = new Set(['nodeId', 'chunkId', 'excludeNodes', 'corruptChunks', 'storedOn', 'failed']);

function inoArb(protectedInos: ReadonlySet<number>, scratchInos: readonly number[]): fc.Arbitrary<number | string> {
  return fc.oneof(
    { weight: 2, arbitrary: fc.constantFrom<number | string>(...scratchInos) },
    { weight: 2, arbitrary: fc.constantFrom<number | string>(0, 1, ...protectedInos, 2 ** 53, HUGE, -1) },
    { weight: 1, arbitrary: fc.nat({ max: 200 }) },
    { weight: 1, arbitrary: fc.bigInt({ min: 2n ** 40n, max: 2n ** 64n - 1n }).map(String) },
  );
}

function scalarArb(field: protobuf.Field, inos: fc.Arbitrary<number | string>): fc.Arbitrary<unknown> {
  if (field.resolvedType instanceof protobuf.Enum) return fc.oneof(fc.constantFrom(...Object.keys(field.resolvedType.values)), fc.constantFrom(99, -1));
  switch (field.type) {
    case 'string':
      if (PATH_FIELDS.has(field.name)) return pathArb;
      if (NAME_FIELDS.has(field.name)) return nameArb;
      if (ID_FIELDS.has(field.name)) return fc.oneof(idArb, stringArb);
      return stringArb;
    case 'bytes':
      return bytesArb;
    case 'bool':
      return fc.boolean();
    case 'double':
    case 'float':
      return fc.oneof(fc.constantFrom(NaN, Infinity, -Infinity, -1, 0, 1e308, 5e-324), fc.double());
    default:
      return INO_FIELDS.has(field.name) ? inos : intArb;
  }
}

/**
 * A message of `type` with hostile values (depth-limited: nested messages stop at 4). Inode
 * fields favour `scratchInos` (a directory and a file of the scratch tree), so ops reach real inodes.
 */
export function messageArb(type: protobuf.Type, protectedInos: ReadonlySet<number>, scratchInos: readonly number[], depth = 0): fc.Arbitrary<Record<string, unknown>> {
  if (depth > 4) return fc.constant({});
  const inos = inoArb(protectedInos, scratchInos);
  const valueOf = (field: protobuf.Field): fc.Arbitrary<unknown> => {
    const one = field.resolvedType instanceof protobuf.Type ? messageArb(field.resolvedType, protectedInos, scratchInos, depth + 1) : scalarArb(field, inos);
    if (!field.repeated) return one;
    return fc.oneof(
      { weight: 4, arbitrary: fc.array(one, { maxLength: 4 }) },
      // A huge repeated field, still under the message limit: what the server holds per request.
      { weight: 1, arbitrary: field.resolvedType instanceof protobuf.Type ? fc.constant([]) : one.map((value) => new Array(20_000).fill(value)) },
    );
  };
  // One member per real oneof (a proto3 `optional` field is a synthetic oneof '_name': left as a field).
  const oneofs = type.oneofsArray.filter((o) => !o.name.startsWith('_'));
  const inOneof = new Set(oneofs.flatMap((o) => o.fieldsArray.map((f) => f.name)));
  const plain: Record<string, fc.Arbitrary<unknown>> = {};
  for (const field of type.fieldsArray) if (!inOneof.has(field.name)) plain[field.name] = valueOf(field);
  const base = fc.record(plain, { requiredKeys: [] });
  if (oneofs.length === 0) return base;
  const picks = oneofs.map((o) => fc.option(fc.constantFrom(...o.fieldsArray).chain((f) => valueOf(f).map((value) => [f.name, value] as const)), { freq: 8 }));
  return fc.tuple(base, ...picks).map(([fields, ...chosen]) => ({ ...fields, ...Object.fromEntries(chosen.filter((c): c is readonly [string, unknown] => c !== null)) }));
}

/** Raw bytes: random, or crafted to hit the decoder's edges. */
export const rawMessageArb: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 6, arbitrary: fc.uint8Array({ maxLength: 512 }).map((b) => Buffer.from(b)) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x41]), // a string field claiming 4 GiB
      Buffer.from([0x12, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), // an 11-byte varint
      Buffer.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), // uint64 max
      Buffer.from([0x0a, 0x02, 0xc3, 0x28]), // invalid UTF-8 in field 1
      Buffer.from([0x0a, 0x03, 0x2f, 0xff, 0xfe]), // '/' then invalid UTF-8
      Buffer.from([0x0a, 0x04, 0x2f, 0x61, 0x00, 0x62]), // '/a\0b'
      Buffer.alloc(100_000, 0x0b), // 100,000 nested start-group tags: a recursive skip
      Buffer.alloc(64 * 1024, 0x0a), // nested length prefixes
      Buffer.alloc(6 * 1024 * 1024, 0), // over the message limit
      Buffer.from([0xf8, 0xff, 0xff, 0xff, 0x0f, 0x01]), // the largest field number
      Buffer.from([0x07]), // wire type 7
    ),
  },
);

/** Resolves '..' lexically (as common/paths.ts does): the components the server would act on. */
function resolved(path: string): string[] | null {
  if (!path.startsWith('/')) return null;
  const out: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') out.pop();
    else out.push(part);
  }
  return out;
}

/**
 * A mutating request made safe for the data kept outside scratch: a path that would act outside
 * `scratchDir` is moved under it ('..' made harmless), a protected inode becomes the scratch one.
 * What the server receives is still hostile; only where it could write is bounded.
 */
export function confine(value: unknown, where: Confinement, key = ''): unknown {
  if (Array.isArray(value)) return value.map((v) => confine(v, where, key));
  if (value && typeof value === 'object' && !(value instanceof Uint8Array)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, confine(v, where, k)]));
  }
  if (PATH_FIELDS.has(key) && typeof value === 'string') {
    const scratch = where.scratchDir.slice(1);
    const inside = (p: string) => {
      const parts = resolved(p);
      return parts === null || (parts[0] === scratch && parts.length >= 2);
    };
    if (inside(value)) return value;
    const moved = `${where.scratchDir}/x/${value.replaceAll('..', '.,')}`;
    return inside(moved) ? moved : `${where.scratchDir}/x`;
  }
  if (INO_FIELDS.has(key) && (typeof value === 'number' || typeof value === 'string')) {
    const n = Number(value);
    return where.protectedInos.has(n) ? where.scratchIno : value;
  }
  return value;
}

/** True when raw bytes would decode into a request that could act outside scratch (skipped). */
export function escapesScratch(type: protobuf.Type, bytes: Buffer, where: Confinement): boolean {
  let decoded: unknown;
  try {
    decoded = type.toObject(type.decode(bytes), { longs: String, defaults: false });
  } catch {
    return false;
  }
  return JSON.stringify(confine(decoded, where)) !== JSON.stringify(decoded);
}

/** One value per kind of field, for `extremeMessages`. */
export interface Extreme {
  string: string;
  number: number | string;
  bytes: Uint8Array;
}

/** Every string, number, bytes field set at once: one message per extreme and per member of a oneof. */
export const EXTREMES: Extreme[] = [
  // Echoed whole, a 200 KB value once made a 200 KB grpc-message trailer the client refused.
  { string: 'x'.repeat(200_000), number: HUGE, bytes: Buffer.alloc(0) },
  { string: '\0'.repeat(10_000), number: -1, bytes: Buffer.alloc(1) },
  { string: '', number: 0, bytes: Buffer.alloc(0) },
  { string: '/..', number: 2 ** 53, bytes: Buffer.alloc(1024, 0xff) },
];

function extremeOf(type: protobuf.Type, extreme: Extreme, depth: number, member?: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const oneofMembers = new Set(type.oneofsArray.filter((o) => !o.name.startsWith('_')).flatMap((o) => o.fieldsArray.map((f) => f.name)));
  for (const field of type.fieldsArray) {
    if (oneofMembers.has(field.name) && field.name !== (member ?? [...oneofMembers][0])) continue;
    let value: unknown;
    if (field.resolvedType instanceof protobuf.Type) value = depth < 3 ? extremeOf(field.resolvedType, extreme, depth + 1) : {};
    else if (field.resolvedType instanceof protobuf.Enum) value = 99;
    else if (field.type === 'string') value = extreme.string;
    else if (field.type === 'bytes') value = extreme.bytes;
    else if (field.type === 'bool') value = true;
    else if (field.type === 'double' || field.type === 'float') value = NaN;
    else value = extreme.number;
    out[field.name] = field.repeated ? [value, value] : value;
  }
  return out;
}

/** Deterministic corner cases of `type`, run besides the sampled ones: one per extreme and oneof member. */
export function extremeMessages(type: protobuf.Type): Record<string, unknown>[] {
  const members = type.oneofsArray.filter((o) => !o.name.startsWith('_')).flatMap((o) => o.fieldsArray.map((f) => f.name));
  return EXTREMES.flatMap((extreme) => (members.length > 0 ? members.map((m) => extremeOf(type, extreme, 0, m)) : [extremeOf(type, extreme, 0)]));
}
