export { FederationClient, CoordinatorRefusal, isServiceError, MAX_MODEL_BYTES, type FederationClientOptions, type UploadHeader } from './federation-client.js';
export { siteTransport, SiteKitError, type SiteTransport } from './credentials.js';
export { CoordinatorRetry, DEFAULT_RETRY, type RetryTiming } from './retry.js';
