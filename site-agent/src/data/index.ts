/**
 * Site-side data pipeline: DICOM files on disk -> validated, preprocessed, labelled tensors for local training.
 * Only native (uncompressed) transfer syntaxes decode today; compressed ones are rejected by name and plug in
 * later through the codec registry.
 */
export { DicomRejection, DICOM_REJECTION_REASONS, isDicomRejection, type DicomRejectionReason } from './dicom/rejection.js';
export type { DicomHeader } from './dicom/header.js';
export type { PixelArray } from './dicom/pixels.js';
export { decodeDicom, decodeAllFrames, readDicomFile, type DecodeOptions, type DicomImage } from './dicom/reader.js';
export {
  defaultCodecs,
  nativeCodec,
  type CodecFrame,
  type CodecInput,
  type CodecRegistry,
  type EncodedPixelData,
  type PixelCodec,
} from './dicom/codecs.js';
export { lookupTransferSyntax, transferSyntaxName, type TransferSyntaxInfo } from './dicom/transfer-syntax.js';
export { preprocessFrame, type FrameSource, type PreprocessOptions } from './preprocess/preprocess.js';
export { LabelsCsvError, parseLabelsCsv, type LabelRow, type LabelsCsvIssue } from './dataset/labels-csv.js';
export {
  loadLabeledDataset,
  type DatasetRejectionReason,
  type LabeledImages,
  type LoadedDataset,
  type LoadLabeledDatasetOptions,
  type RejectedFile,
} from './dataset/load.js';
export * from './scan/index.js';
