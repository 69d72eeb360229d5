import {
  checkUpdateThreaded,
  contributionStatementSchema,
  federation,
  MultipartyPayloadError,
  parseStatementJson,
  siteSignatureProblem,
  type MultipartySetup,
  type MultipartyThreading,
  updateC1Sha256,
} from '@federa/shared';
import { FederationError, GrpcStatus } from '../federation/federation-error.js';
import type { MultipartyTrust } from './key-epochs.js';

/** What an accepted multiparty update's receipt keeps: the site's signed statement, which every member later checks. */
export type StoredContribution = federation.SignedContribution;

/**
 * Checks a multiparty update before it is counted: the payload is ciphertexts of this round's epoch and length, every
 * residue in range, and the signed contribution statement names the uploading site, this study, round and epoch, the
 * consortium's parameters and exactly these bytes (the whole payload, and its c1 part: c1-parts.ts), under a certificate the consortium CA issued to that site and did
 * not revoke. Members check the same statements before they help decrypt a sum, so the coordinator keeps them.
 * A large update's residues are checked on `threading`'s worker threads.
 */
export async function checkMultipartyUpdate(
  setup: MultipartySetup,
  trust: MultipartyTrust,
  bytes: Uint8Array,
  expect: { siteId: string; studyId: string; round: number; epoch: number; valueCount: number; sha256: string },
  contribution: federation.SignedContribution | undefined,
  threading?: MultipartyThreading,
): Promise<StoredContribution> {
  const refuse = (why: string): never => {
    throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `multiparty update refused: ${why}`);
  };
  if (!contribution || contribution.statementJson === '') return refuse('the upload header carries no signed contribution statement');
  const json = parseStatementJson(contribution.statementJson);
  if (!json) return refuse('the contribution statement is not JSON');
  const parsed = contributionStatementSchema.safeParse(json.value);
  if (!parsed.success) return refuse(`the contribution statement is malformed: ${parsed.error.issues[0]?.path.join('.') ?? ''} ${parsed.error.issues[0]?.message ?? ''}`);
  const s = parsed.data;
  if (s.siteId !== expect.siteId) refuse(`the statement names ${s.siteId}, but ${expect.siteId} sent it`);
  if (s.studyId !== expect.studyId || s.round !== expect.round || s.epoch !== expect.epoch) {
    refuse(`the statement is for study ${s.studyId} round ${s.round} epoch ${s.epoch}, not study ${expect.studyId} round ${expect.round} epoch ${expect.epoch}`);
  }
  if (s.parameters !== setup.fingerprint) refuse('the statement is for other CKKS parameters than the consortium\'s');
  if (s.updateSha256 !== expect.sha256) refuse(`the statement signs update ${s.updateSha256}, the bytes received hash to ${expect.sha256}`);
  const problem = siteSignatureProblem(s, contribution, trust);
  if (problem) refuse(`the contribution statement: ${problem}`);
  try {
    await checkUpdateThreaded(setup.ring, setup.params, bytes, { epoch: expect.epoch, valueCount: expect.valueCount }, threading);
  } catch (error) {
    if (error instanceof MultipartyPayloadError) refuse(`${error.code}: ${error.message}`);
    throw error;
  }
  // After the residue check: the part is then the one members decode and sum, and the one DownloadUpdateC1 serves.
  const c1Sha256 = updateC1Sha256(setup.ring, setup.params, bytes);
  if (s.c1Sha256 !== c1Sha256) refuse(`the statement's c1Sha256 signs c1 part ${s.c1Sha256}, the update's c1 part hashes to ${c1Sha256}`);
  return { statementJson: contribution.statementJson, signature: contribution.signature, certificatePem: contribution.certificatePem };
}
