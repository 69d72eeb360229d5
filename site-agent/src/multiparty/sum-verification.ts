import {
  C1PartSum,
  c1PartBytes,
  ciphertextCount,
  createLogger,
  federation,
  MultipartyPayloadError,
  openPayload,
  sha256Hex,
  type ContributionStatement,
  type MultipartyParameters,
  type RnsRing,
} from '@federa/shared';
import type { CoordinatorRetry, FederationClient } from '../client/index.js';
import type { SitePolicy } from '../config/index.js';
import { PolicyRefusalError } from '../policy/index.js';

export type SumCheck = { ok: true } | { ok: false; reason: string };

export interface SumCheckInput {
  ring: RnsRing;
  params: MultipartyParameters;
  /** The sum-c1 blob this member is asked to switch (already checked against the task's SHA-256). */
  sum: Uint8Array;
  /** The listed contributions' statements, their signatures checked (checkShareRequest). */
  contributions: readonly ContributionStatement[];
  /** One listed update's c1 part as the coordinator serves it; `bytes` is the size a part of this sum has. */
  download(siteId: string, bytes: number): Promise<Uint8Array>;
}

/**
 * Whether the c1 a member is asked to switch is the sum of the c1 parts of the listed updates, each the part its
 * site signed (c1Sha256). Without this, a coordinator could list honest contributions but send one site's c1, and a
 * member colluding with it would read that site's update under the model key. One part is held at a time: each is
 * downloaded, hashed and added before the next is asked for.
 */
export async function checkSumOfContributions(input: SumCheckInput): Promise<SumCheck> {
  const { ring, params, sum, contributions } = input;
  let header;
  try {
    header = openPayload(ring, params, 'sum-c1', sum, {});
  } catch (error) {
    if (error instanceof MultipartyPayloadError) return { ok: false, reason: `the sum is not a sum-c1 blob: ${error.message}` };
    throw error;
  }
  if (contributions.length === 0) return { ok: false, reason: 'the sum lists no contribution' };
  const total = new C1PartSum(ring, params, header);
  const bytes = c1PartBytes(ring, params, header.valueCount);
  for (const statement of contributions) {
    const part = await input.download(statement.siteId, bytes);
    const digest = sha256Hex(part);
    if (digest !== statement.c1Sha256) {
      return { ok: false, reason: `the c1 part served for ${statement.siteId}'s update hashes to ${digest}, not the c1Sha256 ${statement.c1Sha256} the site signed` };
    }
    try {
      total.add(part);
    } catch (error) {
      if (error instanceof MultipartyPayloadError) return { ok: false, reason: `the c1 part of ${statement.siteId}'s update does not fit the sum: ${error.message}` };
      throw error;
    }
  }
  const differing = total.differingCiphertexts(sum);
  if (differing.length > 0) {
    const shown = differing.length > 8 ? `${differing.slice(0, 8).join(', ')}, ...` : differing.join(', ');
    return {
      ok: false,
      reason:
        `the c1 sent is not the sum of the c1 parts of the ${contributions.length} listed updates (${contributions.map((c) => c.siteId).join(', ')}): ` +
        `${differing.length} of its ${ciphertextCount(ring, header.valueCount)} ciphertexts differ (${shown})`,
    };
  }
  return { ok: true };
}

/**
 * A member's policy.verifySum: checks each sum before its share is computed, or, when the hospital turned it off,
 * says once per study that the coordinator's sum is trusted as sent.
 */
export class SumVerifier {
  private readonly log = createLogger('multiparty');
  private readonly warned = new Set<string>();

  constructor(
    private readonly client: Pick<FederationClient, 'downloadUpdateC1'>,
    private readonly retry: Pick<CoordinatorRetry, 'call'>,
    private readonly policy: Pick<SitePolicy, 'verifySum'>,
  ) {}

  /** Refuses (SHARE_REQUEST_INVALID) a sum that is not the sum of the listed updates' c1 parts. */
  async verify(task: Pick<federation.KeySwitchTask, 'studyId' | 'round'>, input: Omit<SumCheckInput, 'download'>): Promise<void> {
    if (!this.policy.verifySum) {
      if (!this.warned.has(task.studyId)) {
        this.warned.add(task.studyId);
        this.log.warn({ studyId: task.studyId }, 'policy.verifySum is false: this site helps decrypt sums without checking they are sums of the listed updates');
      }
      return;
    }
    const check = await checkSumOfContributions({
      ...input,
      download: (siteId, bytes) =>
        this.retry.call(`the c1 part of ${siteId}'s update in round ${task.round}`, () => this.client.downloadUpdateC1(task.studyId, task.round, siteId, bytes)),
    });
    if (!check.ok) {
      throw new PolicyRefusalError({
        reason: federation.RefusalReason.REFUSAL_REASON_SHARE_REQUEST_INVALID,
        message: `this site will not help decrypt round ${task.round} of study ${task.studyId}: ${check.reason}`,
      });
    }
    this.log.info({ studyId: task.studyId, round: task.round, contributors: input.contributions.length }, 'the sum is the sum of the listed updates');
  }
}
