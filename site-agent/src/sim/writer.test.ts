import dicomParser from 'dicom-parser';
import { describe, expect, it } from 'vitest';
import { decodeDicom } from '../data/dicom/reader.js';
import { IMPLEMENTATION_CLASS_UID, SOP_CLASS_UIDS, writeDicomPart10, type SyntheticImageSpec } from './writer.js';

function spec(overrides: Partial<SyntheticImageSpec> = {}): SyntheticImageSpec {
  const rows = 5;
  const columns = 3; // odd sizes on purpose
  const pixels = new Uint16Array(rows * columns);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 273) % 4096;
  pixels[0] = 4095;
  return {
    sopClass: 'secondary-capture',
    transferSyntax: 'explicit-vr-little-endian',
    sopInstanceUid: '2.25.1234', // odd length (9): needs NUL padding
    studyInstanceUid: '2.25.4567',
    seriesInstanceUid: '2.25.89',
    patientName: 'SIMULATED^TEST', // even
    patientId: 'SIM-1', // odd: needs space padding
    studyDate: '20000101',
    studyId: 'S1',
    seriesNumber: 1,
    instanceNumber: 7,
    modality: 'CT',
    institutionName: 'Simulated Hospital (synthetic)',
    rows,
    columns,
    photometricInterpretation: 'MONOCHROME2',
    bitsStored: 12,
    pixelRepresentation: 0,
    rescaleSlope: 0.5,
    rescaleIntercept: -1024,
    windowCenter: 40.5,
    windowWidth: 400,
    pixels,
    ...overrides,
  };
}

describe('writeDicomPart10', () => {
  it.each(['explicit-vr-little-endian', 'implicit-vr-little-endian'] as const)('round-trips through the reader (%s)', (transferSyntax) => {
    const s = spec({ transferSyntax });
    const image = decodeDicom(writeDicomPart10(s), { file: 'synthetic.dcm' });
    expect(Array.from(image.pixels)).toEqual(Array.from(s.pixels));
    expect(image.header).toMatchObject({
      transferSyntaxUid: transferSyntax === 'explicit-vr-little-endian' ? '1.2.840.10008.1.2.1' : '1.2.840.10008.1.2',
      sopClassUid: SOP_CLASS_UIDS['secondary-capture'],
      sopInstanceUid: '2.25.1234',
      seriesInstanceUid: '2.25.89',
      studyInstanceUid: '2.25.4567',
      modality: 'CT',
      rows: 5,
      columns: 3,
      samplesPerPixel: 1,
      photometricInterpretation: 'MONOCHROME2',
      bitsAllocated: 16,
      bitsStored: 12,
      highBit: 11,
      pixelRepresentation: 0,
      numberOfFrames: 1,
      rescaleSlope: 0.5,
      rescaleIntercept: -1024,
      windowCenter: 40.5,
      windowWidth: 400,
    });
  });

  it('round-trips signed MONOCHROME1 pixels, including negative values', () => {
    const pixels = Int16Array.from([-2048, -1, 0, 1, 2047, -300, 5, 6, 7, 8, 9, 10, 11, 12, -13]);
    const s = spec({ pixelRepresentation: 1, pixels, photometricInterpretation: 'MONOCHROME1', sopClass: 'mr', modality: 'MR' });
    const image = decodeDicom(writeDicomPart10(s));
    expect(image.pixels).toBeInstanceOf(Int16Array);
    expect(Array.from(image.pixels)).toEqual(Array.from(pixels));
    expect(image.header).toMatchObject({ signed: true, photometricInterpretation: 'MONOCHROME1', sopClassUid: SOP_CLASS_UIDS.mr });
  });

  it('writes a valid Part 10 layout with even-length values and a correct group length', () => {
    const bytes = writeDicomPart10(spec());
    expect(bytes.length % 2).toBe(0);
    expect(bytes.subarray(0, 128).every((b) => b === 0)).toBe(true);
    expect(new TextDecoder().decode(bytes.subarray(128, 132))).toBe('DICM');

    const dataSet = dicomParser.parseDicom(bytes);
    for (const [tag, element] of Object.entries(dataSet.elements)) {
      expect(element.length % 2, `${tag} has odd length`).toBe(0);
    }
    // (0002,0000) counts the bytes from the end of its own element to the end of the meta group.
    const groupLength = dataSet.uint32('x00020000') ?? -1;
    const metaEnd = Math.max(...Object.values(dataSet.elements).filter((e) => e.tag.startsWith('x0002')).map((e) => e.dataOffset + e.length));
    expect(groupLength).toBe(metaEnd - (132 + 12));
    expect(dataSet.string('x00020012')).toBe(IMPLEMENTATION_CLASS_UID);
    expect(dataSet.string('x00020003')).toBe('2.25.1234');
    expect(dataSet.elements.x7fe00010?.vr).toBe('OW');

    // Odd-length values are padded: UI with NUL, other strings with a space.
    const uidElement = dataSet.elements.x00080018;
    const idElement = dataSet.elements.x00100020;
    if (uidElement === undefined || idElement === undefined) throw new Error('missing elements');
    expect(bytes[uidElement.dataOffset + uidElement.length - 1]).toBe(0);
    expect(bytes[idElement.dataOffset + idElement.length - 1]).toBe(0x20);
    expect(dataSet.string('x00100010')).toMatch(/^SIMULATED/);
  });

  it('adds frame-of-reference and image-plane attributes for CT and MR, not for secondary capture', () => {
    const ct = dicomParser.parseDicom(writeDicomPart10(spec({ sopClass: 'ct' })));
    expect(ct.string('x00080016')).toBe(SOP_CLASS_UIDS.ct);
    expect(ct.string('x00200052')).toMatch(/^2\.25\.\d+$/);
    expect(ct.string('x00280030')).toBe('1\\1');
    expect(ct.string('x00281054')).toBe('HU');
    const mr = dicomParser.parseDicom(writeDicomPart10(spec({ sopClass: 'mr', frameOfReferenceUid: '2.25.99' })));
    expect(mr.string('x00200052')).toBe('2.25.99');
    expect(mr.string('x00180023')).toBe('2D');
    expect(mr.elements.x00281054).toBeUndefined();
    const sc = dicomParser.parseDicom(writeDicomPart10(spec()));
    expect(sc.elements.x00200052).toBeUndefined();
    expect(sc.string('x00080064')).toBe('SYN');
  });

  it('refuses values that would be misread', () => {
    expect(() => writeDicomPart10(spec({ pixels: Uint16Array.from({ length: 15 }, () => 4096) }))).toThrow(/does not fit in 12 unsigned bits/);
    expect(() => writeDicomPart10(spec({ pixels: new Uint16Array(14) }))).toThrow(/expected 15/);
    expect(() => writeDicomPart10(spec({ pixelRepresentation: 1 }))).toThrow(/Int16Array/);
    expect(() => writeDicomPart10(spec({ sopInstanceUid: '1.02.3' }))).toThrow(/not a valid UID/);
    expect(() => writeDicomPart10(spec({ patientName: 'Ünïcode' }))).toThrow(/printable ASCII/);
  });
});
