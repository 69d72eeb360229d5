import { federation, parameterCount, payloadBytes, SHA256_HEX, taggedLength } from '@federa/shared';
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
  const layout: VectorLayout = { parameters: parameterCount(def.model), cohort: [...round.assignedSites].sort() };
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
