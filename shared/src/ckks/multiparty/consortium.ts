import { createHash, createHmac, X509Certificate } from 'node:crypto';
import { deriveMultipartyParameters, type MultipartyParameters } from './params.js';
import { multipartyFingerprint } from './key-shares.js';
import { ringOf } from './protocol.js';
import { sampleTernary, SeededStream, type RnsRing } from './ring.js';

/**
 * What every party of a consortium derives alike, from public inputs only: the parameters (the defaults of
 * deriveMultipartyParameters), their ring, their fingerprint, and the common random seed the epochs' common
 * polynomials are expanded from. The seed is a digest of the consortium CA's certificate, so every site checks it
 * from its kit: nobody chooses it after the CA exists, and no kit carries a secret for it.
 */
export interface MultipartySetup {
  params: MultipartyParameters;
  ring: RnsRing;
  fingerprint: string;
  commonSeed: Uint8Array;
}

const setups = new Map<string, MultipartySetup>();

export function multipartySetup(caPem: string): MultipartySetup {
  const cached = setups.get(caPem);
  if (cached) return cached;
  const params = deriveMultipartyParameters();
  const setup = { params, ring: ringOf(params), fingerprint: multipartyFingerprint(params), commonSeed: commonSeedOf(caPem) };
  setups.set(caPem, setup);
  return setup;
}

let defaultFingerprint: string | undefined;

/** The fingerprint of the consortium parameters (they depend on no input): what tasks name and shares sign. */
export function consortiumMultipartyFingerprint(): string {
  defaultFingerprint ??= multipartyFingerprint(deriveMultipartyParameters());
  return defaultFingerprint;
}

export function commonSeedOf(caPem: string): Uint8Array {
  const der = new X509Certificate(caPem).raw;
  return new Uint8Array(createHash('sha256').update('federa/multiparty/common-seed/v1\0').update(der).digest());
}

/**
 * An epoch's model key seed: every member contributes 32 random bytes, sealed to each other member, and the seed is
 * the digest of all contributions in member order. No single member chooses it, and the coordinator, which relays
 * sealed envelopes only, never sees any part of it.
 */
export function modelSeedOf(scope: { studyId: string; epoch: number }, contributions: readonly Uint8Array[]): Uint8Array {
  const hash = createHash('sha256').update(`federa/multiparty/model-seed/v1\0${scope.studyId}\0${scope.epoch}\0`);
  for (const part of contributions) {
    if (part.length !== 32) throw new RangeError(`a model key contribution is 32 bytes, got ${part.length}`);
    hash.update(part);
  }
  return new Uint8Array(hash.digest());
}

/** The ternary model key s_m the epoch's sums are switched to: only members, who know the seed, can expand it. */
export function modelKeyOf(ring: RnsRing, modelSeed: Uint8Array): Uint32Array {
  return sampleTernary(ring, new SeededStream(modelSeed, 'federa/multiparty/model-key'));
}

/** The key contribution tags are made with in a multiparty epoch (the single-key mode derives it from its secret). */
export function multipartyTagKey(modelSeed: Uint8Array): Buffer {
  return createHmac('sha256', Buffer.from(modelSeed)).update('federa/multiparty/contribution-tags/v1').digest();
}
