// The mount's bookkeeping for libfuse's deferred `.fuse_hidden…` removals: which removal waits,
// and which opens must not use a file whose removal was decided while they were under way.
import { describe, expect, test } from 'vitest';
import type { FileBackend, WriteLimits } from './open-file.js';
import { HandleTable } from './handles.js';

// Neither is touched by the removal bookkeeping.
const table = () => new HandleTable({} as FileBackend, {} as WriteLimits);
const HIDDEN = '/d/.fuse_hidden0000000100000001';

describe('HandleTable removals', () => {
  test('a removal decided with no open under way marks the inode, so a later open of it is refused', () => {
    const handles = table();
    expect(handles.deferRemoval(HIDDEN, 7)).toBe(false);
    expect(handles.isRemoving(7)).toBe(true);
    expect(handles.isRemoving(8)).toBe(false);
  });

  test('a removal meeting an open under way waits for it, and is marked only when taken', () => {
    const handles = table();
    handles.beginOpen(HIDDEN);
    expect(handles.deferRemoval(HIDDEN, 7)).toBe(true);
    expect(handles.isRemoving(7)).toBe(false);
    expect(handles.takeRemovable()).toEqual([]);
    handles.endOpen(HIDDEN);
    expect(handles.takeRemovable()).toEqual([HIDDEN]);
    expect(handles.isRemoving(7)).toBe(true);
  });
});
