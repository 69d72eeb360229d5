import { decodeDicom } from '../dicom/reader.js';
import type { ImageSource } from './preprocess.js';
import { decodeRaster, sniffRasterFormat } from './raster.js';

/**
 * Decodes a file of a site's dataset: PNG or JPEG by signature, anything else through the DICOM reader (which
 * refuses non-DICOM with 'not-dicom'). Multi-frame DICOM contributes its first frame: the study defines one
 * image per labelled file. Throws DicomRejection / ImageRejection for files that cannot be used.
 */
export async function decodeImage(bytes: Uint8Array, file: string): Promise<ImageSource> {
  if (sniffRasterFormat(bytes) !== undefined) return decodeRaster(bytes, file);
  return decodeDicom(bytes, { file });
}
