/**
 * Transfer syntaxes the reader knows by name. The dataset encoding (VR style, byte order, deflate) decides how
 * dicom-parser walks the file; `pixels` says whether Pixel Data is stored raw or as encapsulated fragments that
 * need a codec. Names come from PS3.6 Annex A so rejection messages match what PACS vendors print.
 */
export interface TransferSyntaxInfo {
  readonly uid: string;
  readonly name: string;
  readonly explicitVr: boolean;
  readonly littleEndian: boolean;
  readonly deflated: boolean;
  readonly pixels: 'native' | 'encapsulated';
}

export const IMPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2';
export const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';
export const DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1.99';
export const EXPLICIT_VR_BIG_ENDIAN = '1.2.840.10008.1.2.2';
export const RLE_LOSSLESS = '1.2.840.10008.1.2.5';
export const JPEG_BASELINE = '1.2.840.10008.1.2.4.50';
export const JPEG_EXTENDED = '1.2.840.10008.1.2.4.51';
export const JPEG_LOSSLESS = '1.2.840.10008.1.2.4.57';
export const JPEG_LOSSLESS_SV1 = '1.2.840.10008.1.2.4.70';
export const JPEG_LS_LOSSLESS = '1.2.840.10008.1.2.4.80';
export const JPEG_LS_NEAR_LOSSLESS = '1.2.840.10008.1.2.4.81';
export const JPEG_2000_LOSSLESS = '1.2.840.10008.1.2.4.90';
export const JPEG_2000 = '1.2.840.10008.1.2.4.91';
export const HTJ2K_LOSSLESS = '1.2.840.10008.1.2.4.201';
export const HTJ2K_LOSSLESS_RPCL = '1.2.840.10008.1.2.4.202';
export const HTJ2K = '1.2.840.10008.1.2.4.203';

const native = (uid: string, name: string, explicitVr: boolean, littleEndian: boolean, deflated = false): TransferSyntaxInfo =>
  ({ uid, name, explicitVr, littleEndian, deflated, pixels: 'native' });
const encapsulated = (uid: string, name: string): TransferSyntaxInfo =>
  ({ uid, name, explicitVr: true, littleEndian: true, deflated: false, pixels: 'encapsulated' });

const KNOWN: readonly TransferSyntaxInfo[] = [
  native(IMPLICIT_VR_LITTLE_ENDIAN, 'Implicit VR Little Endian', false, true),
  native(EXPLICIT_VR_LITTLE_ENDIAN, 'Explicit VR Little Endian', true, true),
  native(DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, 'Deflated Explicit VR Little Endian', true, true, true),
  native(EXPLICIT_VR_BIG_ENDIAN, 'Explicit VR Big Endian', true, false),
  encapsulated('1.2.840.10008.1.2.1.98', 'Encapsulated Uncompressed Explicit VR Little Endian'),
  encapsulated(JPEG_BASELINE, 'JPEG Baseline (Process 1)'),
  encapsulated(JPEG_EXTENDED, 'JPEG Extended (Process 2 & 4)'),
  encapsulated(JPEG_LOSSLESS, 'JPEG Lossless, Non-Hierarchical (Process 14)'),
  encapsulated(JPEG_LOSSLESS_SV1, 'JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14, SV1)'),
  encapsulated(JPEG_LS_LOSSLESS, 'JPEG-LS Lossless'),
  encapsulated(JPEG_LS_NEAR_LOSSLESS, 'JPEG-LS Near-Lossless'),
  encapsulated(JPEG_2000_LOSSLESS, 'JPEG 2000 (Lossless Only)'),
  encapsulated(JPEG_2000, 'JPEG 2000'),
  encapsulated('1.2.840.10008.1.2.4.92', 'JPEG 2000 Part 2 Multi-component (Lossless Only)'),
  encapsulated('1.2.840.10008.1.2.4.93', 'JPEG 2000 Part 2 Multi-component'),
  encapsulated('1.2.840.10008.1.2.4.100', 'MPEG2 Main Profile / Main Level'),
  encapsulated('1.2.840.10008.1.2.4.101', 'MPEG2 Main Profile / High Level'),
  encapsulated('1.2.840.10008.1.2.4.102', 'MPEG-4 AVC/H.264 High Profile / Level 4.1'),
  encapsulated('1.2.840.10008.1.2.4.103', 'MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1'),
  encapsulated('1.2.840.10008.1.2.4.104', 'MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video'),
  encapsulated('1.2.840.10008.1.2.4.105', 'MPEG-4 AVC/H.264 High Profile / Level 4.2 For 3D Video'),
  encapsulated('1.2.840.10008.1.2.4.106', 'MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2'),
  encapsulated('1.2.840.10008.1.2.4.107', 'HEVC/H.265 Main Profile / Level 5.1'),
  encapsulated('1.2.840.10008.1.2.4.108', 'HEVC/H.265 Main 10 Profile / Level 5.1'),
  encapsulated('1.2.840.10008.1.2.4.110', 'JPEG XL Lossless'),
  encapsulated('1.2.840.10008.1.2.4.111', 'JPEG XL JPEG Recompression'),
  encapsulated('1.2.840.10008.1.2.4.112', 'JPEG XL'),
  encapsulated(HTJ2K_LOSSLESS, 'High-Throughput JPEG 2000 (Lossless Only)'),
  encapsulated(HTJ2K_LOSSLESS_RPCL, 'High-Throughput JPEG 2000 with RPCL Options (Lossless Only)'),
  encapsulated(HTJ2K, 'High-Throughput JPEG 2000'),
  encapsulated(RLE_LOSSLESS, 'RLE Lossless'),
];

const BY_UID: ReadonlyMap<string, TransferSyntaxInfo> = new Map(KNOWN.map((ts) => [ts.uid, ts]));

export function lookupTransferSyntax(uid: string): TransferSyntaxInfo | undefined {
  return BY_UID.get(uid);
}

/** Human name for messages; unknown UIDs (private or future syntaxes) are still reported by UID. */
export function transferSyntaxName(uid: string): string {
  return BY_UID.get(uid)?.name ?? 'unknown transfer syntax';
}
