import { randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { z } from 'zod';
import {
  describeIssues,
  featureStatisticsViewSchema,
  federation,
  isStatisticsRound,
  studyDefinitionJson,
  studyDefinitionSchema,
  resolveStudyPrivacy,
  siteNoiseStd,
  MAX_SITE_NOISE_STD,
  studyHash,
  STUDY_ID,
  type FeatureStatisticsView,
  type StudyDefinition,
} from '@federa/shared';
import { DATABASE } from '../app/tokens.js';
import { AuditLog } from '../audit/audit-log.js';
import type { Principal } from '../auth/roles.js';
import type { Database } from '../persistence/index.js';
import { EncryptedAggregation, NO_KIT } from '../rounds/encrypted-aggregation.js';
import { summariseEvaluation, type RoundEvaluationView } from '../rounds/evaluation.js';
import { RoundsService } from '../rounds/rounds.service.js';
import { StudyLocks } from '../rounds/study-locks.js';
import { KeyEpochs, NO_MULTIPARTY_KIT } from '../multiparty/index.js';
import { SiteSessions } from '../sessions/site-sessions.js';
import { DatasetSummaries, type DatasetSummaryView } from '../sites/dataset-summaries.js';

export class StudyInputError extends Error {
  override readonly name = 'StudyInputError';
  constructor(readonly issues: string[]) {
    super(`invalid study definition: ${issues.join('; ')}`);
  }
}

export class StudyNotFoundError extends Error {
  override readonly name = 'StudyNotFoundError';
}

/** The caller may not change this study: it belongs to another researcher. */
export class StudyAccessError extends Error {
  override readonly name = 'StudyAccessError';
}

/** A site policy's refusal, as the study's status shows it. */
export interface RefusalView {
  siteId: string;
  round: number;
  task: string;
  reason: string;
  message: string;
  studyHash: string;
  reportedAt: string;
}

/** The definition exactly as sites receive and approve it. */
export interface StudyDefinitionView {
  id: string;
  name: string;
  owner: string | null;
  specHash: string;
  definition: StudyDefinition;
  /** Canonical JSON: its SHA-256 is specHash. */
  definitionJson: string;
}

export interface StudySummary {
  id: string;
  name: string;
  /** The researcher (token name) who created it; only they change or start it (admins may also stop, pause, resume it and drop sites). */
  owner: string | null;
  /** draft, running, paused (the round in progress finishes; no new one opens), completed, failed or cancelled. */
  status: string;
  specHash: string;
  totalRounds: number;
  currentRound: number;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  error: string | null;
  /** Sites dropped from the study: never assigned again. */
  droppedSites: string[];
}

export interface SiteMetricView {
  siteId: string;
  kind: string;
  loss: number;
  accuracy: number;
  samples: number | null;
  /** Differential privacy the site has spent on the study up to and including this round, at privacyDelta; null when not shared. */
  privacyEpsilon: number | null;
  privacyDelta: number | null;
}

export interface ModelView {
  /** 'weights' (readable global weights), 'encrypted_aggregate' or 'multiparty_aggregate' (only sites can decrypt those). */
  kind: string;
  sha256: string;
  sizeBytes: number;
  parameterCount: number;
}

export interface RoundView {
  number: number;
  status: string;
  openedAt: string;
  closedAt: string | null;
  deadlineAt: string | null;
  /** How often the deadline was moved out (deadlineAction 'extend-once'). */
  extensions: number;
  assignedSites: string[];
  reportedSites: string[];
  participants: number;
  /** The hash of the global model (and server optimizer state) every update of the round was trained from; null until an update names one. */
  baseStateSha256: string | null;
  model: ModelView | null;
  metrics: SiteMetricView[];
  /** Sites that said they could not contribute (or whose policy refused), and why. */
  failures: Array<{ siteId: string; reason: string; message: string }>;
  /** Site policy refusals of this round's tasks (train, evaluate and key-switch). */
  refusals: RefusalView[];
  /** The round's published model scored on the contributing sites' held-out data; null until it is published. */
  evaluation: RoundEvaluationView | null;
}

/** GET /studies/:id/evaluation: every round's federated evaluation, with the counts behind the figures. */
export interface StudyEvaluation {
  studyId: string;
  classNames: string[];
  rounds: Array<{ number: number } & RoundEvaluationView>;
}

export interface StudyStatus extends StudySummary {
  definition: StudyDefinition;
  initialModel: ModelView | null;
  rounds: RoundView[];
  /** Sites the study names or has assigned to a round, with the data each loaded for this study (counts only). */
  sites: Array<{ id: string; connected: boolean; dropped: boolean; dataset: DatasetSummaryView | null }>;
  /** Every site policy refusal of this study's tasks, newest first. */
  refusals: RefusalView[];
  /** A study with statistics: the consortium's totals from its statistics round, once a site decrypted them. */
  statistics: StudyStatisticsView | null;
}

export interface StudyStatisticsView {
  round: number;
  sha256: string;
  features: FeatureStatisticsView[];
  /** Sites whose decrypted totals differed from these (the first site's). */
  mismatchedSites: string[];
}

export interface SiteView {
  id: string;
  status: string;
  connected: boolean;
  registeredAt: string;
  lastSeenAt: string;
  agentVersion: string | null;
  backend: string | null;
  /** What the site said its policy refuses, at its last registration. */
  policy: unknown;
  /** The site's latest dataset summary (counts only), from whichever study it last loaded its data for. */
  dataset: DatasetSummaryView | null;
}

/** Researcher-facing operations on studies; round mechanics live in RoundsService. */
@Injectable()
export class StudiesService {
  constructor(
    @Inject(DATABASE) private readonly db: Database,
    @Inject(RoundsService) private readonly rounds: RoundsService,
    @Inject(SiteSessions) private readonly sessions: SiteSessions,
    @Inject(EncryptedAggregation) private readonly encrypted: EncryptedAggregation,
    @Inject(DatasetSummaries) private readonly datasets: DatasetSummaries,
    @Inject(AuditLog) private readonly audit: AuditLog,
    @Inject(StudyLocks) private readonly locks: StudyLocks,
    @Inject(KeyEpochs) private readonly epochs: KeyEpochs,
  ) {}

  async create(body: unknown, caller: Principal): Promise<StudyStatus> {
    const def = this.parseDefinition(body);
    const id = randomUUID();
    const specHash = studyHash(def);
    await this.audit.transaction(async (tx) => {
      await tx.study.create({
        data: { id, name: def.name, status: 'draft', spec: def, specHash, totalRounds: def.rounds, owner: caller.name, ownerTokenId: caller.tokenId },
      });
      return { result: undefined, audit: { kind: 'study.created', actor: caller.actor, studyId: id, details: { ...summaryOf(def), specHash, owner: caller.name } } };
    });
    return this.status(id);
  }

  /** Replaces a draft's definition; its hash changes, so sites that approved the old one must approve again. */
  async change(id: string, body: unknown, caller: Principal): Promise<StudyStatus> {
    const study = await this.requireOwned(id, caller);
    if (study.status !== 'draft') throw new StudyInputError([`(root): study ${id} is ${study.status}; only a draft can be changed`]);
    const def = this.parseDefinition(body);
    const specHash = studyHash(def);
    // Under the study's lock, as starting is: a start reads the definition once and builds the model from it.
    await this.locks.run(id, () => this.audit.transaction(async (tx) => {
      // Conditional on still being a draft, so a change cannot slip in after a concurrent start.
      const changed = await tx.study.updateMany({ where: { id, status: 'draft' }, data: { name: def.name, spec: def, specHash, totalRounds: def.rounds } });
      if (changed.count === 0) throw new StudyInputError([`(root): study ${id} was started meanwhile; only a draft can be changed`]);
      return {
        result: undefined,
        audit: { kind: 'study.changed', actor: caller.actor, studyId: id, details: { ...summaryOf(def), fromHash: study.specHash, specHash } },
      };
    }));
    return this.status(id);
  }

  async start(id: string, caller: Principal): Promise<StudyStatus> {
    await this.requireOwned(id, caller);
    await this.rounds.startStudy(id, caller.actor);
    return this.status(id);
  }

  async stop(id: string, caller: Principal, reason: string): Promise<StudyStatus> {
    await this.requireSteerable(id, caller);
    await this.rounds.stopStudy(id, caller.actor, reason);
    return this.status(id);
  }

  async pause(id: string, caller: Principal, reason: string): Promise<StudyStatus> {
    await this.requireSteerable(id, caller);
    await this.rounds.pauseStudy(id, caller.actor, reason);
    return this.status(id);
  }

  async resume(id: string, caller: Principal): Promise<StudyStatus> {
    await this.requireSteerable(id, caller);
    await this.rounds.resumeStudy(id, caller.actor);
    return this.status(id);
  }

  /** Drops a site from the study; says whether an update it sent to the round in progress was already counted. */
  async dropSite(id: string, siteId: string, caller: Principal, reason: string): Promise<StudyStatus & { dropped: { siteId: string; round: number | null; updateCounted: boolean } }> {
    await this.requireSteerable(id, caller);
    const { counted, round } = await this.rounds.dropSite(id, siteId, caller.actor, reason);
    return { ...(await this.status(id)), dropped: { siteId, round, updateCounted: counted } };
  }

  async definition(id: string): Promise<StudyDefinitionView> {
    const study = await this.requireStudy(id);
    const definition = studyDefinitionSchema.parse(study.spec);
    return { id, name: study.name, owner: study.owner, specHash: study.specHash, definition, definitionJson: studyDefinitionJson(definition) };
  }

  /** Studies a site may be asked to run (not restricted to other sites), for the hospital to review. */
  async offeredTo(siteId: string): Promise<federation.OfferedStudy[]> {
    const rows = await this.db.prisma.study.findMany({ orderBy: { createdAt: 'desc' }, take: 500 });
    const offered: federation.OfferedStudy[] = [];
    for (const row of rows) {
      const definition = studyDefinitionSchema.parse(row.spec);
      if (definition.sites && !definition.sites.includes(siteId)) continue;
      offered.push({
        studyId: row.id,
        name: row.name,
        owner: row.owner ?? '',
        status: row.status,
        studyHash: row.specHash,
        studyDefinitionJson: studyDefinitionJson(definition),
        createdAtUnixMs: row.createdAt.getTime(),
        currentRound: row.currentRound,
      });
    }
    return offered;
  }

  async list(): Promise<StudySummary[]> {
    const rows = await this.db.prisma.study.findMany({ orderBy: { createdAt: 'desc' } });
    return rows.map((row) => summarise(row));
  }

  async status(id: string): Promise<StudyStatus> {
    const study = await this.requireStudy(id);
    const [rounds, models] = await Promise.all([
      this.db.prisma.round.findMany({
        where: { studyId: id },
        orderBy: { number: 'asc' },
        include: { receipts: true, metrics: true, failures: true, evaluations: true },
      }),
      this.db.prisma.modelVersion.findMany({ where: { studyId: id } }),
    ]);
    const refusals = (await this.db.prisma.siteRefusal.findMany({ where: { studyId: id }, orderBy: { reportedAt: 'desc' } })).map((r) => ({
      siteId: r.siteId,
      round: r.round,
      task: r.task,
      reason: r.reason,
      message: r.message,
      studyHash: r.studyHash,
      reportedAt: r.reportedAt.toISOString(),
    }));
    const modelOf = (round: number): RoundView['model'] => {
      const m = models.find((x) => x.round === round);
      return m ? { kind: m.kind, sha256: m.sha256, sizeBytes: m.sizeBytes, parameterCount: m.parameterCount } : null;
    };
    const definition = studyDefinitionSchema.parse(study.spec);
    const statisticsRound = rounds.find((r) => isStatisticsRound(definition, r.number) && r.statisticsSha256 !== null);
    const siteIds = [...new Set([...(definition.sites ?? []), ...rounds.flatMap((r) => r.assignedSites)])].sort();
    const datasets = await this.datasets.latest(siteIds);
    return {
      ...summarise(study),
      definition,
      initialModel: modelOf(0),
      rounds: rounds.map((r) => ({
        number: r.number,
        status: r.status,
        openedAt: r.openedAt.toISOString(),
        closedAt: r.closedAt?.toISOString() ?? null,
        deadlineAt: r.deadlineAt?.toISOString() ?? null,
        extensions: r.extensions,
        assignedSites: r.assignedSites,
        reportedSites: r.receipts.map((x) => x.siteId).sort(),
        participants: r.participants,
        baseStateSha256: r.baseStateSha256,
        model: r.status === 'closed' ? modelOf(r.number) : null,
        metrics: r.metrics
          .map((m) => ({
            siteId: m.siteId,
            kind: m.kind,
            loss: m.loss,
            accuracy: m.accuracy,
            samples: m.samples,
            privacyEpsilon: m.privacyEpsilon,
            privacyDelta: m.privacyDelta,
          }))
          .sort((a, b) => a.siteId.localeCompare(b.siteId) || a.kind.localeCompare(b.kind)),
        failures: r.failures
          .map((f) => ({ siteId: f.siteId, reason: f.reason, message: f.message }))
          .sort((a, b) => a.siteId.localeCompare(b.siteId)),
        refusals: refusals.filter((x) => x.round === r.number),
        evaluation: r.evaluations.length > 0 && !isStatisticsRound(definition, r.number) ? summariseEvaluation(r.evaluations, { classNames: definition.classNames }) : null,
      })),
      refusals,
      statistics: statisticsRound
        ? {
            round: statisticsRound.number,
            sha256: statisticsRound.statisticsSha256 as string,
            features: z.array(featureStatisticsViewSchema).parse(statisticsRound.statistics),
            mismatchedSites: statisticsRound.statisticsMismatches,
          }
        : null,
      sites: siteIds.map((siteId) => {
        const dataset = datasets.get(siteId);
        return {
          id: siteId,
          connected: this.sessions.isConnected(siteId),
          dropped: study.droppedSites.includes(siteId),
          dataset: dataset?.studyId === id ? dataset : null,
        };
      }),
    };
  }

  async evaluation(id: string): Promise<StudyEvaluation> {
    const study = await this.requireStudy(id);
    const rounds = await this.db.prisma.round.findMany({
      where: { studyId: id, evaluations: { some: {} } },
      orderBy: { number: 'asc' },
      include: { evaluations: true },
    });
    const definition = studyDefinitionSchema.parse(study.spec);
    const { classNames } = definition;
    return {
      studyId: id,
      classNames,
      rounds: rounds
        .filter((r) => !isStatisticsRound(definition, r.number))
        .map((r) => ({ number: r.number, ...summariseEvaluation(r.evaluations, { withCounts: true, classNames }) })),
    };
  }

  /**
   * The artifact published after `round` (0 = initial): float32 little-endian weights, or for an encrypted study
   * the CKKS-encrypted sum of the round's updates, which only key-holding sites can turn into weights.
   */
  async modelBlob(id: string, round: number, caller: Principal, audited = true): Promise<{ sha256: string; kind: string }> {
    await this.requireStudy(id);
    const model = await this.db.prisma.modelVersion.findUnique({ where: { studyId_round: { studyId: id, round } } });
    if (!model) throw new StudyNotFoundError(`study ${id} has no model for round ${round} (yet)`);
    if (audited) await this.audit.append({
      kind: 'model.downloaded',
      actor: caller.actor,
      studyId: id,
      round,
      details: { by: caller.name, kind: model.kind, sha256: model.sha256, bytes: model.sizeBytes },
    });
    return { sha256: model.sha256, kind: model.kind };
  }

  async sites(): Promise<SiteView[]> {
    const rows = await this.db.prisma.site.findMany({ orderBy: { id: 'asc' } });
    const datasets = await this.datasets.latest();
    return rows.map((s) => ({
      id: s.id,
      status: s.status,
      connected: this.sessions.isConnected(s.id),
      registeredAt: s.registeredAt.toISOString(),
      lastSeenAt: s.lastSeenAt.toISOString(),
      agentVersion: s.agentVersion,
      backend: s.backend,
      policy: s.policy ?? null,
      dataset: datasets.get(s.id) ?? null,
    }));
  }

  private async requireStudy(id: string) {
    if (!STUDY_ID.test(id)) throw new StudyNotFoundError(`study ${JSON.stringify(id.slice(0, 80))} does not exist: study ids are 1-64 letters, digits and "-"`);
    const study = await this.db.prisma.study.findUnique({ where: { id } });
    if (!study) throw new StudyNotFoundError(`study ${id} does not exist`);
    return study;
  }

  /** Only the researcher who created a study changes, starts or stops it (studies from before tokens: anyone). */
  private async requireOwned(id: string, caller: Principal) {
    const study = await this.requireStudy(id);
    if (study.owner !== null && study.owner !== caller.name) {
      throw new StudyAccessError(`study ${id} belongs to ${study.owner}; only its owner may change or start it (its owner or an admin may stop, pause or resume it)`);
    }
    return study;
  }

  /**
   * Stopping, pausing, resuming and dropping a site steer a running study: its owner may, and so may an admin (who
   * runs the consortium and may have to halt a study whose owner is away).
   */
  private async requireSteerable(id: string, caller: Principal) {
    if (caller.role === 'admin') return this.requireStudy(id);
    return this.requireOwned(id, caller);
  }

  private parseDefinition(body: unknown): StudyDefinition {
    const parsed = studyDefinitionSchema.safeParse(body);
    if (!parsed.success) throw new StudyInputError(describeIssues(parsed.error));
    const def = parsed.data;
    if (def.aggregation === 'ckks' && !this.encrypted.available) throw new StudyInputError([`aggregation: ${NO_KIT}`]);
    if (def.aggregation === 'multiparty' && !this.epochs.available) throw new StudyInputError([`aggregation: ${NO_MULTIPARTY_KIT}`]);
    // A target epsilon becomes the noise multiplier every site runs with, in the definition (and so in its hash).
    let privacy: StudyDefinition['privacy'];
    try {
      privacy = resolveStudyPrivacy(def);
    } catch (error) {
      throw new StudyInputError([(error as Error).message.replace(/^(privacy\.\w+) /, '$1: ')]);
    }
    if (def.privacy?.mode === 'site' && privacy?.noiseMultiplier !== undefined && privacy.clipNorm !== undefined) {
      const std = siteNoiseStd(privacy.noiseMultiplier, privacy.clipNorm, def.minSites);
      if (std > MAX_SITE_NOISE_STD) {
        throw new StudyInputError([`privacy.clipNorm: with the computed noiseMultiplier ${privacy.noiseMultiplier} each site adds noise of standard deviation ${std.toPrecision(3)} per weight, more than the ${MAX_SITE_NOISE_STD} an encrypted update can carry; lower clipNorm or raise minSites`]);
      }
    }
    return privacy ? { ...def, privacy } : def;
  }
}

/** What the audit log keeps of a definition besides its hash: enough to read the log without the database. */
function summaryOf(def: StudyDefinition): Record<string, unknown> {
  return {
    name: def.name,
    architecture: def.model.architecture,
    aggregation: def.aggregation,
    rounds: def.rounds,
    minSites: def.minSites,
    sites: def.sites ?? null,
    privacy: def.privacy?.mode ?? 'none',
  };
}

type StudyRow = Omit<StudySummary, 'createdAt' | 'startedAt' | 'finishedAt'> & {
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
};

function summarise(row: StudyRow): StudySummary {
  return {
    id: row.id,
    name: row.name,
    owner: row.owner,
    status: row.status,
    specHash: row.specHash,
    totalRounds: row.totalRounds,
    currentRound: row.currentRound,
    createdAt: row.createdAt.toISOString(),
    startedAt: row.startedAt?.toISOString() ?? null,
    finishedAt: row.finishedAt?.toISOString() ?? null,
    error: row.error,
    droppedSites: row.droppedSites,
  };
}
