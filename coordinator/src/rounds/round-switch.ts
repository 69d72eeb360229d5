import { randomUUID } from 'node:crypto';
import {
  decodePolys,
  federation,
  MultipartyPayloadError,
  parameterCount,
  roundPayloadLength,
  payloadBytes,
  sha256Hex,
  sumUpdatesThreaded,
  switchedModelThreaded,
  taggedLength,
  type StudyDefinition,
} from '@federa/shared';
import { checkStudyRef, FederationError, GrpcStatus } from '../federation/federation-error.js';
import type { KeyEpochs } from '../multiparty/index.js';
import type { PublishedRound } from './aggregator.js';
import { timerKey, type OpenRound, type RoundContext } from './round-context.js';
import { definitionOf, trainTask, type StudyRow } from './tasks.js';

/** What the switching phase hands back to the other phases (late-bound: they are built around each other). */
export interface SwitchingHooks {
  /** Publishes the switched sum and moves the study on (RoundClosing). */
  publishSwitched(roundId: string, published: PublishedRound): Promise<void>;
  /** Fails the round and the study when too few sites are left to run it again. */
  failRound(round: OpenRound, studyId: string, message: string): Promise<void>;
  /** Arms an open round's deadline (RoundCollection). */
  armOpenDeadline(round: OpenRound): void;
  /** The model a round starts from, as tasks carry it. */
  baseRef(studyId: string, round: number): Promise<federation.ModelRef>;
}

export interface SwitchingRound {
  id: string;
  studyId: string;
  number: number;
  status: string;
  assignedSites: string[];
  keyEpoch: number | null;
  sumC0Sha256: string | null;
  sumC1Sha256: string | null;
  deadlineAt: Date | null;
  receipts: Array<{ siteId: string; sha256: string; contribution: unknown }>;
}

/**
 * The multiparty end of a round: the coordinator adds the updates it cannot read, then asks every member of the
 * round's key epoch for a key-switching share of the sum, and publishes C0 + sum of shares, which decrypts only under
 * the epoch's model key. With N-of-N keys one silent member blocks this, so a member lost (disconnected past the
 * grace period, or silent past the deadline) closes the epoch and the round runs again under a new epoch without it.
 */
export class RoundSwitching {
  constructor(
    private readonly ctx: RoundContext,
    private readonly epochs: KeyEpochs,
    private readonly hooks: SwitchingHooks,
  ) {}

  /** Values in one site's update: the tagged vector of parameters, weight and contribution slots. */
  valueCount(def: StudyDefinition, round: { number: number; assignedSites: readonly string[] }): number {
    return taggedLength(roundPayloadLength(def, round.number, parameterCount(def.model)) + 1 + round.assignedSites.length, this.epochs.setup().ring.n);
  }

  /** Sums the round's updates and asks every epoch member for its share. Call under the study's lock. */
  async begin(round: SwitchingRound, def: StudyDefinition): Promise<void> {
    const { blobs, audit, log } = this.ctx;
    const { ring, params } = this.epochs.setup();
    const epoch = requireEpoch(round);
    const header = { epoch, valueCount: this.valueCount(def, round) };
    const updates: Uint8Array[] = [];
    for (const receipt of round.receipts) updates.push(await blobs.get(receipt.sha256));
    const sum = await sumUpdatesThreaded(ring, params, header, updates, this.ctx.aggregator.multipartyThreading());
    const c0 = await blobs.put(sum.c0);
    const c1 = await blobs.put(sum.c1);
    const deadlineAt = new Date(Date.now() + def.roundTimeoutSeconds * 1000);
    const contributors = round.receipts.map((r) => r.siteId).sort();
    const { result: updated } = await audit.transaction(async (tx) => {
      const row = await tx.round.update({
        where: { id: round.id },
        data: { status: 'switching', sumC0Sha256: c0.sha256, sumC1Sha256: c1.sha256, deadlineAt },
        include: { receipts: true },
      });
      return {
        result: row,
        audit: {
          kind: 'round.key-switch-requested',
          actor: 'system',
          studyId: round.studyId,
          round: round.number,
          details: { epoch, contributors, members: round.assignedSites, sumSha256: c1.sha256, bytes: c1.size },
        },
      };
    });
    log.info({ studyId: round.studyId, round: round.number, epoch, contributors }, 'updates summed; asking every epoch member for its key-switching share');
    this.armDeadline(updated);
    const study = await this.ctx.db.prisma.study.findUniqueOrThrow({ where: { id: round.studyId } });
    const task = this.task(study, updated, c1.size);
    for (const siteId of updated.assignedSites) this.ctx.sessions.send(siteId, task);
  }

  /**
   * The task asking for a share, with the signed contributions every member checks before it computes one, and the
   * sum-c1 blob's hash and size (a member that checks the sum builds it from the contributions' c1 parts).
   */
  task(study: Pick<StudyRow, 'id' | 'specHash'>, round: SwitchingRound, sumSizeBytes: number): federation.Task {
    const epoch = requireEpoch(round);
    if (!round.sumC1Sha256) throw new Error(`round ${round.number} of study ${round.studyId} has no sum to switch`);
    return {
      taskId: `${study.id}/${round.number}/key-switch/${epoch}`,
      kind: {
        $case: 'keySwitch',
        value: {
          studyId: study.id,
          round: round.number,
          epoch,
          studyHash: study.specHash,
          sumSha256: round.sumC1Sha256,
          sumSizeBytes,
          contributions: round.receipts.map((r) => contributionOf(r.contribution)),
          parameters: this.epochs.setup().fingerprint,
          cohort: [...round.assignedSites].sort(),
        },
      },
    };
  }

  /** Tasks a member still owes: a share for each switching round of an epoch it belongs to. */
  async pendingFor(siteId: string): Promise<federation.Task[]> {
    const rounds = await this.ctx.db.prisma.round.findMany({
      where: { status: 'switching', assignedSites: { has: siteId }, keySwitchShares: { none: { siteId } } },
      include: { receipts: true, study: true },
      orderBy: { openedAt: 'asc' },
    });
    const tasks: federation.Task[] = [];
    for (const round of rounds) {
      const size = round.sumC1Sha256 ? await this.ctx.blobs.size(round.sumC1Sha256) : undefined;
      tasks.push(this.task(round.study, round, size ?? 0));
    }
    return tasks;
  }

  /** The sum's c1 blob for a member of the round's epoch. */
  async sumFor(siteId: string, studyId: string, number: number): Promise<{ sha256: string }> {
    checkStudyRef(studyId, number);
    const round = await this.ctx.db.prisma.round.findUnique({ where: { studyId_number: { studyId, number } } });
    if (!round || round.status !== 'switching' || !round.sumC1Sha256) {
      throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `round ${number} of study ${studyId} is not waiting for key-switching shares`);
    }
    if (!round.assignedSites.includes(siteId)) throw new FederationError(GrpcStatus.PERMISSION_DENIED, `site ${siteId} is not a member of the key epoch of round ${number} of study ${studyId}`);
    return { sha256: round.sumC1Sha256 };
  }

  /**
   * A member's share: for the switching round's sum, this epoch, decodable. Stored once; the same bytes again are
   * acknowledged as already held, different bytes refused (a member computes one share per sum). The last share
   * switches the sum and publishes it.
   */
  async submitShare(siteId: string, submission: federation.KeySwitchShareSubmission): Promise<{ alreadyHeld: boolean }> {
    checkStudyRef(submission.studyId, submission.round);
    const { db, blobs, locks } = this.ctx;
    return locks.run(submission.studyId, async () => {
      const round = await db.prisma.round.findUnique({ where: { studyId_number: { studyId: submission.studyId, number: submission.round } } });
      const where = `round ${submission.round} of study ${submission.studyId}`;
      if (!round) throw new FederationError(GrpcStatus.NOT_FOUND, `${where} does not exist`);
      if (!round.assignedSites.includes(siteId)) throw new FederationError(GrpcStatus.PERMISSION_DENIED, `site ${siteId} is not a member of the key epoch of ${where}`);
      const existing = await db.prisma.keySwitchShare.findUnique({ where: { roundId_siteId: { roundId: round.id, siteId } } });
      const sha256 = sha256Hex(submission.share);
      if (existing) {
        if (existing.shareSha256 === sha256 && existing.epoch === submission.epoch && existing.sumSha256 === submission.sumSha256) return { alreadyHeld: true };
        throw new FederationError(GrpcStatus.ALREADY_EXISTS, `site ${siteId} already sent a different key-switching share for ${where}; one share per sum`);
      }
      if (round.status !== 'switching') throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `${where} is ${round.status}, not waiting for key-switching shares`);
      if (submission.epoch !== round.keyEpoch) throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `${where} is switched under key epoch ${round.keyEpoch}, not ${submission.epoch}`);
      if (submission.sumSha256 !== round.sumC1Sha256) throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `the share is for sum ${submission.sumSha256}, ${where} asks for ${round.sumC1Sha256}`);
      const { ring, params } = this.epochs.setup();
      const study = await db.prisma.study.findUniqueOrThrow({ where: { id: round.studyId } });
      const valueCount = this.valueCount(definitionOf(study), round);
      try {
        decodePolys(ring, params, 'share', submission.share, { epoch: round.keyEpoch, valueCount });
      } catch (error) {
        if (error instanceof MultipartyPayloadError) throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `key-switching share refused (${error.code}): ${error.message}`);
        throw error;
      }
      if (submission.share.byteLength !== payloadBytes(ring, params, 'share', valueCount)) throw new FederationError(GrpcStatus.INVALID_ARGUMENT, 'key-switching share has the wrong size');
      const blob = await blobs.put(submission.share);
      await db.prisma.keySwitchShare.create({
        data: { roundId: round.id, siteId, epoch: submission.epoch, sumSha256: submission.sumSha256, shareSha256: blob.sha256, sizeBytes: blob.size },
      });
      await this.finishIfComplete(round.id);
      return { alreadyHeld: false };
    });
  }

  /** Call under the study's lock. Every member's share is in: C0' = C0 + sum h_i, published as the round's model. */
  async finishIfComplete(roundId: string): Promise<void> {
    const { db, blobs, log } = this.ctx;
    const round = await db.prisma.round.findUniqueOrThrow({ where: { id: roundId }, include: { keySwitchShares: true, receipts: true, study: true } });
    if (round.status !== 'switching' || !round.sumC0Sha256 || !round.sumC1Sha256) return;
    if (!round.assignedSites.every((m) => round.keySwitchShares.some((s) => s.siteId === m))) return;
    const { ring, params } = this.epochs.setup();
    const epoch = requireEpoch(round);
    const header = { epoch, valueCount: this.valueCount(definitionOf(round.study), round) };
    const shares: Uint8Array[] = [];
    for (const member of [...round.assignedSites].sort()) shares.push(await blobs.get(round.keySwitchShares.find((s) => s.siteId === member)!.shareSha256));
    const [c0, c1] = [await blobs.get(round.sumC0Sha256), await blobs.get(round.sumC1Sha256)];
    const model = await switchedModelThreaded(ring, params, header, c0, c1, shares, this.ctx.aggregator.multipartyThreading());
    const blob = await blobs.put(model);
    log.info({ studyId: round.studyId, round: round.number, epoch }, 'every member sent its share; the sum is switched to the epoch\'s model key');
    this.ctx.steps.cancel(timerKey.deadline(round.id));
    await this.hooks.publishSwitched(round.id, {
      kind: 'multiparty_aggregate',
      model: blob,
      sum: { sha256: round.sumC1Sha256, size: (await blobs.size(round.sumC1Sha256)) ?? 0 },
      sites: round.receipts.length,
      keyEpoch: epoch,
    });
  }

  /**
   * A member refused the round's key epoch (its collective key does not check out) or its key-switch task (the sum
   * is not one it will help decrypt). N-of-N keys: the sum can then never be switched, so the round goes the way of
   * a member lost at the deadline, without waiting for it. Checked under the study's lock; `record` stores the
   * refusal once the checks pass, and the redo follows as a step (retried if the database is briefly away).
   */
  async memberRefused(
    siteId: string,
    studyId: string,
    number: number,
    /** What the member refused (or, `failed`, could not do: a site error computing its share), and why. */
    refused: { task: 'train' | 'key-switch'; reason: string; failed?: boolean },
    record: () => Promise<void>,
  ): Promise<void> {
    checkStudyRef(studyId, number);
    const { db, locks, steps } = this.ctx;
    await locks.run(studyId, async () => {
      const where = `round ${number} of study ${studyId}`;
      const round = await db.prisma.round.findUnique({ where: { studyId_number: { studyId, number } }, include: { keySwitchShares: { select: { siteId: true } } } });
      if (!round) throw new FederationError(GrpcStatus.NOT_FOUND, `${where} does not exist`);
      if (round.keyEpoch === null) {
        throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `${where} runs under no key epoch (its study does not aggregate multiparty): there is no key epoch or key-switch task to refuse`);
      }
      const epoch = await db.prisma.keyEpoch.findUnique({ where: { studyId_number: { studyId, number: round.keyEpoch } } });
      if (!epoch?.members.includes(siteId) || !round.assignedSites.includes(siteId)) {
        throw new FederationError(GrpcStatus.PERMISSION_DENIED, `site ${siteId} is not a member of key epoch ${round.keyEpoch} of ${where}`);
      }
      if (refused.task === 'key-switch') {
        if (round.status !== 'switching') throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `${where} is ${round.status}, not waiting for key-switching shares`);
        if (round.keySwitchShares.some((s) => s.siteId === siteId)) {
          throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `site ${siteId} already sent its key-switching share for ${where}; the share stands`);
        }
      } else if (!['open', 'aggregating', 'switching'].includes(round.status)) {
        throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `${where} is ${round.status}; its key epoch is no longer in use`);
      }
      await record();
      const what = refused.task === 'key-switch' ? `the key-switch task of key epoch ${round.keyEpoch}` : `key epoch ${round.keyEpoch}`;
      const did = refused.failed ? 'failed' : 'refused';
      // A round whose aggregation is being retried is left to finish it (redo skips it): the key-switch task that
      // follows goes to this member too, and its refusal of that redoes the round.
      steps.run(`site ${siteId} ${did} ${what} of ${where}`, studyId, () => this.redo(round.id, [siteId], `${siteId} ${did} ${what} (${refused.reason})`));
    });
  }

  /** A switching round's deadline: the members that sent no share are lost, and the round runs again without them. */
  armDeadline(round: Pick<SwitchingRound, 'id' | 'studyId' | 'deadlineAt'>): void {
    const { steps } = this.ctx;
    if (!round.deadlineAt) return;
    steps.schedule(timerKey.deadline(round.id), round.deadlineAt.getTime() - Date.now(), () =>
      steps.run(`the key-switching deadline of round ${round.id}`, round.studyId, () => this.onDeadline(round.id)),
    );
  }

  private async onDeadline(roundId: string): Promise<void> {
    const round = await this.ctx.db.prisma.round.findUnique({ where: { id: roundId }, include: { keySwitchShares: true } });
    if (!round || round.status !== 'switching') return;
    const silent = round.assignedSites.filter((m) => !round.keySwitchShares.some((s) => s.siteId === m));
    if (silent.length === 0) return this.finishIfComplete(roundId);
    await this.redo(roundId, silent, `no key-switching share from ${silent.join(', ')} by the deadline`);
  }

  /**
   * Call under the study's lock. Members of the round's epoch are lost: the epoch is closed (its sum can never be
   * decrypted without them), and the round runs again under a new epoch of the remaining sites, which re-encrypt
   * the updates they trained. Too few left: the round fails as any round short of sites does.
   */
  async redo(roundId: string, lost: readonly string[], reason: string): Promise<void> {
    const { db, audit, log, sessions, steps, aggregator } = this.ctx;
    const round = await db.prisma.round.findUnique({ where: { id: roundId }, include: { receipts: true, study: true } });
    // Already running without them (a revocation and a lost connection both report the same site).
    if (!round || !lost.some((s) => round.assignedSites.includes(s))) return;
    if (round.status === 'aggregating') {
      // The sum is being made; left alone, it would then wait for a share the lost member never sends. Try again
      // once the round is switching (or has failed, when this does nothing).
      steps.schedule(timerKey.redoLater(roundId, lost), REDO_RETRY_MS, () =>
        steps.run(`round ${round.number} of study ${round.studyId} lost ${lost.join(', ')}`, round.studyId, () => this.redo(roundId, lost, reason)),
      );
      return;
    }
    if (round.status !== 'open' && round.status !== 'switching') return;
    const def = definitionOf(round.study);
    if (round.keyEpoch !== null) await this.epochs.close(round.studyId, round.keyEpoch, `lost ${lost.join(', ')}: ${reason}`);
    const remaining = round.assignedSites.filter((s) => !lost.includes(s)).sort();
    if (remaining.length < def.minSites) {
      await this.hooks.failRound(
        round,
        round.studyId,
        `round ${round.number} lost ${lost.join(', ')} (${reason}); ${remaining.length} site(s) are left, the study needs ${def.minSites}, so it cannot run again under a new key epoch`,
      );
      return;
    }
    const epoch = await this.epochs.epochFor(round.studyId, remaining);
    const deadlineAt = new Date(Date.now() + def.roundTimeoutSeconds * 1000);
    const dropped = round.receipts.map((r) => ({ siteId: r.siteId, sha256: r.sha256 }));
    const { result: updated } = await audit.transaction(async (tx) => {
      await tx.updateReceipt.deleteMany({ where: { roundId } });
      await tx.keySwitchShare.deleteMany({ where: { roundId } });
      await tx.roundFailure.deleteMany({ where: { roundId, siteId: { in: [...lost] } } });
      const row = await tx.round.update({
        where: { id: roundId },
        data: { status: 'open', assignedSites: remaining, keyEpoch: epoch.number, deadlineAt, sumC0Sha256: null, sumC1Sha256: null, redone: { increment: 1 }, extensions: 0 },
        include: { failures: true },
      });
      return {
        result: row,
        audit: {
          kind: 'round.redone',
          actor: 'system',
          studyId: round.studyId,
          round: round.number,
          details: { reason, lost, epoch: epoch.number, cohort: remaining, updatesDiscarded: dropped, redoId: randomUUID() },
        },
      };
    });
    log.warn({ studyId: round.studyId, round: round.number, lost, epoch: epoch.number }, `round runs again under a new key epoch: ${reason}`);
    aggregator.forgetRound(roundId);
    steps.cancel(timerKey.deadline(roundId));
    this.hooks.armOpenDeadline(updated);
    const base = await this.hooks.baseRef(round.studyId, round.number - 1);
    const task = trainTask(round.study, updated, base);
    for (const siteId of remaining) if (!updated.failures.some((f) => f.siteId === siteId)) sessions.send(siteId, task);
  }
}

/** How soon a redo asked for while a round's sum is being made is tried again. */
const REDO_RETRY_MS = 500;

function requireEpoch(round: { keyEpoch: number | null; number: number; studyId: string }): number {
  if (round.keyEpoch === null) throw new Error(`round ${round.number} of study ${round.studyId} has no key epoch`);
  return round.keyEpoch;
}

function contributionOf(stored: unknown): federation.SignedContribution {
  const c = stored as Partial<federation.SignedContribution> | null;
  return { statementJson: c?.statementJson ?? '', signature: c?.signature ?? '', certificatePem: c?.certificatePem ?? '' };
}
