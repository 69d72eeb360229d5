import {
  contributionStatementSchema,
  parseStatementJson,
  sha256Hex,
  siteIdSchema,
  updateC1Part,
  type MultipartySetup,
} from '@federa/shared';
import type { BlobStore } from '../blobs/index.js';
import { checkStudyRef, FederationError, GrpcStatus } from '../federation/federation-error.js';
import type { Database } from '../persistence/index.js';

export interface UpdateC1Request {
  studyId: string;
  round: number;
  /** The contributor whose update's c1 part is asked for. */
  siteId: string;
}

/**
 * The c1 part of an update listed in a switching round, for a member of the round's key epoch that checks the sum
 * it is asked to switch (DownloadUpdateC1). Authorised as the sum itself is (RoundSwitching.sumFor): the round must
 * be waiting for shares, and the caller one of its members. The part is cut from the stored update when asked for,
 * so no second copy of every update is kept; it must hash to the c1Sha256 its contributor signed (checked at upload).
 */
export async function listedUpdateC1(
  deps: { db: Database; blobs: BlobStore; setup: MultipartySetup },
  caller: string,
  request: UpdateC1Request,
): Promise<{ sha256: string; bytes: Uint8Array }> {
  const { studyId, round: number, siteId } = request;
  checkStudyRef(studyId, number);
  if (!siteIdSchema.safeParse(siteId).success) {
    throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `site_id: "${siteId.slice(0, 80)}" is not a site id (lower-case letters, digits and "-")`);
  }
  const where = `round ${number} of study ${studyId}`;
  const round = await deps.db.prisma.round.findUnique({ where: { studyId_number: { studyId, number } }, include: { receipts: true } });
  if (!round || round.status !== 'switching' || !round.sumC1Sha256) {
    throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `${where} is not waiting for key-switching shares`);
  }
  if (!round.assignedSites.includes(caller)) throw new FederationError(GrpcStatus.PERMISSION_DENIED, `site ${caller} is not a member of the key epoch of ${where}`);
  const receipt = round.receipts.find((r) => r.siteId === siteId);
  if (!receipt) throw new FederationError(GrpcStatus.NOT_FOUND, `${where} lists no update of site ${siteId}`);
  // Checked when the update was accepted: a statement that no longer parses is this coordinator's fault, not the caller's.
  const stored = receipt.contribution as { statementJson?: unknown } | null;
  const statement = contributionStatementSchema.safeParse(typeof stored?.statementJson === 'string' ? parseStatementJson(stored.statementJson)?.value : undefined);
  if (!statement.success) throw new Error(`the stored contribution statement of ${siteId} in ${where} does not parse`);
  const { ring, params } = deps.setup;
  const bytes = updateC1Part(ring, params, await deps.blobs.get(receipt.sha256), { epoch: statement.data.epoch });
  const sha256 = sha256Hex(bytes);
  if (sha256 !== statement.data.c1Sha256) throw new Error(`the stored update of ${siteId} in ${where} has c1 part ${sha256}, not the ${statement.data.c1Sha256} its statement signs`);
  return { sha256, bytes };
}
