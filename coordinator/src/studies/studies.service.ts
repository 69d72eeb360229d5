import { randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { describeIssues, studyDefinitionSchema, studyHash, type StudyDefinition } from '@federa/shared';
import { DATABASE } from '../app/tokens.js';
import type { Database } from '../persistence/index.js';
import { EncryptedAggregation, NO_KIT } from '../rounds/encrypted-aggregation.js';
import { summariseEvaluation, type RoundEvaluationView } from '../rounds/evaluation.js';
import { RoundsService } from '../rounds/rounds.service.js';
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

export interface StudySummary {
  id: string;
  name: string;
  status: string;
  specHash: string;
  totalRounds: number;
  currentRound: number;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  error: string | null;
}

export interface SiteMetricView {
  siteId: string;
  kind: string;
  loss: number;
  accuracy: number;
  samples: number | null;
}

export interface ModelView {
  /** 'weights' (readable global weights) or 'encrypted_aggregate' (only sites can decrypt it). */
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
  assignedSites: string[];
  reportedSites: string[];
  participants: number;
  model: ModelView | null;
  metrics: SiteMetricView[];
  /** Sites that said they could not contribute, and why. */
  failures: Array<{ siteId: string; reason: string; message: string }>;
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
  sites: Array<{ id: string; connected: boolean; dataset: DatasetSummaryView | null }>;
}

export interface SiteView {
  id: string;
  status: string;
  connected: boolean;
  registeredAt: string;
  lastSeenAt: string;
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
  ) {}

  async create(body: unknown): Promise<StudyStatus> {
    const parsed = studyDefinitionSchema.safeParse(body);
    if (!parsed.success) throw new StudyInputError(describeIssues(parsed.error));
    const def = parsed.data;
    if (def.aggregation === 'ckks' && !this.encrypted.available) throw new StudyInputError([`aggregation: ${NO_KIT}`]);
    const study = await this.db.prisma.study.create({
      data: {
        id: randomUUID(),
        name: def.name,
        status: 'draft',
        spec: def,
        specHash: studyHash(def),
        totalRounds: def.rounds,
      },
    });
    return this.status(study.id);
  }

  async start(id: string): Promise<StudyStatus> {
    await this.requireStudy(id);
    await this.rounds.startStudy(id);
    return this.status(id);
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
    const modelOf = (round: number): RoundView['model'] => {
      const m = models.find((x) => x.round === round);
      return m ? { kind: m.kind, sha256: m.sha256, sizeBytes: m.sizeBytes, parameterCount: m.parameterCount } : null;
    };
    const definition = studyDefinitionSchema.parse(study.spec);
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
        assignedSites: r.assignedSites,
        reportedSites: r.receipts.map((x) => x.siteId).sort(),
        participants: r.participants,
        model: r.status === 'closed' ? modelOf(r.number) : null,
        metrics: r.metrics
          .map((m) => ({ siteId: m.siteId, kind: m.kind, loss: m.loss, accuracy: m.accuracy, samples: m.samples }))
          .sort((a, b) => a.siteId.localeCompare(b.siteId) || a.kind.localeCompare(b.kind)),
        failures: r.failures
          .map((f) => ({ siteId: f.siteId, reason: f.reason, message: f.message }))
          .sort((a, b) => a.siteId.localeCompare(b.siteId)),
        evaluation: r.evaluations.length > 0 ? summariseEvaluation(r.evaluations) : null,
      })),
      sites: siteIds.map((siteId) => {
        const dataset = datasets.get(siteId);
        return { id: siteId, connected: this.sessions.isConnected(siteId), dataset: dataset?.studyId === id ? dataset : null };
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
    return {
      studyId: id,
      classNames: studyDefinitionSchema.parse(study.spec).classNames,
      rounds: rounds.map((r) => ({ number: r.number, ...summariseEvaluation(r.evaluations, { withCounts: true }) })),
    };
  }

  /**
   * The artifact published after `round` (0 = initial): float32 little-endian weights, or for an encrypted study
   * the CKKS-encrypted sum of the round's updates, which only key-holding sites can turn into weights.
   */
  async modelBlob(id: string, round: number): Promise<{ sha256: string; kind: string }> {
    await this.requireStudy(id);
    const model = await this.db.prisma.modelVersion.findUnique({ where: { studyId_round: { studyId: id, round } } });
    if (!model) throw new StudyNotFoundError(`study ${id} has no model for round ${round} (yet)`);
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
      dataset: datasets.get(s.id) ?? null,
    }));
  }

  private async requireStudy(id: string) {
    const study = await this.db.prisma.study.findUnique({ where: { id } });
    if (!study) throw new StudyNotFoundError(`study ${id} does not exist`);
    return study;
  }
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
    status: row.status,
    specHash: row.specHash,
    totalRounds: row.totalRounds,
    currentRound: row.currentRound,
    createdAt: row.createdAt.toISOString(),
    startedAt: row.startedAt?.toISOString() ?? null,
    finishedAt: row.finishedAt?.toISOString() ?? null,
    error: row.error,
  };
}
