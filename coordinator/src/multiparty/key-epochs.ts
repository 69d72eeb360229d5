import { randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import {
  collectivePublicKey,
  createLogger,
  envelopeSchema,
  federation,
  keyShareStatementSchema,
  multipartySetup,
  packResidues,
  parseStatementJson,
  residueBytes,
  sha256Hex,
  siteSignatureProblem,
  unpackResidues,
  type MultipartySetup,
  type RevocationEntry,
} from '@federa/shared';
import { DATABASE, SITE_IDENTITY } from '../app/tokens.js';
import { AuditLog } from '../audit/audit-log.js';
import { checkStudyRef, FederationError, GrpcStatus } from '../federation/federation-error.js';
import type { SiteIdentity } from '../federation/site-identity.js';
import type { Database } from '../persistence/index.js';

/** The consortium CA and the revocations in force: what every signed share and contribution is checked against. */
export interface MultipartyTrust {
  caPem: string;
  revoked: readonly RevocationEntry[];
}

export const NO_MULTIPARTY_KIT =
  "multiparty aggregation needs the consortium CA from the coordinator kit; start the coordinator with --kit (or create the study with aggregation 'plaintext' for development)";

interface EpochRow {
  id: string;
  studyId: string;
  number: number;
  members: string[];
  status: string;
  collectiveKey: Uint8Array | null;
}

/**
 * A study's key epochs (multiparty aggregation). An epoch is a set of member sites; each holds a secret share that
 * never leaves it and sends a signed public share, and the collective key is their sum. Members then seal their
 * part of the epoch's model key to each other member. The coordinator stores and relays all of it and can read none
 * of what matters: it holds no secret share and opens no envelope.
 *
 * A round runs under the epoch whose members are exactly its cohort; a different cohort (a site added, revoked,
 * dropped or lost) opens a new epoch, so a site that left never holds a key to what is published after it left.
 */
@Injectable()
export class KeyEpochs {
  private readonly log = createLogger('key-epochs');

  constructor(
    @Inject(DATABASE) private readonly db: Database,
    @Inject(AuditLog) private readonly audit: AuditLog,
    @Inject(SITE_IDENTITY) private readonly identity: SiteIdentity,
  ) {}

  get available(): boolean {
    return this.identity.trust?.() != null;
  }

  trust(): MultipartyTrust {
    const trust = this.identity.trust?.();
    if (!trust) throw new FederationError(GrpcStatus.FAILED_PRECONDITION, NO_MULTIPARTY_KIT);
    return trust;
  }

  setup(): MultipartySetup {
    return multipartySetup(this.trust().caPem);
  }

  /**
   * Call under the study's lock. The epoch a round with this cohort runs under: the study's current epoch when its
   * members are exactly the cohort and it was not closed, otherwise a new one (the previous one closed), audited with
   * who joined and who left.
   */
  async epochFor(studyId: string, cohort: readonly string[]): Promise<federation.KeyEpochRef> {
    const members = [...cohort].sort();
    const current = await this.db.prisma.keyEpoch.findFirst({ where: { studyId }, orderBy: { number: 'desc' } });
    if (current && current.status !== 'closed' && sameMembers(current.members, members)) return this.ref(current);
    const joined = members.filter((m) => !current?.members.includes(m));
    const left = (current?.members ?? []).filter((m) => !members.includes(m));
    const reason = !current
      ? 'first round'
      : current.status === 'closed'
        ? `epoch ${current.number} was closed (${current.closedReason ?? 'no reason recorded'})`
        : `the cohort changed${joined.length > 0 ? `: ${joined.join(', ')} joined` : ''}${left.length > 0 ? `${joined.length > 0 ? ';' : ':'} ${left.join(', ')} left` : ''}`;
    const number = (current?.number ?? 0) + 1;
    const now = new Date();
    const { result: created } = await this.audit.transaction(async (tx) => {
      if (current && current.status !== 'closed') {
        await tx.keyEpoch.update({ where: { id: current.id }, data: { status: 'closed', closedAt: now, closedReason: `superseded by epoch ${number}` } });
      }
      const row = await tx.keyEpoch.create({ data: { id: randomUUID(), studyId, number, members, reason, openedAt: now } });
      return { result: row, audit: { kind: 'key.epoch-opened', actor: 'system', studyId, details: { epoch: number, members, reason } } };
    });
    this.log.info({ studyId, epoch: number, members, reason }, 'key epoch opened');
    return this.ref(created);
  }

  /** Closes an epoch (a member was lost): nothing more is collected for it, and the next round opens a new one. */
  async close(studyId: string, number: number, reason: string): Promise<void> {
    const epoch = await this.db.prisma.keyEpoch.findUnique({ where: { studyId_number: { studyId, number } } });
    if (!epoch || epoch.status === 'closed') return;
    await this.audit.transaction(async (tx) => {
      await tx.keyEpoch.update({ where: { id: epoch.id }, data: { status: 'closed', closedAt: new Date(), closedReason: reason } });
      return { result: undefined, audit: { kind: 'key.epoch-closed', actor: 'system', studyId, details: { epoch: number, members: epoch.members, reason } } };
    });
    this.log.warn({ studyId, epoch: number, reason }, 'key epoch closed');
  }

  ref(epoch: Pick<EpochRow, 'number' | 'members'>): federation.KeyEpochRef {
    return { number: epoch.number, members: [...epoch.members], parameters: this.setup().fingerprint };
  }

  /** The members whose shares or envelopes the epoch still waits for (empty once it is complete). */
  async missing(studyId: string, number: number): Promise<string[]> {
    const epoch = await this.db.prisma.keyEpoch.findUnique({ where: { studyId_number: { studyId, number } }, include: { shares: true } });
    if (!epoch) return [];
    return epoch.members.filter((m) => {
      const share = epoch.shares.find((s) => s.siteId === m);
      return !share || (epoch.members.length > 1 && share.envelopesAt === null);
    });
  }

  /**
   * A member's signed public-key share. Refused unless the statement names this site, study, epoch and parameters,
   * is signed by this site's certified, unrevoked certificate, and hashes the bytes sent, which must be a polynomial
   * of the ring. The same share again is accepted (a retry); a different one for the same epoch is refused.
   */
  async submitShare(siteId: string, submission: federation.KeyShareSubmission): Promise<void> {
    const epoch = await this.memberEpoch(siteId, submission.studyId, submission.epoch);
    if (epoch.status === 'closed') throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `key epoch ${epoch.number} of study ${epoch.studyId} is closed`);
    const setup = this.setup();
    const statement = parseStatement(submission.statementJson);
    const s = statement.data;
    const refuse = (why: string): never => {
      throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `key share refused: ${why}`);
    };
    if (!statement.success || !s) return refuse(`the statement is not a key-share statement (${statement.error})`);
    if (s.siteId !== siteId) refuse(`the statement names ${s.siteId}, but ${siteId} sent it`);
    if (s.studyId !== epoch.studyId || s.epoch !== epoch.number) refuse(`the statement is for study ${s.studyId} epoch ${s.epoch}, not study ${epoch.studyId} epoch ${epoch.number}`);
    if (s.parameters !== setup.fingerprint) refuse('the statement is for other CKKS parameters than the consortium\'s');
    const { caPem, revoked } = this.trust();
    const problem = siteSignatureProblem(s, { signature: submission.signature, certificatePem: submission.certificatePem }, { caPem, revoked });
    if (problem) refuse(problem);
    if (submission.share.byteLength !== residueBytes(setup.ring)) refuse(`the share is ${submission.share.byteLength} bytes, a polynomial of the ring is ${residueBytes(setup.ring)}`);
    const shareSha256 = sha256Hex(submission.share);
    if (shareSha256 !== s.shareSha256) refuse(`the share's bytes hash to ${shareSha256}, the statement signs ${s.shareSha256}`);
    try {
      unpackResidues(setup.ring, submission.share, 0);
    } catch (error) {
      refuse((error as Error).message);
    }
    const existing = await this.db.prisma.keyShare.findUnique({ where: { epochId_siteId: { epochId: epoch.id, siteId } } });
    if (existing) {
      if (existing.shareSha256 === shareSha256) return;
      throw new FederationError(GrpcStatus.ALREADY_EXISTS, `site ${siteId} already sent a different key share for epoch ${epoch.number} of study ${epoch.studyId}; one share per epoch`);
    }
    await this.db.prisma.keyShare.create({
      data: {
        epochId: epoch.id,
        siteId,
        statementJson: submission.statementJson,
        signature: submission.signature,
        certificatePem: submission.certificatePem,
        share: new Uint8Array(submission.share),
        shareSha256,
      },
    });
    await this.completeKey(epoch.id);
  }

  /** Once every member's share is in: the collective key, their sum, published with the epoch. */
  private async completeKey(epochId: string): Promise<void> {
    const epoch = await this.db.prisma.keyEpoch.findUniqueOrThrow({ where: { id: epochId }, include: { shares: true } });
    if (epoch.collectiveKey || epoch.shares.length < epoch.members.length) return;
    const { ring } = this.setup();
    const ordered = epoch.members.map((m) => epoch.shares.find((s) => s.siteId === m));
    if (ordered.some((s) => !s)) return;
    const sum = collectivePublicKey(ring, ordered.map((s) => unpackResidues(ring, s!.share, 0).poly));
    const bytes = new Uint8Array(residueBytes(ring));
    packResidues(ring, sum, bytes, 0);
    // Set once: a concurrent completion computes the same bytes.
    await this.db.prisma.keyEpoch.updateMany({ where: { id: epochId, collectiveKey: null }, data: { collectiveKey: bytes, ...(epoch.members.length === 1 ? { status: 'active' } : {}) } });
    this.log.info({ studyId: epoch.studyId, epoch: epoch.number, members: epoch.members.length }, 'collective key complete');
  }

  /**
   * A member's envelopes: its part of the model key, sealed to each other member's certificate key. Taken once the
   * collective key is complete (the sealing site checked the certificates in the signed shares), exactly one per
   * other member; the same envelopes again are accepted, different ones refused.
   */
  async submitEnvelopes(siteId: string, submission: federation.EnvelopeSubmission): Promise<void> {
    const epoch = await this.memberEpoch(siteId, submission.studyId, submission.epoch);
    if (epoch.status === 'closed') throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `key epoch ${epoch.number} of study ${epoch.studyId} is closed`);
    if (!epoch.collectiveKey) throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `key epoch ${epoch.number} of study ${epoch.studyId} is still collecting key shares; send envelopes once the collective key is published`);
    const others = epoch.members.filter((m) => m !== siteId);
    const envelopes = submission.envelopes.map((e, i) => {
      const parsed = envelopeSchema.safeParse({ recipient: e.siteId, ephemeralPublicKey: e.ephemeralPublicKey, iv: e.iv, ciphertext: e.ciphertext });
      if (!parsed.success) throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `envelopes[${i}]: ${parsed.error.issues[0]?.path.join('.') ?? ''} ${parsed.error.issues[0]?.message ?? 'invalid'}`);
      return parsed.data;
    });
    const recipients = envelopes.map((e) => e.recipient).sort();
    if (recipients.length !== others.length || recipients.some((r, i) => r !== others[i])) {
      throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `envelopes go to each other member once (${others.join(', ')}), got ${recipients.join(', ') || 'none'}`);
    }
    const share = await this.db.prisma.keyShare.findUniqueOrThrow({ where: { epochId_siteId: { epochId: epoch.id, siteId } } });
    if (share.envelopes !== null) {
      if (JSON.stringify(share.envelopes) === JSON.stringify(envelopes)) return;
      throw new FederationError(GrpcStatus.ALREADY_EXISTS, `site ${siteId} already sent its envelopes for epoch ${epoch.number} of study ${epoch.studyId}`);
    }
    await this.db.prisma.keyShare.update({ where: { epochId_siteId: { epochId: epoch.id, siteId } }, data: { envelopes, envelopesAt: new Date() } });
    const complete = await this.db.prisma.keyShare.count({ where: { epochId: epoch.id, envelopesAt: { not: null } } });
    if (complete === epoch.members.length) {
      await this.db.prisma.keyEpoch.updateMany({ where: { id: epoch.id, status: 'open' }, data: { status: 'active' } });
      this.log.info({ studyId: epoch.studyId, epoch: epoch.number }, 'key epoch complete: every member has its envelopes');
    }
  }

  /** The epoch as a member sees it: signed shares, the collective key once complete, the envelopes sealed for it. */
  async state(siteId: string, request: federation.KeyEpochRequest): Promise<federation.KeyEpochState> {
    const epoch = await this.memberEpoch(siteId, request.studyId, request.epoch);
    const shares = await this.db.prisma.keyShare.findMany({ where: { epochId: epoch.id } });
    const byMember = epoch.members.flatMap((m) => shares.filter((s) => s.siteId === m));
    const envelopes: federation.SealedEnvelope[] = [];
    for (const share of byMember) {
      if (share.siteId === siteId || share.envelopes === null) continue;
      const all = envelopeSchema.array().parse(share.envelopes);
      const mine = all.find((e) => e.recipient === siteId);
      if (mine) envelopes.push({ siteId: share.siteId, ephemeralPublicKey: mine.ephemeralPublicKey, iv: mine.iv, ciphertext: mine.ciphertext });
    }
    return {
      studyId: epoch.studyId,
      epoch: epoch.number,
      members: epoch.members,
      parameters: this.setup().fingerprint,
      shares: byMember.map((s) => ({
        studyId: epoch.studyId,
        epoch: epoch.number,
        statementJson: s.statementJson,
        signature: s.signature,
        certificatePem: s.certificatePem,
        share: Buffer.from(s.share),
      })),
      collectiveKey: Buffer.from(epoch.collectiveKey ?? new Uint8Array(0)),
      envelopes,
      status: epoch.status,
    };
  }

  private async memberEpoch(siteId: string, studyId: string, number: number): Promise<EpochRow> {
    checkStudyRef(studyId);
    const epoch = await this.db.prisma.keyEpoch.findUnique({ where: { studyId_number: { studyId, number } } });
    if (!epoch) throw new FederationError(GrpcStatus.NOT_FOUND, `study ${studyId} has no key epoch ${number}`);
    if (!epoch.members.includes(siteId)) throw new FederationError(GrpcStatus.PERMISSION_DENIED, `site ${siteId} is not a member of key epoch ${number} of study ${studyId}`);
    return epoch;
  }
}

function sameMembers(a: readonly string[], b: readonly string[]): boolean {
  const x = [...a].sort();
  return x.length === b.length && x.every((v, i) => v === b[i]);
}

function parseStatement(json: string): { success: boolean; data?: ReturnType<typeof keyShareStatementSchema.parse>; error?: string } {
  const travelled = parseStatementJson(json);
  if (!travelled) return { success: false, error: 'not JSON' };
  const parsed = keyShareStatementSchema.safeParse(travelled.value);
  return parsed.success ? { success: true, data: parsed.data } : { success: false, error: parsed.error.issues[0]?.message ?? 'invalid' };
}
