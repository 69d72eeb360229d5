import { describe, expect, it } from 'vitest';
import { encodeDataset, packBits, part10, text } from './dicom-build.testkit.js';
import { RT_STRUCTURE_SET_SOP_CLASS_UID } from './rtstruct.js';
import { buildSeg, CT_SOP_CLASS } from './seg.testkit.js';
import { mediaStorageSopClass, sniffMaskObject } from './sniff.js';

const seg = buildSeg({ rows: 2, columns: 2, frames: [{ segment: 1, sources: ['2.25.1'] }], pixelData: packBits([1, 0, 0, 1]) });

describe('sniffMaskObject', () => {
  it('tells Segmentations and RT Structure Sets from images by SOP Class', () => {
    expect(sniffMaskObject(seg)).toBe('dicom-seg');
    expect(sniffMaskObject(part10([text(0x00080060, 'CS', 'RTSTRUCT')], RT_STRUCTURE_SET_SOP_CLASS_UID, '2.25.2'))).toBe('rtstruct');
    expect(sniffMaskObject(part10([text(0x00080060, 'CS', 'CT')], CT_SOP_CLASS, '2.25.3'))).toBeUndefined();
    expect(sniffMaskObject(new TextEncoder().encode('just some text, long enough to be looked at by the parser'))).toBeUndefined();
  });

  it('needs only the file meta header, so a prefix of the file will do', () => {
    expect(mediaStorageSopClass(seg)).toBe('1.2.840.10008.5.1.4.1.1.66.4');
    expect(sniffMaskObject(seg.subarray(0, 300), { metaOnly: true })).toBe('dicom-seg');
    expect(mediaStorageSopClass(seg.subarray(0, 150))).toBeUndefined();
  });

  it('parses a bare dataset (no file meta) whole, unless told to look at the meta header only', () => {
    const bare = encodeDataset([text(0x00080016, 'UI', RT_STRUCTURE_SET_SOP_CLASS_UID), text(0x00080018, 'UI', '2.25.4'), text(0x00080060, 'CS', 'RTSTRUCT')], true, true);
    expect(mediaStorageSopClass(bare)).toBeUndefined();
    expect(sniffMaskObject(bare)).toBe('rtstruct');
    expect(sniffMaskObject(bare, { metaOnly: true })).toBeUndefined();
  });
});
