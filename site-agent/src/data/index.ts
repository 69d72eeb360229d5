/**
 * Site-side data pipeline: DICOM, PNG and JPEG files on disk -> validated, labelled tensors preprocessed with
 * the study's pipeline (and cached on disk) for local training.
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
export {
  pipelineHash,
  preprocessFrame,
  preprocessImage,
  PREPROCESS_VERSION,
  type FrameSource,
  type ImageSource,
  type PreprocessOptions,
} from './preprocess/preprocess.js';
export { decodeRaster, sniffRasterFormat, type RasterImage } from './preprocess/raster.js';
export { preprocessMask, type MaskGrid, type PreprocessMaskOptions } from './preprocess/mask.js';
export { decodeImage } from './preprocess/source.js';
export { ImageRejection, isImageRejection, type ImageRejectionReason } from './preprocess/rejection.js';
export { LABEL_KEYS, LabelsCsvError, parseLabelsCsv, type LabelKey, type LabelRow, type LabelsCsvIssue, type LabelsTable } from './dataset/labels-csv.js';
export { DatasetLabels, identityOf, type DatasetLayout, type ImageIdentity } from './dataset/labels.js';
export { TensorCache, type CachedTensor, type TensorCacheStats } from './dataset/tensor-cache.js';
export {
  listFiles,
  loadLabeledDataset,
  type DatasetRejectionReason,
  type LabeledImages,
  type LoadedDataset,
  type GroupedImages,
  type LoadLabeledDatasetOptions,
  type RejectedFile,
} from './dataset/load.js';
export {
  loadSegmentationDataset,
  SEGMENTATION_IMAGE_CLASSES,
  type LoadedSegmentationDataset,
  type LoadSegmentationDatasetOptions,
  type SegmentedImages,
} from './dataset/load-segmentation.js';
export { loadRegionDataset, type LoadedRegionDataset, type LoadRegionDatasetOptions } from './dataset/load-region.js';
export { isPngMaskName, PNG_MASK_SUFFIX } from './dataset/mask-files.js';
export * from './masks/index.js';
export * from './scan/index.js';
export * from './pacs/index.js';
