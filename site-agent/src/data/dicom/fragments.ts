import dicomParser from 'dicom-parser';
import type { DataSet, Element, Fragment } from 'dicom-parser';
import type { EncodedPixelData } from './codecs.js';
import type { DicomHeader } from './header.js';
import { DicomRejection } from './rejection.js';
import { endsWithSequenceDelimiter } from './structure.js';

const ITEM_TAG = [0xfe, 0xff, 0x00, 0xe0] as const;
const SEQUENCE_DELIMITER = [0xfe, 0xff, 0xdd, 0xe0] as const;

function startsWith(bytes: Uint8Array, at: number, marker: readonly number[]): boolean {
  return marker.every((b, i) => bytes[at + i] === b);
}

/** JPEG / JPEG-LS SOI, JPEG 2000 SOC, and the JP2 signature box that some encoders wrap codestreams in. */
const CODESTREAM_STARTS: readonly (readonly number[])[] = [
  [0xff, 0xd8, 0xff],
  [0xff, 0x4f, 0xff, 0x51],
  [0x00, 0x00, 0x00, 0x0c, 0x6a, 0x50, 0x20, 0x20],
];

/**
 * Indices of the fragments that begin a codestream. Without a Basic Offset Table a multi-frame image may still
 * spread frames over several fragments; every JPEG-family frame opens with its start marker, while a
 * continuation fragment almost never does, so these indices are the frame boundaries. The caller only trusts
 * them when their count equals Number of Frames.
 */
function codestreamStarts(bytes: Uint8Array, fragments: readonly { position: number }[]): number[] {
  const starts: number[] = [];
  fragments.forEach((fragment, i) => {
    if (CODESTREAM_STARTS.some((marker) => startsWith(bytes, fragment.position, marker))) starts.push(i);
  });
  return starts;
}

/**
 * Refuses encapsulated Pixel Data whose fragment list does not close properly. dicom-parser tolerates a fragment
 * that runs past the end of the file, a missing Sequence Delimitation Item, and (after a wrong fragment length)
 * data bytes where the next item tag should be, which it records as one last fragment; none of these frames can
 * be trusted, and only the first two mean the file was cut short.
 */
function checkFragmentList(bytes: Uint8Array, fragments: readonly Fragment[], file: string): void {
  const count = fragments.length;
  const last = fragments[count - 1];
  if (last === undefined) return;
  const end = last.position + last.length;
  if (!startsWith(bytes, last.position - 8, ITEM_TAG)) {
    throw new DicomRejection(
      file,
      'corrupt',
      `the encapsulated Pixel Data is damaged: a fragment length is wrong, so byte ${last.position - 8} holds image data where fragment ${count} should start`,
    );
  }
  if (end > bytes.length) {
    if (endsWithSequenceDelimiter(bytes)) {
      // The file still ends with the delimiter, so a fragment length swallowed it: damage, not a cut.
      throw new DicomRejection(file, 'corrupt', `the encapsulated Pixel Data is damaged: fragment ${count} declares ${end - bytes.length} bytes more than the file holds, although the file is complete`);
    }
    throw new DicomRejection(file, 'truncated', `file ends inside the encapsulated Pixel Data: fragment ${count} of ${count} needs ${end - bytes.length} more bytes than the file holds`);
  }
  if (!startsWith(bytes, end, SEQUENCE_DELIMITER)) {
    // dicom-parser only stops without the delimiter at the end of the buffer, so the file stops right there.
    throw new DicomRejection(
      file,
      'truncated',
      `file ends inside the encapsulated Pixel Data: no Sequence Delimitation Item (FFFE,E0DD) after fragment ${count} of ${count}`,
    );
  }
}

/** Pixel Data as stored: the value bytes of a native element, or a way to assemble each frame from fragments. */
export function encodedPixelData(dataSet: DataSet, element: Element, header: DicomHeader, file: string): EncodedPixelData {
  const bytes = dataSet.byteArray;
  if (element.encapsulatedPixelData !== true) {
    return {
      kind: 'native',
      bytes: bytes.subarray(element.dataOffset, element.dataOffset + element.length),
      vr: element.vr,
      // dicom-parser clips the value of an implicit VR element that runs past the end of the file.
      cutShort: element.dataOffset + element.length > bytes.length,
    };
  }
  const fragments = element.fragments ?? [];
  checkFragmentList(bytes, fragments, file);
  let starts: number[] | undefined;
  return {
    kind: 'encapsulated',
    fragmentCount: fragments.length,
    frame(index) {
      if ((element.basicOffsetTable ?? []).length > 0) {
        return dicomParser.readEncapsulatedImageFrame(dataSet, element, index);
      }
      if (header.numberOfFrames === 1) {
        return dicomParser.readEncapsulatedPixelDataFromFragments(dataSet, element, 0, fragments.length);
      }
      // Without an offset table the simple layout is one fragment per frame (always so for RLE).
      if (fragments.length === header.numberOfFrames) {
        return dicomParser.readEncapsulatedPixelDataFromFragments(dataSet, element, index, 1);
      }
      starts ??= codestreamStarts(bytes, fragments);
      const first = starts[index];
      if (starts.length === header.numberOfFrames && starts[0] === 0 && first !== undefined) {
        const end = starts[index + 1] ?? fragments.length;
        return dicomParser.readEncapsulatedPixelDataFromFragments(dataSet, element, first, end - first);
      }
      throw new DicomRejection(
        file,
        'unsupported-pixel-format',
        `cannot split ${fragments.length} fragments into ${header.numberOfFrames} frames without a Basic Offset Table`,
      );
    },
  };
}
