import { describe, expect, it } from 'vitest';
import { isPngMaskName, pngMaskCandidates } from './mask-files.js';

describe('PNG mask naming', () => {
  it('pairs <name>.mask.png with <name>.<ext> or <name> in the same folder', () => {
    const files = ['a/x.dcm', 'a/x.mask.png', 'a/IM0001', 'a/IM0001.mask.png', 'b/x.mask.png', 'c/y.png', 'c/y.dcm', 'c/y.MASK.PNG', 'c/z.nii.gz', 'c/z.nii.mask.png'];
    expect(Object.fromEntries(pngMaskCandidates(files))).toEqual({
      'a/x.mask.png': ['a/x.dcm'],
      'a/IM0001.mask.png': ['a/IM0001'],
      'b/x.mask.png': [],
      'c/y.MASK.PNG': ['c/y.png', 'c/y.dcm'],
      'c/z.nii.mask.png': ['c/z.nii.gz'],
    });
  });

  it('recognises the suffix case-insensitively, not as a whole name', () => {
    expect(['a.mask.png', 'A.Mask.Png', '.mask.png', 'mask.png', 'a.mask.png.dcm'].map(isPngMaskName)).toEqual([true, true, false, false, false]);
  });
});
