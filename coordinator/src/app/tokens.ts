/** Injection tokens for values that are not classes. */
export const COORDINATOR_CONFIG = Symbol('COORDINATOR_CONFIG');
export const DATABASE = Symbol('DATABASE');
export const BLOB_STORE = Symbol('BLOB_STORE');
export const SITE_IDENTITY = Symbol('SITE_IDENTITY');
export const CKKS_PUBLIC_PARAMS = Symbol('CKKS_PUBLIC_PARAMS');
/** The coordinator's key and certificate from its kit, or null without a kit. */
export const COORDINATOR_SIGNER = Symbol('COORDINATOR_SIGNER');
