import { createHash } from 'node:crypto';
import { canonicalJson } from '../study/canonical-json.js';
import { WEIGHTS_LAYOUT_VERSION } from './registry.js';
import { parseModelSpec, type ModelSpec } from './spec.js';

/**
 * SHA-256 (hex) of `canonicalJson({ spec, weightsLayoutVersion })`, using the same canonical encoding as study
 * hashes. The layout version is included because two agents agreeing on the spec but not on the weight layout
 * would silently average mismatched tensors.
 */
export function modelSpecHash(spec: ModelSpec): string {
  // Parsing normalises the input (and rejects extra keys) so only the meaningful fields are hashed.
  const valid = parseModelSpec(spec);
  const payload = canonicalJson({ spec: valid, weightsLayoutVersion: WEIGHTS_LAYOUT_VERSION });
  return createHash('sha256').update(payload, 'utf8').digest('hex');
}
