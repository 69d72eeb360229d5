import { bytes, ds, is, part10, seq, text, us, type El, type Syntax } from './dicom-build.testkit.js';

/** Hand-built Segmentation objects for reader tests, including broken ones (`omit`, `extra`, odd values). */

export interface FrameSpec {
  readonly segment?: number;
  /** Source SOP Instance UIDs named in this frame's Derivation Image Sequence; none when absent. */
  readonly sources?: readonly string[];
  readonly referencedFrameNumber?: number;
  readonly position?: readonly [number, number, number];
}

export interface SegFixture {
  readonly type?: 'BINARY' | 'FRACTIONAL' | 'LABELMAP';
  readonly rows: number;
  readonly columns: number;
  readonly frames: readonly FrameSpec[];
  /** Pixel Data value bytes, little-endian order (use packBits for BINARY). */
  readonly pixelData: Uint8Array;
  readonly pixelVr?: 'OB' | 'OW';
  readonly segments?: readonly { number: number; label: string; algorithm?: string }[];
  /** Instances listed in Referenced Series Sequence. */
  readonly referenced?: readonly string[];
  /** Elements of the single Shared Functional Groups item. */
  readonly shared?: readonly El[];
  readonly bitsAllocated?: number;
  readonly maximumFractionalValue?: number;
  readonly numberOfFrames?: number | null;
  readonly sopClassUid?: string;
  readonly syntax?: Syntax;
  readonly extra?: readonly El[];
  /** Top-level tags to leave out. */
  readonly omit?: readonly number[];
}

export const SEG_SOP_CLASS = '1.2.840.10008.5.1.4.1.1.66.4';
export const CT_SOP_CLASS = '1.2.840.10008.5.1.4.1.1.2';

export function derivation(sources: readonly string[], frameNumber?: number): El {
  return seq(
    0x00089124,
    [
      seq(
        0x00082112,
        ...sources.map((uid) => [
          text(0x00081150, 'UI', CT_SOP_CLASS),
          text(0x00081155, 'UI', uid),
          ...(frameNumber === undefined ? [] : [is(0x00081160, frameNumber)]),
        ]),
      ),
    ],
  );
}

function frameItem(frame: FrameSpec): El[] {
  const item: El[] = [];
  if (frame.sources !== undefined) item.push(derivation(frame.sources, frame.referencedFrameNumber));
  if (frame.segment !== undefined) item.push(seq(0x0062000a, [us(0x0062000b, frame.segment)]));
  if (frame.position !== undefined) item.push(seq(0x00209113, [ds(0x00200032, ...frame.position)]));
  return item;
}

export function buildSeg(f: SegFixture): Uint8Array {
  const type = f.type ?? 'BINARY';
  const bits = f.bitsAllocated ?? (type === 'BINARY' ? 1 : 8);
  const segments = f.segments ?? [{ number: 1, label: 'lesion' }];
  const elements: El[] = [
    text(0x00080060, 'CS', 'SEG'),
    text(0x00620001, 'CS', type),
    us(0x00280002, 1),
    text(0x00280004, 'CS', 'MONOCHROME2'),
    us(0x00280010, f.rows),
    us(0x00280011, f.columns),
    us(0x00280100, bits),
    us(0x00280101, bits),
    us(0x00280102, bits - 1),
    us(0x00280103, 0),
    seq(0x00620002, ...segments.map((s) => [us(0x00620004, s.number), text(0x00620005, 'LO', s.label), text(0x00620008, 'CS', s.algorithm ?? 'MANUAL')])),
    seq(0x52009230, ...f.frames.map(frameItem)),
    bytes(0x7fe00010, f.pixelVr ?? 'OB', f.pixelData),
  ];
  if (f.numberOfFrames !== null) elements.push(is(0x00280008, f.numberOfFrames ?? f.frames.length));
  if (type === 'FRACTIONAL') elements.push(us(0x0062000e, f.maximumFractionalValue ?? 255), text(0x00620010, 'CS', 'PROBABILITY'));
  if (f.shared !== undefined) elements.push(seq(0x52009229, [...f.shared]));
  if (f.referenced !== undefined) {
    elements.push(
      seq(0x00081115, [
        seq(0x0008114a, ...f.referenced.map((uid) => [text(0x00081150, 'UI', CT_SOP_CLASS), text(0x00081155, 'UI', uid)])),
        text(0x0020000e, 'UI', '2.25.77'),
      ]),
    );
  }
  elements.push(...(f.extra ?? []));
  const omitted = new Set(f.omit ?? []);
  return part10(
    elements.filter((e) => !omitted.has(e.tag)),
    f.sopClassUid ?? SEG_SOP_CLASS,
    '2.25.4242',
    f.syntax ?? 'explicit-le',
  );
}
