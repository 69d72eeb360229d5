import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import dicomParser from 'dicom-parser';
import { describe, expect, it } from 'vitest';
import { DicomRejection } from '../dicom/rejection.js';
import { readDicomSeg } from './dicom-seg.js';
import { ds, packBits, seq, text, us, type Syntax } from './dicom-build.testkit.js';
import { MaskError } from './errors.js';
import { buildSeg, CT_SOP_CLASS, derivation } from './seg.testkit.js';
import type { ImageGeometry } from './types.js';

const ROWS = 7;
const COLUMNS = 13; // 91 pixels a frame: frames 2 and 3 start in the middle of a byte
const A = '2.25.101';
const B = '2.25.102';
const C = '2.25.103';

const grid = (f: (x: number, y: number) => number): Uint8Array => Uint8Array.from({ length: ROWS * COLUMNS }, (_, i) => f(i % COLUMNS, Math.floor(i / COLUMNS)));
const frame1 = grid((x, y) => ((x + 2 * y) % 5 === 0 ? 1 : 0));
const frame2 = grid((x, y) => (x >= 4 && x <= 9 && y >= 2 ? 1 : 0));
const frame3 = grid((x, y) => (x === 12 || y === 6 ? 1 : 0));

/** Three frames: segment 1 and 2 on A (overlapping), segment 1 on B; C is referenced but has no frame. */
function threeFrameSeg(syntax: Syntax = 'explicit-le'): Uint8Array {
  return buildSeg({
    rows: ROWS,
    columns: COLUMNS,
    segments: [
      { number: 1, label: 'lesion' },
      { number: 2, label: 'vessel', algorithm: 'AUTOMATIC' },
    ],
    frames: [
      { segment: 1, sources: [A] },
      { segment: 2, sources: [A] },
      { segment: 1, sources: [B] },
    ],
    referenced: [A, B, C],
    pixelData: packBits([...frame1, ...frame2, ...frame3]),
    pixelVr: syntax === 'explicit-be' ? 'OW' : 'OB',
    syntax,
    extra: [seq(0x52009229, [])],
  });
}

function errorOf(run: () => unknown): MaskError {
  try {
    run();
  } catch (error) {
    if (error instanceof MaskError) return error;
    throw error;
  }
  throw new Error('expected a MaskError');
}

describe('readDicomSeg: BINARY', () => {
  for (const syntax of ['explicit-le', 'implicit-le', 'explicit-be', 'deflated'] as const) {
    it(`reads bit-packed frames that cross byte boundaries (${syntax})`, () => {
      const seg = readDicomSeg(threeFrameSeg(syntax), { file: 'seg.dcm' });
      expect(seg.segmentationType).toBe('BINARY');
      expect(seg.segments).toEqual([
        { number: 1, label: 'lesion', algorithmType: 'MANUAL' },
        { number: 2, label: 'vessel', algorithmType: 'AUTOMATIC' },
      ]);
      expect([...seg.masks.keys()].sort()).toEqual([A, B, C]);
      // Where segments 1 and 2 overlap on A, 2 wins.
      const expectedA = frame1.map((v, i) => (frame2[i] === 1 ? 2 : v));
      expect([...(seg.masks.get(A)?.labels ?? [])]).toEqual([...expectedA]);
      expect([...(seg.masks.get(B)?.labels ?? [])]).toEqual([...frame3]);
      expect(seg.masks.get(C)).toEqual({ rows: ROWS, columns: COLUMNS, labels: new Uint8Array(ROWS * COLUMNS) });
      expect(seg.unresolved).toEqual([]);
    });
  }

  it('reads only the segments segmentLabels names, so another segment cannot paint over them', () => {
    const seg = readDicomSeg(threeFrameSeg(), { file: 'seg.dcm', segmentLabels: new Map([[' LESION ', 1]]) });
    expect(seg.segments).toEqual([{ number: 1, label: 'lesion', algorithmType: 'MANUAL' }]);
    // On A the vessel (segment 2) overlapped the lesion; left out, the lesion is whole.
    expect([...(seg.masks.get(A)?.labels ?? [])]).toEqual([...frame1]);
    expect([...(seg.masks.get(B)?.labels ?? [])]).toEqual([...frame3]);
    expect([...seg.masks.keys()].sort()).toEqual([A, B, C]);

    const vessel = readDicomSeg(threeFrameSeg(), { segmentLabels: new Map([['vessel', 7]]) });
    expect(vessel.segments).toEqual([{ number: 7, label: 'vessel', algorithmType: 'AUTOMATIC' }]);
    expect([...(vessel.masks.get(A)?.labels ?? [])]).toEqual([...frame2.map((v) => (v === 1 ? 7 : 0))]);
    expect(vessel.masks.get(B)?.labels.every((v) => v === 0)).toBe(true);

    const neither = readDicomSeg(threeFrameSeg(), { segmentLabels: new Map([['liver', 1]]) });
    expect(neither.segments).toEqual([]);
    expect([...neither.masks.values()].every((m) => m.labels.every((v) => v === 0))).toBe(true);
  });

  it('falls back to the shared Derivation Image Sequence', () => {
    const bytes = buildSeg({ rows: ROWS, columns: COLUMNS, frames: [{ segment: 1 }], shared: [derivation([B])], referenced: [A, B], pixelData: packBits(frame1) });
    const seg = readDicomSeg(bytes);
    expect([...(seg.masks.get(B)?.labels ?? [])]).toEqual([...frame1]);
    expect(seg.masks.get(A)?.labels.every((v) => v === 0)).toBe(true);
  });

  it('falls back to the only instance in Referenced Series Sequence, and to a shared segment', () => {
    const bytes = buildSeg({ rows: ROWS, columns: COLUMNS, frames: [{}], shared: [seq(0x0062000a, [us(0x0062000b, 1)])], referenced: [C], pixelData: packBits(frame2) });
    expect([...(readDicomSeg(bytes).masks.get(C)?.labels ?? [])]).toEqual([...frame2]);
  });

  it('places frames that name no image by plane position when source geometries are given', () => {
    const geometry = (z: number): ImageGeometry => ({
      rows: ROWS,
      columns: COLUMNS,
      imagePositionPatient: [-10, 5, z],
      imageOrientationPatient: [1, 0, 0, 0, 1, 0],
      pixelSpacing: [0.7, 0.7],
    });
    const bytes = buildSeg({
      rows: ROWS,
      columns: COLUMNS,
      frames: [
        { segment: 1, position: [-10, 5, 2.5] },
        { segment: 1, position: [-10, 5, 99] },
      ],
      shared: [seq(0x00209116, [ds(0x00200037, 1, 0, 0, 0, 1, 0)]), seq(0x00289110, [ds(0x00280030, 0.7, 0.7)])],
      referenced: [A, B],
      pixelData: packBits([...frame1, ...frame3]),
    });
    const seg = readDicomSeg(bytes, { sourceGeometries: new Map([[A, geometry(0)], [B, geometry(2.5000001)]]) });
    expect([...(seg.masks.get(B)?.labels ?? [])]).toEqual([...frame1]);
    expect(seg.masks.get(A)?.labels.every((v) => v === 0)).toBe(true);
    expect(seg.unresolved).toEqual(['frame 2: no given source image lies at Image Position (Patient) -10\\5\\99']);
  });
});

describe('readDicomSeg: FRACTIONAL and LABELMAP', () => {
  it('thresholds fractional values at half the Maximum Fractional Value, higher segment winning', () => {
    // 4 x 3, maximum 200: 100 (exactly half) is in, 99 is out.
    const seg1 = [0, 99, 100, 101, 200, 0, 150, 0, 0, 0, 1, 199];
    const seg2 = [0, 0, 0, 0, 0, 0, 100, 100, 0, 0, 0, 0];
    const bytes = buildSeg({
      type: 'FRACTIONAL',
      rows: 3,
      columns: 4,
      maximumFractionalValue: 200,
      segments: [
        { number: 1, label: 'tumour' },
        { number: 2, label: 'necrosis' },
      ],
      frames: [
        { segment: 1, sources: [A] },
        { segment: 2, sources: [A] },
      ],
      pixelData: Uint8Array.from([...seg1, ...seg2]),
    });
    const seg = readDicomSeg(bytes);
    expect(seg.segmentationType).toBe('FRACTIONAL');
    expect([...(seg.masks.get(A)?.labels ?? [])]).toEqual([0, 0, 1, 1, 1, 0, 2, 2, 0, 0, 0, 1]);
  });

  it('refuses a fractional value above the maximum', () => {
    const bytes = buildSeg({ type: 'FRACTIONAL', rows: 1, columns: 2, maximumFractionalValue: 100, frames: [{ segment: 1, sources: [A] }], pixelData: Uint8Array.from([0, 101]) });
    expect(errorOf(() => readDicomSeg(bytes, { file: 'f.dcm' })).message).toBe('f.dcm: frame 1 holds 101, above Maximum Fractional Value (0062,000E) 100');
  });

  for (const bits of [8, 16] as const) {
    it(`reads a ${bits}-bit LABELMAP, value 0 staying background`, () => {
      const values = [0, 1, 2, 2, 1, 0];
      const pixelData = bits === 8 ? Uint8Array.from(values) : new Uint8Array(Uint16Array.from(values).buffer);
      const bytes = buildSeg({
        type: 'LABELMAP',
        sopClassUid: '1.2.840.10008.5.1.4.1.1.66.7',
        bitsAllocated: bits,
        rows: 2,
        columns: 3,
        segments: [
          { number: 0, label: 'Background' },
          { number: 1, label: 'liver' },
          { number: 2, label: 'tumour' },
        ],
        frames: [{ sources: [A] }],
        pixelData,
      });
      const seg = readDicomSeg(bytes);
      expect(seg.segments.map((s) => s.label)).toEqual(['liver', 'tumour']);
      expect([...(seg.masks.get(A)?.labels ?? [])]).toEqual(values);
    });
  }

  it('refuses a LABELMAP value that no segment describes', () => {
    const bytes = buildSeg({ type: 'LABELMAP', rows: 1, columns: 2, frames: [{ sources: [A] }], pixelData: Uint8Array.from([1, 3]) });
    expect(errorOf(() => readDicomSeg(bytes)).message).toContain('frame 1 holds pixel value 3, which is no segment of Segment Sequence (0062,0002)');
  });
});

describe('readDicomSeg: refusals', () => {
  const base = { rows: ROWS, columns: COLUMNS, frames: [{ segment: 1, sources: [A] }], pixelData: packBits(frame1) };
  const cases: { name: string; bytes: () => Uint8Array; reason: string; message: string }[] = [
    { name: 'wrong SOP class', bytes: () => buildSeg({ ...base, sopClassUid: CT_SOP_CLASS }), reason: 'not-a-mask', message: 'seg.dcm: SOP Class UID (0008,0016) is 1.2.840.10008.5.1.4.1.1.2, not Segmentation Storage' },
    {
      name: 'Pixel Data shorter than the frames',
      bytes: () => buildSeg({ ...base, numberOfFrames: 2, frames: [base.frames[0] ?? {}, { segment: 1, sources: [B] }] }),
      reason: 'invalid',
      message: 'seg.dcm: Pixel Data (7FE0,0010) holds 12 bytes, but Number of Frames (0028,0008) 2 of 7 x 13 at 1 bit(s) need 23 (24 padded)',
    },
    {
      name: 'Pixel Data longer than the frames',
      bytes: () => buildSeg({ ...base, pixelData: packBits([...frame1, ...frame2]) }),
      reason: 'invalid',
      message: 'seg.dcm: Pixel Data (7FE0,0010) holds 24 bytes, but Number of Frames (0028,0008) 1 of 7 x 13 at 1 bit(s) need 12',
    },
    { name: 'frame count and per-frame items disagree', bytes: () => buildSeg({ ...base, numberOfFrames: 2 }), reason: 'invalid', message: 'Per-frame Functional Groups Sequence (5200,9230) has 1 items but Number of Frames (0028,0008) is 2' },
    { name: 'unknown segment number', bytes: () => buildSeg({ ...base, frames: [{ segment: 5, sources: [A] }] }), reason: 'invalid', message: 'frame 1 references segment 5, which Segment Sequence (0062,0002) does not describe' },
    { name: 'no segment identification', bytes: () => buildSeg({ ...base, frames: [{ sources: [A] }] }), reason: 'invalid', message: 'frame 1: no Referenced Segment Number (0062,000B)' },
    {
      name: 'missing references',
      bytes: () => buildSeg({ ...base, frames: [{ segment: 1 }], referenced: [A, B] }),
      reason: 'invalid',
      message:
        'frame 1 names no source image: no Derivation Image Sequence (0008,9124) in its Per-frame or the Shared Functional Groups, Referenced Series Sequence (0008,1115) lists 2 images, not exactly one, and it has no complete Plane Position Sequence (0020,9113)',
    },
    { name: 'missing Segment Sequence', bytes: () => buildSeg({ ...base, omit: [0x00620002] }), reason: 'invalid', message: 'seg.dcm: Segment Sequence (0062,0002) is missing' },
    { name: 'missing Segmentation Type', bytes: () => buildSeg({ ...base, omit: [0x00620001] }), reason: 'invalid', message: 'seg.dcm: Segmentation Type (0062,0001) is missing or empty' },
    { name: 'BINARY with 8 bits', bytes: () => buildSeg({ ...base, bitsAllocated: 8 }), reason: 'invalid', message: 'Bits Allocated (0028,0100) is 8, but a BINARY Segmentation needs 1' },
    {
      name: 'source image frame number',
      bytes: () => buildSeg({ ...base, frames: [{ segment: 1, sources: [A], referencedFrameNumber: 3 }] }),
      reason: 'unsupported',
      message: 'Source Image Sequence (0008,2112) item 1: source image 2.25.101 is referenced by Referenced Frame Number (0008,1160) 3',
    },
    {
      name: 'two frames of one segment on one image',
      bytes: () => buildSeg({ ...base, frames: [base.frames[0] ?? {}, { segment: 1, sources: [A] }], pixelData: packBits([...frame1, ...frame2]) }),
      reason: 'invalid',
      message: 'frames 1 and 2 both hold segment 1 of source image 2.25.101',
    },
    { name: 'segment number beyond 8 bits', bytes: () => buildSeg({ ...base, segments: [{ number: 300, label: 'x' }] }), reason: 'unsupported', message: 'Segment Number (0062,0004) 300 does not fit an 8-bit label mask' },
    {
      name: 'duplicate segment numbers',
      bytes: () => buildSeg({ ...base, segments: [{ number: 1, label: 'a' }, { number: 1, label: 'b' }] }),
      reason: 'invalid',
      message: 'Segment Sequence (0062,0002) item 2: Segment Number (0062,0004) 1 is used by more than one segment',
    },
    {
      name: 'slide tiles',
      bytes: () => buildSeg({ ...base, extra: [text(0x00209311, 'CS', 'TILED_FULL')] }),
      reason: 'unsupported',
      message: 'Dimension Organization Type (0020,9311) TILED_FULL',
    },
  ];
  for (const c of cases) {
    it(`refuses: ${c.name}`, () => {
      const error = errorOf(() => readDicomSeg(c.bytes(), { file: 'seg.dcm' }));
      expect(error.reason).toBe(c.reason);
      expect(error.file).toBe('seg.dcm');
      expect(error.message).toContain(c.message);
    });
  }

  it('leaves truncated files to the DICOM reader', () => {
    const bytes = threeFrameSeg();
    expect(() => readDicomSeg(bytes.subarray(0, bytes.length - 10), { file: 'cut.dcm' })).toThrow(DicomRejection);
  });
});

const LIVER = join(import.meta.dirname, '../../../../../shared/testdata/dicom/liver_1frame.dcm');

/** Drops Per-frame Functional Groups items 2 and 3 (the file keeps them although its Pixel Data holds one frame). */
function keepFirstPerFrameItem(bytes: Uint8Array): Uint8Array {
  const element = dicomParser.parseDicom(bytes).elements['x52009230'];
  const second = element?.items?.[1];
  const third = element?.items?.[2];
  if (element === undefined || second === undefined || third === undefined || element.hadUndefinedLength !== true) throw new Error('unexpected liver_1frame.dcm layout');
  return Buffer.concat([bytes.subarray(0, second.dataOffset - 8), bytes.subarray(third.dataOffset + third.length)]);
}

describe.skipIf(!existsSync(LIVER))('readDicomSeg on a real file (pydicom liver_1frame.dcm, written by dcmqi)', () => {
  it('refuses it as stored: three per-frame items for one frame', () => {
    const error = errorOf(() => readDicomSeg(readFileSync(LIVER), { file: 'liver_1frame.dcm' }));
    expect(error.message).toBe(
      'liver_1frame.dcm: Per-frame Functional Groups Sequence (5200,9230) has 3 items but Number of Frames (0028,0008) is 1; each frame needs exactly one',
    );
  });

  it("matches pydicom's reference pixels once the extra per-frame items are dropped", () => {
    const seg = readDicomSeg(keepFirstPerFrameItem(readFileSync(LIVER)), { file: 'liver_1frame.dcm' });
    expect(seg.segments).toEqual([{ number: 1, label: 'Liver', algorithmType: 'SEMIAUTOMATIC' }]);
    const source = '1.2.392.200103.20080913.113635.2.2009.6.22.21.43.10.23433.1';
    const mask = seg.masks.get(source);
    expect(mask?.rows).toBe(512);
    const at = (row: number, from: number, to: number): number[] => [...(mask?.labels.subarray(row * 512 + from, row * 512 + to) ?? [])];
    // Values pydicom's test suite asserts for arr[155, 180:183], arr[155, 310:314], arr[254, 78:81], arr[254, 304:310].
    expect(at(155, 180, 183)).toEqual([0, 1, 1]);
    expect(at(155, 310, 314)).toEqual([1, 0, 1, 0]);
    expect(at(254, 78, 81)).toEqual([0, 1, 1]);
    expect(at(254, 304, 310)).toEqual([1, 0, 0, 1, 1, 0]);
    // The other two referenced slices have no frame left: all background.
    expect(seg.masks.size).toBe(3);
    for (const [uid, m] of seg.masks) if (uid !== source) expect(m.labels.every((v) => v === 0)).toBe(true);
  });
});
