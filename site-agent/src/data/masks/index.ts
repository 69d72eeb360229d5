/**
 * Segmentation masks for site images: DICOM SEG, RT Structure Sets rasterised onto their images, and PNG label
 * maps, all as 8-bit label masks keyed by the source image's SOP Instance UID (PNG: a caller-given key).
 */
export { LABEL_MAP_SEGMENTATION_SOP_CLASS_UID, readDicomSeg, SEGMENTATION_SOP_CLASS_UID, type ReadSegOptions, type SegMaskFile, type SegmentationType } from './dicom-seg.js';
export { isMaskError, MaskError, type MaskErrorReason } from './errors.js';
export { geometryFromDataSet, readImageGeometry, type ReadGeometryOptions } from './geometry.js';
export { matchMasks, type MaskImageRef, type MaskMatch, type MaskMismatch, type MaskPair, type MatchMasksOptions } from './match.js';
export { readPngMask, type ReadPngMaskOptions } from './png-mask.js';
export { fillEvenOdd, type Polygon } from './rasterise.js';
export { sniffMaskObject, type MaskObjectKind } from './sniff.js';
export { DEFAULT_PLANE_TOLERANCE_MM, readRtStruct, RT_STRUCTURE_SET_SOP_CLASS_UID, type ReadRtStructOptions } from './rtstruct.js';
export type { ImageGeometry, LabelMask, MaskFile, MaskKind, MaskSegment, SegmentAlgorithmType, Vec3 } from './types.js';
export { decodeMaskFile, maskValueLabelsSchema, readMaskFile, roiLabelsSchema, type ReadMaskFileOptions } from './read-mask.js';
