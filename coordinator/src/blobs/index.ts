export {
  BlobStore,
  BlobNotFoundError,
  InvalidSha256Error,
  SHA256_HEX,
  isSha256Hex,
  type BlobInfo,
  type BlobSource,
} from './blob-store.js';
export { PartialUploads, PartialWriter, PartialOffsetError, type PartialKey } from './partial-uploads.js';
