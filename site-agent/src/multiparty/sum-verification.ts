import {
  C1PartSum,
  c1PartBytes,
  createLogger,
  federation,
  MultipartyPayloadError,
  readPayloadHeader,
  sha256Hex,
  type ContributionStatement,
  type MultipartyParameters,
  type RnsRing,
} from '@federa/shared';
import { MAX_MODEL_BYTES, type CoordinatorRetry, type FederationClient } from '../client/index.js';
import type { SitePolicy } from '../config/index.js';
import { PolicyRefusalError } from '../policy/index.js';

export type SumOfParts = { ok: true; sum: Uint8Array } | { ok: false; reason: string };

export interface SumOfPartsInput {
  ring: RnsRing;
  params: MultipartyParameters;
  /** The sum the task names: its key epoch, the SHA-256 of its sum-c1 blob and that blob's size. */
  sum: { epoch: number; sha256: string; sizeBytes: number };
  /** The listed contributions' statements, their signatures checked (checkShareRequest). */
  contributions: readonly ContributionStatement[];
  /** One listed update's c1 part as the coordinator serves it; `bytes` is the size a part of this sum has. */
  download(siteId: string, bytes: number): Promise<Uint8Array>;
  /** Parts downloaded at once; by default as many as fit PART_BUFFER_BYTES (at least 1, at most 4). */
  window?: number;
}

/** Memory a member gives the c1 parts it holds at once while it checks a sum (the running sum comes on top). */
export const PART_BUFFER_BYTES = 256 * 1024 ** 2;
const MAX_WINDOW = 4;

/** How many parts of `bytes` each are downloaded at once: a small model's parts together, a large one's in turn. */
export function partWindow(bytes: number): number {
  return Math.max(1, Math.min(MAX_WINDOW, Math.floor(PART_BUFFER_BYTES / Math.max(1, bytes))));
}

/**
 * The sum a member switches, built from the c1 parts of the listed updates, each checked against the c1Sha256 its
 * site signed, and accepted only when it hashes to the sum the task names. A coordinator that lists honest
 * contributions but names another c1 (one site's alone, or a sum missing one) is refused, and the member never
 * downloads the coordinator's sum: the parts are the sum. Parts are downloaded a window at a time, in order, and
 * each is added as it arrives, so a large model's member holds a few parts, not every update.
 */
export async function sumOfContributions(input: SumOfPartsInput): Promise<SumOfParts> {
  const { ring, params, sum, contributions } = input;
  if (contributions.length === 0) return { ok: false, reason: 'the sum lists no contribution' };
  if (!Number.isSafeInteger(sum.sizeBytes) || sum.sizeBytes < 1 || sum.sizeBytes > MAX_MODEL_BYTES) {
    return { ok: false, reason: `the task names a sum of ${sum.sizeBytes} bytes, outside the 1..${MAX_MODEL_BYTES} a site accepts` };
  }
  const window = input.window ?? partWindow(sum.sizeBytes);
  const pending: Array<Promise<Uint8Array>> = [];
  const fetchPart = (i: number): void => {
    const statement = contributions[i];
    if (!statement) return;
    const download = input.download(statement.siteId, sum.sizeBytes);
    // A download still in flight when an earlier part is refused is left to finish unread.
    download.catch(() => undefined);
    pending[i] = download;
  };
  for (let i = 0; i < window; i++) fetchPart(i);
  let total: C1PartSum | undefined;
  for (const [i, statement] of contributions.entries()) {
    const part = await (pending[i] as Promise<Uint8Array>);
    delete pending[i];
    const digest = sha256Hex(part);
    if (digest !== statement.c1Sha256) {
      return { ok: false, reason: `the c1 part served for ${statement.siteId}'s update hashes to ${digest}, not the c1Sha256 ${statement.c1Sha256} the site signed` };
    }
    // The next part downloads while this one is added.
    fetchPart(i + window);
    try {
      // The first part says the sum's length; each part is then checked against that and the task's epoch.
      if (!total) {
        const header = readPayloadHeader(params, part);
        if (c1PartBytes(ring, params, header.valueCount) !== sum.sizeBytes) {
          return { ok: false, reason: `the c1 part of ${statement.siteId}'s update holds ${header.valueCount} values, not a sum of ${sum.sizeBytes} bytes` };
        }
        total = new C1PartSum(ring, params, { epoch: sum.epoch, valueCount: header.valueCount });
      }
      total.add(part);
    } catch (error) {
      if (error instanceof MultipartyPayloadError) return { ok: false, reason: `the c1 part of ${statement.siteId}'s update does not fit the sum: ${error.message}` };
      throw error;
    }
  }
  const built = (total as C1PartSum).encode();
  const digest = sha256Hex(built);
  if (digest !== sum.sha256) {
    return {
      ok: false,
      reason:
        `the sum named is not the sum of the c1 parts of the ${contributions.length} listed updates (${contributions.map((c) => c.siteId).join(', ')}): ` +
        `those add up to ${digest}, the task names ${sum.sha256}`,
    };
  }
  return { ok: true, sum: built };
}

type SumTask = Pick<federation.KeySwitchTask, 'studyId' | 'round' | 'epoch' | 'sumSha256' | 'sumSizeBytes'>;

/**
 * A member's policy.verifySum: the sum it switches is built from the listed updates' signed c1 parts, or, when the
 * hospital turned the check off, downloaded from the coordinator and trusted as sent (said once per study).
 */
export class SumVerifier {
  private readonly log = createLogger('multiparty');
  private readonly warned = new Set<string>();

  constructor(
    private readonly client: Pick<FederationClient, 'downloadUpdateC1' | 'downloadSum'>,
    private readonly retry: Pick<CoordinatorRetry, 'call'>,
    private readonly policy: Pick<SitePolicy, 'verifySum'>,
  ) {}

  /** The sum-c1 blob to switch; refuses (SHARE_REQUEST_INVALID) a sum that is not the sum of the listed updates. */
  async sumFor(task: SumTask, input: Pick<SumOfPartsInput, 'ring' | 'params' | 'contributions'>): Promise<Uint8Array> {
    const refuse = (why: string): never => {
      throw new PolicyRefusalError({
        reason: federation.RefusalReason.REFUSAL_REASON_SHARE_REQUEST_INVALID,
        message: `this site will not help decrypt round ${task.round} of study ${task.studyId}: ${why}`,
      });
    };
    if (!this.policy.verifySum) {
      if (!this.warned.has(task.studyId)) {
        this.warned.add(task.studyId);
        this.log.warn({ studyId: task.studyId }, 'policy.verifySum is false: this site helps decrypt sums without checking they are sums of the listed updates');
      }
      const sum = await this.retry.call(`sum of round ${task.round}`, () => this.client.downloadSum(task.studyId, task.round, task.sumSha256));
      const digest = sha256Hex(sum);
      return digest === task.sumSha256 ? sum : refuse(`the sum received hashes to ${digest}, not the ${task.sumSha256} the task names`);
    }
    const built = await sumOfContributions({
      ...input,
      sum: { epoch: task.epoch, sha256: task.sumSha256, sizeBytes: task.sumSizeBytes },
      download: (siteId, bytes) =>
        this.retry.call(`the c1 part of ${siteId}'s update in round ${task.round}`, () => this.client.downloadUpdateC1(task.studyId, task.round, siteId, bytes)),
    });
    if (!built.ok) return refuse(built.reason);
    this.log.info({ studyId: task.studyId, round: task.round, contributors: input.contributions.length }, 'the sum is the sum of the listed updates, built from their signed c1 parts');
    return built.sum;
  }
}
