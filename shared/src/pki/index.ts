export { PkiError, CertificateRejectedError, type CertificateRejectionCode } from './errors.js';
export type { EcCurve } from './keys.js';
export {
  certificateFingerprint,
  inspectCertificate,
  keyMatchesCertificate,
  type CertificateDetails,
  type CertificateInput,
} from './certificate.js';
export {
  createRootCa,
  issueServerCertificate,
  issueSiteCertificate,
  dnsNameSchema,
  ipAddressSchema,
  type CertificateAuthorityPem,
  type IssuedCertificate,
  type RootCaOptions,
  type ServerCertificateOptions,
  type SiteCertificateOptions,
} from './issue.js';
export {
  SITE_URI_PREFIX,
  siteUri,
  assertCertificateTrusted,
  verifyCertificate,
  extractSiteId,
  type CertificatePurpose,
  type CertificateVerification,
  type VerifiedCertificate,
  type VerifyCertificateOptions,
} from './verify.js';
export {
  fingerprint256Schema,
  revocationEntrySchema,
  revocationListSchema,
  parseRevocationList,
  findRevocation,
  type RevocationEntry,
} from './revocation.js';
export {
  KIT_FORMAT,
  KIT_FILES,
  KitError,
  coordinatorKitManifestSchema,
  siteKitManifestSchema,
  readCoordinatorKit,
  readSiteKit,
  sha256HexOf,
  type CoordinatorKit,
  type CoordinatorKitManifest,
  type KitReadOptions,
  type SiteKit,
  type SiteKitManifest,
} from './kit.js';
export { signCanonical, verifyCanonical } from './signing.js';
