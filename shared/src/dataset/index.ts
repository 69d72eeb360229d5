export {
  datasetSummarySchema,
  DICOM_MODALITIES,
  IMAGE_FORMATS,
  modalityCategory,
  NO_MODALITY,
  OTHER_MODALITY,
  PRIVATE_TRANSFER_SYNTAX,
  SIZE_BUCKETS,
  sizeBucket,
  transferSyntaxCategory,
  type DatasetSummary,
  type SizeBucket,
} from './summary.js';
