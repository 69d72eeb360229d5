/** Synthetic consortium data: DICOM writer, phantom generator, hospital profiles and the dataset generator. */
export {
  CLASS_NAMES,
  generateConsortium,
  HOLDOUT_ID,
  HOLDOUT_LESION_FRACTION,
  synthesizeImage,
  type ClassName,
  type ConsortiumSummary,
  type GenerateConsortiumOptions,
  type GeneratedSet,
  type SynthesizedImage,
} from './consortium.js';
export { checkLesionAppearance, generatePhantom, type LesionAppearance, type LesionPlacement, type Phantom, type PhantomOptions } from './phantom.js';
export { BASE_PROFILES, hospitalProfiles, MAX_SITES, siteId, type HospitalProfile } from './profiles.js';
export { createRng, shuffle, syntheticUid, type Rng } from './rng.js';
export {
  IMPLEMENTATION_CLASS_UID,
  SOP_CLASS_UIDS,
  WRITER_TRANSFER_SYNTAX_UIDS,
  writeDicomPart10,
  type SopClass,
  type SyntheticImageSpec,
  type WriterTransferSyntax,
} from './writer.js';
export {
  DEFAULT_SEGMENTS,
  LESION_CATEGORY,
  LESION_TYPE,
  SEGMENTATION_STORAGE,
  writeSegmentation,
  type SegCode,
  type SegImageGeometry,
  type SegSegment,
  type SegSourceImage,
  type SegSpec,
} from './seg-writer.js';
export { LESION_SEGMENT, lesionMask, writeLesionSegmentation, type LesionSegSource } from './lesion-seg.js';
export { formatSummary, parseSimArgs, runSimCli, USAGE, type CliIo, type SimCliArgs } from './cli.js';
