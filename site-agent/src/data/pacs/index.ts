/** The hospital's PACS as a data source: DICOMweb search and retrieval into a local cache the scan and loader read. */
export { DicomWebClient, DicomWebError, type DicomWebClientOptions, type InstanceRef, type UidLevel } from './client.js';
export { authorizationHeader, describeAuth, PacsCredentialsError } from './credentials.js';
export { contentTypeParameter, MultipartError, parseMultipart, type MultipartPart } from './multipart.js';
export {
  dataSourceSchema,
  dicomWebSourceSchema,
  pacsCacheDir,
  type DataSource,
  type DicomWebAuth,
  type DicomWebFilters,
  type DicomWebQuery,
  type DicomWebSource,
} from './schema.js';
export { cacheFileOf, dicomWebClientFor, syncPacsSelection, type PacsSyncOptions, type PacsSyncResult } from './sync.js';
export { selectPacsInstances, type NotInPacs, type PacsSelection } from './select.js';
export { prepareSiteDataset, type SiteDataset } from './site-source.js';
export { checkPacsSource, type PacsCheck } from './doctor.js';
