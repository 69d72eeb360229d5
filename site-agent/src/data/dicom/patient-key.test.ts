import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { writeDicomPart10, type SyntheticImageSpec } from '../../sim/writer.js';
import { patientKeyOf } from './patient-key.js';
import { decodeDicom } from './reader.js';
import { endOfFileMeta } from './sniff.js';

const patientKey = (bytes: Uint8Array, file = 'test'): string | undefined => decodeDicom(bytes, { file }).header.patientKey;

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const testdata = resolve(repoRoot, '../shared/testdata/dicom');

function spec(patientId: string): SyntheticImageSpec {
  return {
    sopClass: 'secondary-capture',
    transferSyntax: 'explicit-vr-little-endian',
    sopInstanceUid: '2.25.1234',
    studyInstanceUid: '2.25.4567',
    seriesInstanceUid: '2.25.89',
    patientName: 'SIMULATED^TEST',
    patientId,
    studyDate: '20000101',
    studyId: 'S1',
    seriesNumber: 1,
    instanceNumber: 1,
    modality: 'OT',
    institutionName: 'Simulated Hospital (synthetic)',
    rows: 4,
    columns: 4,
    photometricInterpretation: 'MONOCHROME2',
    bitsStored: 12,
    pixelRepresentation: 0,
    rescaleSlope: 1,
    rescaleIntercept: 0,
    windowCenter: 2048,
    windowWidth: 4096,
    pixels: Uint16Array.from({ length: 16 }, (_, i) => i * 200),
  };
}

/** Short-VR explicit little-endian element (what file meta UIDs use), padded to even length with NUL. */
function uidElement(element: number, value: string): Uint8Array {
  const padded = value.length % 2 === 1 ? `${value}\0` : value;
  const out = new Uint8Array(8 + padded.length);
  const view = new DataView(out.buffer);
  view.setUint16(0, 0x0002, true);
  view.setUint16(2, element, true);
  out.set([0x55, 0x49], 4); // 'UI'
  view.setUint16(6, padded.length, true);
  out.set(Buffer.from(padded, 'latin1'), 8);
  return out;
}

/** A Part 10 file with the given meta elements (after File Meta Information Group Length) in front of `dataset`. */
function part10(meta: Uint8Array[], dataset: Uint8Array): Uint8Array {
  const length = Buffer.from([0x02, 0x00, 0x00, 0x00, 0x55, 0x4c, 0x04, 0x00, 0, 0, 0, 0]); // (0002,0000) UL 4
  length.writeUInt32LE(meta.reduce((n, e) => n + e.length, 0), 8);
  return Buffer.concat([Buffer.alloc(128), Buffer.from('DICM', 'latin1'), length, ...meta, dataset]);
}

describe('the header\'s patient key', () => {
  const written = writeDicomPart10(spec('SIM-7'));
  const dataset = written.subarray(endOfFileMeta(written, 132));

  it('is the pseudonym of the Patient ID in every encoding the reader accepts', () => {
    const variants: Record<string, Uint8Array> = {
      'part 10': written,
      'implicit VR': writeDicomPart10({ ...spec('SIM-7'), transferSyntax: 'implicit-vr-little-endian' }),
      'no preamble': written.subarray(132),
      'bare dataset': dataset,
      'file meta without a transfer syntax': part10([uidElement(0x0002, '1.2.840.10008.5.1.4.1.1.7')], dataset),
      deflated: part10([uidElement(0x0010, '1.2.840.10008.1.2.1.99')], deflateRawSync(dataset)),
    };
    for (const [name, bytes] of Object.entries(variants)) expect(patientKey(bytes, name), name).toBe(patientKeyOf('SIM-7'));
  });

  it('reads real files, big endian and bare datasets included', async () => {
    for (const [file, id] of [
      ['MR_small.dcm', '4MR1'],
      ['MR_small_bigendian.dcm', '4MR1'],
      ['MR_small_implicit.dcm', '4MR1'],
      ['no_meta.dcm', '1CT1'],
      ['SC_rgb_rle.dcm', 'ID1'],
    ] as const) {
      expect(patientKey(await readFile(join(testdata, file)), file), file).toBe(patientKeyOf(id));
    }
  });

  it('is undefined for an empty or missing ID', async () => {
    expect(patientKey(writeDicomPart10(spec('')))).toBeUndefined();
    // Deflated, with a zero-length Patient ID.
    expect(patientKey(await readFile(join(testdata, 'image_dfl.dcm')))).toBeUndefined();
  });

  it('never holds the ID itself', () => {
    const header = decodeDicom(writeDicomPart10(spec('MRN-4711')), { file: 'x' }).header;
    expect(JSON.stringify(header)).not.toContain('4711');
  });
});

describe('patientKeyOf', () => {
  it('is a stable pseudonym that does not contain the ID', () => {
    const key = patientKeyOf('MRN-4711');
    expect(key).toMatch(/^[0-9a-f]{64}$/);
    expect(patientKeyOf('MRN-4711')).toBe(key);
    expect(patientKeyOf('MRN-4712')).not.toBe(key);
    expect(key).not.toContain('4711');
  });
});
