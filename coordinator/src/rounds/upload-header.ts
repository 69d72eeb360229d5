import { federation, parameterCount, payloadBytes, roundPayloadLength, SHA256_HEX, taggedLength } from '@federa/shared';
import type { KeyEpochs } from '../multiparty/index.js';
import { checkStudyRef, FederationError, GrpcStatus } from '../federation/federation-error.js';
import type { Database } from '../persistence/index.js';
import type { EncryptedAggregation } from './encrypted-aggregation.js';
import { definitionOf, encodingOf } from './tasks.js';
import { expectedPayloadBytes, type VectorLayout } from './upload-payload.js';

/** An update larger than this is refused before any byte is stored. */
export const MAX_UPLOAD_BYTES = 2 * 1024 ** 3;

/** The round an upload's header names, checked: what its payload must look like. */
export interface UploadTarget {
  studyId: string;
  roundId: string;
  layout: VectorLayout;
  vectorLength: number;
  /** Multiparty: the key epoch the round's updates are encrypted under. */
  keyEpoch: number | null;
}

/**
 * An update trained from another global model than the round's others: the site's decrypted model (or, with a
 * server optimizer, the optimizer state every site keeps) is not the other sites'. Said so the site's IT can act:
 * the agent recomputes both from the published aggregates once its copies are gone, and trains the round again once
 * the round's saved update is gone too.
 */
export function baseStateConflict(siteId: string, studyId: string, round: number, named: string, fixed: string): FederationError {
  const error = new FederationError(
    GrpcStatus.FAILED_PRECONDITION,
    `site ${siteId}'s update for round ${round} of study ${studyId} was trained from a global model whose state hashes to ${named}, ` +
      `but the round's other updates were trained from ${fixed}: this site's decrypted model (or server optimizer state) differs from the other sites', ` +
      'so its update was not counted. Its IT should stop the site agent, delete its model cache for the study ' +
      `(models/${studyId} in the agent's state folder) and the round's saved update (rounds/${studyId}/${round}), and start it again: ` +
      'it then recomputes the model from the published aggregates and trains the round again',
  );
  // The study and round are real ones (the round takes uploads): the audit record of the refusal names them.
  error.concerns = { studyId, round };
  return error;
}

/** The study and round an upload is for, if that round takes this site's upload now; refused otherwise. */
export async function roundTakingUploads(db: Database, siteId: string, studyId: string, number: number) {
  checkStudyRef(studyId, number);
  const study = await db.prisma.study.findUnique({ where: { id: studyId } });
  if (!study) throw new FederationError(GrpcStatus.NOT_FOUND, `study ${studyId} does not exist`);
  // A paused study still finishes the round it has.
  if (study.status !== 'running' && study.status !== 'paused') {
    throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `study ${studyId} is ${study.status}; it takes no uploads`);
  }
  refuseDropped(study, siteId);
  const round = await db.prisma.round.findUnique({ where: { studyId_number: { studyId: study.id, number } } });
  if (!round) throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `round ${number} of study ${study.id} has not been opened`);
  if (round.status !== 'open') {
    throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `round ${number} of study ${study.id} is ${round.status}; late uploads are refused, not added`);
  }
  if (!round.assignedSites.includes(siteId)) {
    throw new FederationError(GrpcStatus.PERMISSION_DENIED, `site ${siteId} is not a participant of round ${number} of study ${study.id}`);
  }
  if (round.deadlineAt && round.deadlineAt.getTime() < Date.now()) {
    throw new FederationError(GrpcStatus.DEADLINE_EXCEEDED, `round ${number} of study ${study.id} passed its deadline`);
  }
  return { study, round };
}

export async function checkUploadHeader(
  db: Database,
  encrypted: EncryptedAggregation,
  epochs: KeyEpochs,
  siteId: string,
  header: federation.UpdateHeader,
): Promise<UploadTarget> {
  const { study, round } = await roundTakingUploads(db, siteId, header.studyId, header.round);
  const def = definitionOf(study);
  const expectedEncoding = encodingOf(def);
  if (header.encoding !== expectedEncoding) {
    throw new FederationError(
      GrpcStatus.INVALID_ARGUMENT,
      `study ${study.id} takes ${federation.updateEncodingToJSON(expectedEncoding)} updates, not ${federation.updateEncodingToJSON(header.encoding)}`,
    );
  }
  // A statistics round's updates carry the statistics vector in place of the parameters.
  const layout: VectorLayout = { parameters: roundPayloadLength(def, round.number, parameterCount(def.model)), cohort: [...round.assignedSites].sort() };
  const payloadLength = layout.parameters + 1 + layout.cohort.length;
  // An encrypted update is laid out in whole ciphertexts, each ending with the site's contribution tags.
  const multiparty = header.encoding === federation.UpdateEncoding.UPDATE_ENCODING_MULTIPARTY ? epochs.setup() : null;
  const vectorLength =
    header.encoding === federation.UpdateEncoding.UPDATE_ENCODING_CKKS
      ? taggedLength(payloadLength, await encrypted.valuesPerCiphertext())
      : multiparty
        ? taggedLength(payloadLength, multiparty.ring.n)
        : payloadLength;
  if (header.vectorLength !== vectorLength) {
    throw new FederationError(
      GrpcStatus.INVALID_ARGUMENT,
      `update vector length ${header.vectorLength} does not match the round (${vectorLength}: parameters + weight + ${layout.cohort.length} contribution slots${vectorLength !== payloadLength ? ', in whole ciphertexts with their tags' : ''})`,
    );
  }
  // The size is known from the layout: anything else is refused before a byte of data is read.
  const expectedBytes =
    header.encoding === federation.UpdateEncoding.UPDATE_ENCODING_CKKS
      ? await encrypted.updateBytes(vectorLength)
      : multiparty
        ? payloadBytes(multiparty.ring, multiparty.params, 'update', vectorLength)
        : expectedPayloadBytes(header.encoding, vectorLength);
  if (expectedBytes !== undefined && header.totalBytes !== expectedBytes) {
    throw new FederationError(
      GrpcStatus.INVALID_ARGUMENT,
      `a ${federation.updateEncodingToJSON(header.encoding)} update of ${vectorLength} values is ${expectedBytes} bytes, the header says ${header.totalBytes}`,
    );
  }
  if (header.totalBytes <= 0 || header.totalBytes > MAX_UPLOAD_BYTES) {
    throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `upload size ${header.totalBytes} is outside 1..${MAX_UPLOAD_BYTES} bytes`);
  }
  if (header.sha256 !== '' && !SHA256_HEX.test(header.sha256)) {
    throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `sha256: "${header.sha256.slice(0, 80)}" is not a SHA-256 digest (64 lower-case hex characters)`);
  }
  if (header.baseStateSha256 !== '' && !SHA256_HEX.test(header.baseStateSha256)) {
    throw new FederationError(
      GrpcStatus.INVALID_ARGUMENT,
      `base_state_sha256: "${header.baseStateSha256.slice(0, 80)}" is not a SHA-256 digest (64 lower-case hex characters)`,
    );
  }
  // Checked here too, so a site whose model differs hears so before its bytes travel; the receiver checks again
  // under the study's lock, where the first update fixes the round's hash.
  if (header.baseStateSha256 !== '' && round.baseStateSha256 !== null && header.baseStateSha256 !== round.baseStateSha256) {
    throw baseStateConflict(siteId, study.id, header.round, header.baseStateSha256, round.baseStateSha256);
  }
  if (header.offset > 0 && (header.sha256 === '' || header.offset > header.totalBytes)) {
    throw new FederationError(
      GrpcStatus.INVALID_ARGUMENT,
      header.sha256 === '' ? 'offset: an upload resumes only under the sha256 its header declares' : `offset ${header.offset} is past the update's ${header.totalBytes} bytes`,
    );
  }
  const base = await db.prisma.modelVersion.findUnique({ where: { studyId_round: { studyId: study.id, round: header.round - 1 } } });
  if (!SHA256_HEX.test(header.baseModelSha256) || header.baseModelSha256 !== base?.sha256) {
    throw new FederationError(
      GrpcStatus.FAILED_PRECONDITION,
      `the update was computed against model ${header.baseModelSha256 || '(none)'}, but round ${header.round} starts from ${base?.sha256 ?? '(missing)'}`,
    );
  }
  return { studyId: study.id, roundId: round.id, layout, vectorLength, keyEpoch: round.keyEpoch };
}

/** A site dropped from a study sends it nothing more that counts. */
export function refuseDropped(study: { id: string; droppedSites: string[] }, siteId: string): void {
  if (study.droppedSites.includes(siteId)) {
    throw new FederationError(GrpcStatus.PERMISSION_DENIED, `site ${siteId} was dropped from study ${study.id}; nothing it sends is counted`);
  }
}
