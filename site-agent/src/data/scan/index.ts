export {
  scanDataset,
  inspectDicomFile,
  littleEndianBytes,
  type InspectResult,
  type ScanOptions,
  type ScanRejection,
  type ScanReport,
} from './scan.js';
export { summariseLoadedDataset } from './summary.js';
