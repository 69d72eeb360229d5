export { FederationClient, CoordinatorRefusal, isServiceError, type FederationClientOptions } from './federation-client.js';
