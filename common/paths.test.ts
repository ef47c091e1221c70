import { describe, expect, test } from 'vitest';
import { StrataError } from './errors.js';
import { clipMessage, quoted, ERROR_MESSAGE_MAX_BYTES } from './limits.js';
import { splitParent, splitPath, validateName } from './paths.js';

const invalidBy = (fn: () => unknown, pattern: RegExp) => {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(StrataError);
    expect((err as StrataError).kind).toBe('Invalid');
    expect((err as StrataError).message).toMatch(pattern);
    return;
  }
  throw new Error('expected Invalid');
};

describe('name and path rules', () => {
  test('names: empty, reserved, slash, NUL, too long, not UTF-8', () => {
    invalidBy(() => validateName(''), /empty/);
    invalidBy(() => validateName('.'), /reserved/);
    invalidBy(() => validateName('..'), /reserved/);
    invalidBy(() => validateName('a/b'), /contains '\/'/);
    invalidBy(() => validateName('a\0b'), /contains NUL/);
    invalidBy(() => validateName('x'.repeat(256)), /longer than 255 bytes/);
    invalidBy(() => validateName('é'.repeat(128)), /longer than 255 bytes/); // 256 bytes of UTF-8
    invalidBy(() => validateName('a\uFFFDb'), /not valid UTF-8/); // what a decoder leaves of bytes that were not UTF-8
    invalidBy(() => validateName('\uD800'), /not valid UTF-8/);
    invalidBy(() => validateName('a\uDC00'), /not valid UTF-8/);
    for (const ok of ['a', '...', 'x'.repeat(255), 'é'.repeat(127), '\u{1F600}', ' ', '-rf', 'a\\b']) expect(validateName(ok)).toBe(ok);
  });

  test('paths: absolute, bounded, // and . dropped, .. never above the root', () => {
    expect(splitPath('/a//b/./c/')).toEqual(['a', 'b', 'c']);
    expect(splitPath('/a/../../..')).toEqual([]);
    expect(splitPath('/../a')).toEqual(['a']);
    invalidBy(() => splitPath('a/b'), /must be absolute/);
    invalidBy(() => splitPath(''), /must be absolute/);
    invalidBy(() => splitPath('/' + 'a/'.repeat(2049)), /longer than 4096 bytes/);
    invalidBy(() => splitPath('/a/\0'), /contains NUL/);
    invalidBy(() => splitParent('/'), /the root has no parent/);
  });

  test('client input quoted in a message stays short', () => {
    let message = '';
    try {
      splitPath('x'.repeat(1_000_000));
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message.length).toBeLessThan(200);
    expect(quoted('a\0b')).toBe('"a\\u0000b"');
    expect(quoted('y'.repeat(500))).toMatch(/^"y{80}…"$/);
    expect(quoted(undefined)).toBe('undefined');
    expect(quoted(7)).toBe('7');
  });

  test('messages leave a server clipped, never mid-character', () => {
    const long = 'é'.repeat(10_000);
    const clipped = clipMessage(long);
    expect(Buffer.byteLength(clipped)).toBeLessThanOrEqual(ERROR_MESSAGE_MAX_BYTES);
    expect(clipped).not.toContain('\uFFFD');
    expect(clipped).toMatch(/20000 bytes in all/);
    expect(clipMessage('short')).toBe('short');
  });
});
