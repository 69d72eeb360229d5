import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { CodecInput } from './codecs.js';
import type { DicomHeader } from './header.js';
import { jpegBaselineCodec } from './jpeg.js';
import { componentSize, encodeJpeg, flatQuant, luminanceQuant, random, testImage, type EncodeOptions, type TestComponent } from './jpeg-encoder.testkit.js';
import { decodeJpegSequential, type JpegImage } from './jpeg-extended.js';
import { decodeAllFrames, decodeDicom } from './reader.js';
import { DicomRejection } from './rejection.js';
import { load, testdata } from './reference.testkit.js';

const decode = (stream: Uint8Array): JpegImage => decodeJpegSequential(stream, 'test.jpg');

/** What decoding `stream` throws; fails the test when it decodes or throws anything but a DicomRejection. */
function rejection(stream: Uint8Array): DicomRejection {
  let error: unknown;
  try {
    decode(stream);
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(DicomRejection);
  return error as DicomRejection;
}

const grey = (width: number, height: number, precision: 8 | 12, quant: number[], seed = 1): EncodeOptions => ({
  precision,
  width,
  height,
  components: [{ id: 1, h: 1, v: 1, samples: testImage(width, height, (1 << precision) - 1, seed), quant }],
});

/** Largest |decoded - reference| over a component that has the frame's full resolution. */
function maxError(image: JpegImage, reference: ArrayLike<number>, sample = 0): number {
  let worst = 0;
  for (let i = 0; i < image.width * image.height; i++) {
    worst = Math.max(worst, Math.abs((image.samples[i * image.componentCount + sample] ?? -1e9) - (reference[i] ?? 1e9)));
  }
  return worst;
}

/** Finds the first occurrence of a marker (FF xx) in a stream. */
function markerAt(stream: Uint8Array, code: number, from = 2): number {
  for (let i = from; i + 1 < stream.length; i++) if (stream[i] === 0xff && stream[i + 1] === code) return i;
  throw new Error(`marker ${code.toString(16)} not found`);
}

describe('12-bit sequential DCT: round trip through a reference encoder', () => {
  it('reproduces the exact inverse DCT of the coded coefficients to within 1 (accurate integer IDCT)', () => {
    // Odd size: partial blocks on the right and bottom edges.
    for (const quant of [flatQuant(1), luminanceQuant(16), flatQuant(300)]) {
      const encoded = encodeJpeg(grey(37, 29, 12, quant));
      const image = decode(encoded.stream);
      expect(image).toMatchObject({ width: 37, height: 29, componentCount: 1, precision: 12, convertedToRgb: false });
      expect(maxError(image, encoded.reference[0] ?? [])).toBeLessThanOrEqual(1);
    }
  });

  it('with unit quantisation the decoded image is the original to within 2', () => {
    const options = grey(40, 24, 12, flatQuant(1), 7);
    const image = decode(encodeJpeg(options).stream);
    expect(maxError(image, options.components[0]?.samples ?? [])).toBeLessThanOrEqual(2);
    expect(image.samples.some((v) => v > 255)).toBe(true);
  });

  it('exercises Huffman codes longer than the 9-bit lookup', () => {
    const encoded = encodeJpeg({ ...grey(64, 64, 12, flatQuant(2), 3), components: [{ id: 1, h: 1, v: 1, samples: testImage(64, 64, 4095, 3, 0.6), quant: flatQuant(2) }] });
    expect(encoded.maxCodeLength).toBeGreaterThan(9);
    expect(maxError(decode(encoded.stream), encoded.reference[0] ?? [])).toBeLessThanOrEqual(1);
  });

  it('decodes flat (DC-only) blocks exactly, and clamps to [0, 4095]', () => {
    const samples = new Uint16Array(16 * 16);
    for (let y = 0; y < 16; y++) for (let x = 0; x < 16; x++) samples[y * 16 + x] = [0, 4095, 1234, 2048][(y >> 3) * 2 + (x >> 3)] ?? 0;
    const image = decode(encodeJpeg({ precision: 12, width: 16, height: 16, components: [{ id: 1, h: 1, v: 1, samples, quant: flatQuant(1) }] }).stream);
    expect(Array.from(image.samples)).toEqual(Array.from(samples));
    // Coarse steps overshoot past both ends of the range; the decoder must clamp, not wrap.
    const ramp = Uint16Array.from({ length: 64 }, (_, i) => (i % 8 < 4 ? 0 : 4095));
    const clamped = decode(encodeJpeg({ precision: 12, width: 8, height: 8, components: [{ id: 1, h: 1, v: 1, samples: ramp, quant: flatQuant(97) }] }).stream);
    expect(Math.min(...clamped.samples)).toBe(0);
    expect(Math.max(...clamped.samples)).toBe(4095);
  });

  it('three components: one interleaved scan and one scan per component decode identically', () => {
    const components: TestComponent[] = [82, 71, 66].map((id, i) => ({ id, h: 1, v: 1, samples: testImage(20, 12, 4095, 10 + i), quant: luminanceQuant(4 * (i + 1)) }));
    const options: EncodeOptions = { precision: 12, width: 20, height: 12, components };
    const interleaved = encodeJpeg(options);
    const separate = encodeJpeg({ ...options, interleaved: false });
    const a = decode(interleaved.stream);
    const b = decode(separate.stream);
    // Component IDs 'R','G','B' tell libjpeg (and us) the data is RGB already: no conversion.
    expect(a.convertedToRgb).toBe(false);
    expect(Array.from(b.samples)).toEqual(Array.from(a.samples));
    for (let c = 0; c < 3; c++) expect(maxError(a, interleaved.reference[c] ?? [], c)).toBeLessThanOrEqual(1);
  });

  it('subsampled YCbCr with neutral chroma converts to grey RGB equal to Y', () => {
    const luma = testImage(33, 17, 4095, 4);
    const [cw, ch] = [17, 9];
    const neutral = new Uint16Array(cw * ch).fill(2048);
    const encoded = encodeJpeg({
      precision: 12,
      width: 33,
      height: 17,
      components: [
        { id: 1, h: 2, v: 2, samples: luma, quant: flatQuant(1) },
        { id: 2, h: 1, v: 1, samples: neutral, quant: flatQuant(1) },
        { id: 3, h: 1, v: 1, samples: neutral, quant: flatQuant(1) },
      ],
    });
    const image = decode(encoded.stream);
    expect(image.convertedToRgb).toBe(true);
    for (let s = 0; s < 3; s++) expect(maxError(image, encoded.reference[0] ?? [], s)).toBeLessThanOrEqual(1);
  });

  it('restart intervals decode to the same pixels as a stream without them', () => {
    for (const interleaved of [true, false]) {
      const components: TestComponent[] = [
        { id: 1, h: 2, v: 1, samples: testImage(45, 21, 4095, 5), quant: luminanceQuant(8) },
        { id: 2, h: 1, v: 1, samples: testImage(23, 21, 4095, 6), quant: luminanceQuant(8) },
        { id: 3, h: 1, v: 1, samples: testImage(23, 21, 4095, 8), quant: luminanceQuant(8) },
      ];
      const options: EncodeOptions = { precision: 12, width: 45, height: 21, components, interleaved };
      const plain = decode(encodeJpeg(options).stream);
      for (const restartInterval of [1, 3, 7, 1000]) {
        const stream = encodeJpeg({ ...options, restartInterval }).stream;
        const markers = stream.reduce((n, b, i) => n + (b === 0xff && (stream[i + 1] ?? 0) >= 0xd0 && (stream[i + 1] ?? 0) <= 0xd7 ? 1 : 0), 0);
        expect(markers > 0).toBe(restartInterval < 1000);
        expect(Array.from(decode(stream).samples)).toEqual(Array.from(plain.samples));
      }
    }
  });

  it('refuses misnumbered, missing and misplaced restart markers', () => {
    const stream = encodeJpeg({ ...grey(32, 16, 12, luminanceQuant(8)), restartInterval: 2 }).stream;
    const rst1 = markerAt(stream, 0xd1);
    const renumbered = stream.slice();
    renumbered[rst1 + 1] = 0xd2;
    expect(rejection(renumbered).message).toMatch(/expected restart marker RST1 before MCU 4, found FFD2/);
    const removed = Uint8Array.from([...stream.subarray(0, rst1), ...stream.subarray(rst1 + 2)]);
    expect(rejection(removed).message).toMatch(/restart interval ending at MCU 4 has entropy-coded data left over after its last MCU$/);
    // One byte early: the interval's last byte is cut off by the marker.
    const moved = Uint8Array.from([...stream.subarray(0, rst1 - 1), 0xff, 0xd1, stream[rst1 - 1] ?? 0, ...stream.subarray(rst1 + 2)]);
    expect(rejection(moved).message).toMatch(/has entropy-coded data that stops at marker FFD1 in scan 1, MCU 3 of 8; data is missing$/);
  });

  it('ignores spectral selection and approximation fields in a sequential scan, as libjpeg does', () => {
    const options = grey(24, 24, 12, luminanceQuant(8));
    const good = decode(encodeJpeg(options).stream);
    for (const scanTail of [[0, 0, 0], [1, 5, 0x21]] as const) {
      expect(Array.from(decode(encodeJpeg({ ...options, scanTail }).stream).samples)).toEqual(Array.from(good.samples));
    }
  });

  it('skips APPn and COM segments, including ones that contain FF bytes', () => {
    const options = grey(16, 8, 12, luminanceQuant(8));
    const app1 = Uint8Array.of(0xff, 0xe1, 0, 6, 0xff, 0xd9, 0xff, 0xda);
    const com = Uint8Array.of(0xff, 0xfe, 0, 5, 0x68, 0x69, 0xff);
    const plain = decode(encodeJpeg(options).stream);
    expect(Array.from(decode(encodeJpeg({ ...options, extraSegments: [app1, com] }).stream).samples)).toEqual(Array.from(plain.samples));
  });
});

describe('corrupt and truncated streams are rejected, never misread', () => {
  const stream = encodeJpeg({ ...grey(24, 16, 12, luminanceQuant(4)), restartInterval: 2 }).stream;

  it('every truncation is rejected, and one inside the entropy-coded data as a damaged stream', () => {
    // The decoder only sees streams whose fragments were complete in the file, so a stream that stops early was
    // damaged before it was stored: 'corrupt', not 'truncated' (which means the file itself ends early).
    const sos = markerAt(stream, 0xda);
    for (let length = 0; length < stream.length; length++) {
      const error = rejection(stream.subarray(0, length));
      if (length > sos + 20) expect(error.reason).toBe('corrupt');
    }
    const cut = rejection(stream.subarray(0, sos + 30));
    expect(cut.message).toMatch(/^test\.jpg: JPEG stream ends inside the entropy-coded data of scan 1/);
  });

  it('random damage gives a rejection or an image, never another error or a hang', () => {
    const next = random(42);
    let rejected = 0;
    for (let trial = 0; trial < 400; trial++) {
      const damaged = stream.slice();
      for (let k = 0; k < 1 + (trial % 4); k++) damaged[Math.floor(next() * damaged.length)] = Math.floor(next() * 256);
      try {
        const image = decode(damaged);
        expect(image.samples.length).toBe(image.width * image.height * image.componentCount);
      } catch (error) {
        expect(error).toBeInstanceOf(DicomRejection);
        rejected++;
      }
    }
    expect(rejected).toBeGreaterThan(100);
  });

  it('names the coding process it does not support', () => {
    const sof = markerAt(stream, 0xc1);
    const cases: Array<[number, RegExp]> = [
      [0xc2, /progressive DCT, Huffman coding \(SOF2\)/],
      [0xc3, /lossless, Huffman coding \(SOF3\)/],
      [0xc9, /extended sequential DCT, arithmetic coding \(SOF9\)/],
      [0xca, /progressive DCT, arithmetic coding \(SOF10\)/],
    ];
    for (const [code, message] of cases) {
      const patched = stream.slice();
      patched[sof + 1] = code;
      const error = rejection(patched);
      expect(error.reason).toBe('unsupported-pixel-format');
      expect(error.message).toMatch(message);
    }
  });

  it('refuses headers it cannot honour: precision, component count, DNL height, bad tables', () => {
    const sof = markerAt(stream, 0xc1);
    const patch = (offset: number, value: number): Uint8Array => {
      const copy = stream.slice();
      copy[offset] = value;
      return copy;
    };
    expect(rejection(patch(sof + 4, 16)).message).toMatch(/16-bit samples/);
    expect(rejection(patch(sof + 6, 0)).message).toMatch(/height to a DNL marker/);
    expect(rejection(patch(sof + 9, 2)).message).toMatch(/2 components/);
    // DHT: make the first length count claim 2 one-bit codes plus more, which over-subscribes the code space.
    const dht = markerAt(stream, 0xc4);
    expect(rejection(patch(dht + 5, 2)).message).toMatch(/Huffman table|more symbols/);
    expect(rejection(Uint8Array.of(0xff, 0xd8, 0xff, 0xd9)).message).toMatch(/no frame header/);
    expect(rejection(Uint8Array.of(0x00, 0x01, 0x02, 0x03, 0x04)).message).toMatch(/does not start with a JPEG SOI marker/);
  });

  it('refuses a stream without EOI and a frame whose component never appears in a scan', () => {
    expect(rejection(stream.subarray(0, stream.length - 2)).reason).toBe('corrupt');
    const separate = encodeJpeg({ precision: 12, width: 16, height: 8, interleaved: false, components: [1, 2, 3].map((id) => ({ id, h: 1, v: 1, samples: testImage(16, 8, 4095, id), quant: flatQuant(8) })) }).stream;
    const lastScan = separate.lastIndexOf(0xda) - 1;
    const withoutLast = Uint8Array.from([...separate.subarray(0, lastScan), 0xff, 0xd9]);
    expect(rejection(withoutLast).message).toMatch(/ends before component\(s\) 3 were coded/);
  });

  it('refuses a frame header that promises far more blocks than the stream could hold, before allocating', () => {
    const sof = markerAt(stream, 0xc1);
    const huge = stream.slice();
    huge.set([0xff, 0xff, 0xff, 0xff], sof + 5);
    expect(rejection(huge).message).toMatch(/65535 x 65535/);
  });
});

/** Decodes an 8-bit stream with the reader's libjpeg-turbo WebAssembly build, the reference for the 8-bit path. */
function libjpegDecode(stream: Uint8Array, width: number, height: number, components: number): Uint8Array {
  const header: DicomHeader = {
    transferSyntaxUid: '1.2.840.10008.1.2.4.50',
    transferSyntaxName: 'JPEG Baseline (Process 1)',
    sopClassUid: undefined,
    sopInstanceUid: undefined,
    seriesInstanceUid: undefined,
    studyInstanceUid: undefined,
    modality: undefined,
    rows: height,
    columns: width,
    samplesPerPixel: components,
    photometricInterpretation: components === 3 ? 'RGB' : 'MONOCHROME2',
    planarConfiguration: 0,
    bitsAllocated: 8,
    bitsStored: 8,
    highBit: 7,
    pixelRepresentation: 0,
    signed: false,
    numberOfFrames: 1,
    rescaleSlope: 1,
    rescaleIntercept: 0,
    windowCenter: undefined,
    windowWidth: undefined,
  };
  const input: CodecInput = { file: 'test.jpg', header, littleEndian: true, pixelData: { kind: 'encapsulated', fragmentCount: 1, frame: () => stream } };
  return jpegBaselineCodec.decodeFrame(input, 0).bytes;
}

describe('8-bit streams decode bit for bit as libjpeg-turbo decodes them', () => {
  const JFIF = Uint8Array.of(0xff, 0xe0, 0, 16, 0x4a, 0x46, 0x49, 0x46, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0);
  const adobe = (transform: number): Uint8Array => Uint8Array.of(0xff, 0xee, 0, 14, 0x41, 0x64, 0x6f, 0x62, 0x65, 0, 100, 0, 0, 0, 0, transform);
  const colour = (width: number, height: number, sampling: Array<[number, number]>, ids = [1, 2, 3]): EncodeOptions => {
    const partial: Pick<EncodeOptions, 'width' | 'height' | 'components'> = {
      width,
      height,
      components: sampling.map(([h, v], i) => ({ id: ids[i] ?? i, h, v, samples: [], quant: [] })),
    };
    return {
      precision: 8,
      width,
      height,
      components: sampling.map(([h, v], i) => {
        const base = { id: ids[i] ?? i, h, v, samples: [], quant: [] };
        const [cw, ch] = componentSize(partial, base);
        return { ...base, samples: testImage(cw, ch, 255, 20 + i, 0.2), quant: luminanceQuant(i === 0 ? 0.5 : 1) };
      }),
    };
  };
  const cases: Array<[string, EncodeOptions]> = [
    ['greyscale, odd size', grey(37, 29, 8, luminanceQuant(0.7))],
    ['greyscale coded with 2x2 sampling (non-interleaved grid)', { ...grey(30, 19, 8, luminanceQuant(1)), components: [{ id: 1, h: 2, v: 2, samples: testImage(30, 19, 255, 2), quant: luminanceQuant(1) }] }],
    ['YCbCr 4:2:0 (fancy h2v2), odd size', colour(37, 29, [[2, 2], [1, 1], [1, 1]])],
    ['YCbCr 4:2:2 (fancy h2v1)', colour(35, 16, [[2, 1], [1, 1], [1, 1]])],
    ['YCbCr 4:4:0 (fancy h1v2)', colour(16, 27, [[1, 2], [1, 1], [1, 1]])],
    ['YCbCr 4:1:1 (replication)', colour(45, 10, [[4, 1], [1, 1], [1, 1]])],
    ['YCbCr 4:2:0 only 3 pixels wide (replication, as libjpeg for width <= 2)', colour(3, 11, [[2, 2], [1, 1], [1, 1]])],
    ['YCbCr 4:4:4', colour(19, 13, [[1, 1], [1, 1], [1, 1]])],
    ['RGB component IDs: no conversion', colour(19, 13, [[1, 1], [1, 1], [1, 1]], [82, 71, 66])],
    ['unknown component IDs: YCbCr', colour(19, 13, [[1, 1], [1, 1], [1, 1]], [7, 8, 9])],
    ['Adobe transform 0 overrides YCbCr IDs: RGB', { ...colour(19, 13, [[1, 1], [1, 1], [1, 1]]), extraSegments: [adobe(0)] }],
    ['Adobe transform 1 with RGB IDs: YCbCr', { ...colour(19, 13, [[1, 1], [1, 1], [1, 1]], [82, 71, 66]), extraSegments: [adobe(1)] }],
    ['JFIF with RGB IDs: YCbCr', { ...colour(19, 13, [[1, 1], [1, 1], [1, 1]], [82, 71, 66]), extraSegments: [JFIF] }],
    ['4:2:0, restart interval 2, one scan per component', { ...colour(40, 24, [[2, 2], [1, 1], [1, 1]]), restartInterval: 2, interleaved: false }],
    ['4:2:0, restart interval 1, 16-bit quantisation tables', { ...colour(24, 24, [[2, 2], [1, 1], [1, 1]]), restartInterval: 1, quant16: true }],
  ];

  it.each(cases)('%s', (_, options) => {
    const { stream } = encodeJpeg(options);
    const ours = decode(stream);
    expect(ours.precision).toBe(8);
    const theirs = libjpegDecode(stream, options.width, options.height, options.components.length);
    expect(ours.samples.length).toBe(theirs.length);
    expect(Buffer.from(Uint8Array.from(ours.samples)).equals(Buffer.from(theirs))).toBe(true);
  });

  it.each(['JPEGBaseline_1s_1f_u_08_08.dcm', 'SC_rgb_jpeg_dcmtk.dcm', 'SC_rgb_dcmtk_+eb+cr.dcm', 'SC_rgb_dcmtk_+eb+cy+np.dcm', 'SC_rgb_small_odd_jpeg.dcm', 'examples_ybr_color.dcm'])(
    '%s: every frame as the reader (libjpeg-turbo) decodes it',
    async (name) => {
      const image = await load(name);
      const frames = decodeAllFrames(image);
      const bytes = readFileSync(join(testdata, name));
      // The JPEG frames, found by their SOI markers inside the encapsulated Pixel Data.
      let from = 0;
      for (const frame of frames) {
        const start = bytes.indexOf(Buffer.from([0xff, 0xd8, 0xff]), from);
        const end = bytes.indexOf(Buffer.from([0xff, 0xd9]), start) + 2;
        from = end;
        const ours = decode(bytes.subarray(start, end));
        expect(ours.samples.length).toBe(frame.length);
        expect(Buffer.from(Uint8Array.from(ours.samples)).equals(Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength))).toBe(true);
      }
    },
  );
});

describe('12-bit JPEG Extended in DICOM (reference values: compressed.test.ts)', () => {
  const original = readFileSync(join(testdata, 'JPGExtended.dcm'));
  const sof = original.indexOf(Buffer.from([0xff, 0xc1]));

  it('refuses a progressive 12-bit frame by its process name', () => {
    const bytes = Buffer.from(original);
    bytes[sof + 1] = 0xc2;
    const call = () => decodeDicom(bytes, { file: 'progressive.dcm' });
    expect(call).toThrow(expect.objectContaining({ reason: 'unsupported-pixel-format' }));
    expect(call).toThrow(/^progressive\.dcm: JPEG frame 0 uses progressive DCT, Huffman coding \(SOF2\)/);
  });

  it('refuses a frame whose JPEG size disagrees with the header before decoding it', () => {
    const bytes = Buffer.from(original);
    bytes[sof + 8] = 0x80; // width 256 -> 384
    expect(() => decodeDicom(bytes, { file: 'wide.dcm' })).toThrow(/JPEG frame 0 is 384 x 1024 x 1 but the header declares 256 x 1024 x 1/);
  });

  it('refuses a frame whose entropy-coded data is damaged', () => {
    const bytes = Buffer.from(original);
    const eoi = bytes.lastIndexOf(Buffer.from([0xff, 0xd9]));
    // Zeroed bytes happen to be valid Huffman codes here: the scan "completes" early and only the bytes left over
    // before the next marker give the damage away. libjpeg would return the scrambled image.
    bytes.fill(0x00, eoi - 3000, eoi - 1000);
    const call = () => decodeAllFrames(decodeDicom(bytes, { file: 'damaged.dcm' }));
    expect(call).toThrow(expect.objectContaining({ reason: 'corrupt' }));
    expect(call).toThrow(/^damaged\.dcm: JPEG frame 0 is corrupt: scan 1 has entropy-coded data left over after its last MCU$/);
  });
});
