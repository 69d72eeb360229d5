export { FederationClient, CoordinatorRefusal, isServiceError, type FederationClientOptions } from './federation-client.js';
export { siteTransport, SiteKitError, type SiteTransport } from './credentials.js';
