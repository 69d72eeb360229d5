import { ProvisionError } from './errors.js';

/**
 * One consortium-wide CKKS key set, as the CKKS module produces it. Provisioning treats the bytes as opaque:
 * it only decides where each part may go (secret key: site kits and the operator's ca/ folder; public
 * parameters: every kit) and records the fingerprint so any participant can check they share one key set.
 */
export interface CkksKeyMaterial {
  /** Serialized secret key. Only sites (and the operator's offline ca/ folder) ever receive it. */
  secretKey: Uint8Array;
  /** Serialized encryption parameters and any public material; safe for the coordinator. */
  publicParams: Uint8Array;
  /** Stable identifier of the key set, recorded in every kit.json. */
  fingerprint: string;
}

export type CkksKeyGenerator = () => Promise<CkksKeyMaterial>;

/** Checks a generator's output before any of it is written, so a bad key set never reaches a kit. */
export function validateCkksKeyMaterial(material: CkksKeyMaterial): CkksKeyMaterial {
  const problems: string[] = [];
  if (!(material.secretKey instanceof Uint8Array) || material.secretKey.length === 0) problems.push('secretKey is empty');
  if (!(material.publicParams instanceof Uint8Array) || material.publicParams.length === 0) problems.push('publicParams is empty');
  if (typeof material.fingerprint !== 'string' || !/^[\x21-\x7e]{1,200}$/.test(material.fingerprint)) {
    problems.push('fingerprint must be 1-200 printable ASCII characters without spaces');
  }
  // A generator that hands back the secret as the "public" part would put the decryption key on the coordinator.
  if (problems.length === 0 && Buffer.from(material.secretKey).equals(Buffer.from(material.publicParams))) {
    problems.push('publicParams are identical to secretKey');
  }
  if (problems.length > 0) {
    throw new ProvisionError(`the CKKS key generator returned unusable key material: ${problems.join('; ')}`);
  }
  return material;
}
