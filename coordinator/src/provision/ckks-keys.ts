import { CkksContext, sha256Hex } from '@federa/shared';
import type { CkksKeyMaterial } from './ckks.js';

/**
 * The consortium's one CKKS key set, made with the default parameters. The fingerprint is the hash of the
 * public parameters (which carry the key id), so every kit can show it holds material of the same key set.
 */
export async function generateConsortiumCkksKeys(): Promise<CkksKeyMaterial> {
  const context = await CkksContext.create();
  try {
    const keys = context.generateKeys();
    return { secretKey: keys.secretKey, publicParams: keys.publicParams, fingerprint: sha256Hex(keys.publicParams) };
  } finally {
    context.dispose();
  }
}
