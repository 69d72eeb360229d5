import { Inject, Injectable } from '@nestjs/common';
import {
  createLogger,
  datasetSummarySchema,
  describeIssues,
  studyDefinitionSchema,
  type DatasetSummary,
  type federation,
} from '@federa/shared';
import { DATABASE } from '../app/tokens.js';
import { FederationError, GrpcStatus } from '../federation/federation-error.js';
import type { Database } from '../persistence/index.js';

/** What operators and researchers see of a site's data. */
export interface DatasetSummaryView extends DatasetSummary {
  studyId: string;
  reportedAt: string;
}

/**
 * Checks a site's dataset summary: the study exists and the site takes part in it, class counts use the study's
 * classes, every other category is from its closed set, and the counts add up. Refusals name the field (as the
 * proto spells it) and a category's position, never the refused category name, which could be a file name.
 */
export function validateDatasetSummary(summary: federation.DatasetSummary, classNames: readonly string[]): DatasetSummary {
  const { studyId: _studyId, ...counts } = summary;
  const parsed = datasetSummarySchema.safeParse(counts);
  const issues = parsed.success ? [] : describeIssues(parsed.error);
  const classes = Object.keys(summary.byClass);
  classes.forEach((name, i) => {
    if (!classNames.includes(name)) issues.push(`byClass: category ${i + 1} of ${classes.length} is not one of the study's classes`);
  });
  if (!parsed.success || issues.length > 0) {
    throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `dataset summary refused: ${issues.map(protoFieldNames).join('; ')}`);
  }
  return parsed.data;
}

/** "byClass: ..." as the site's proto code spells the field: "by_class: ...". */
function protoFieldNames(issue: string): string {
  return issue.replace(/^[a-zA-Z.]+/, (path) => path.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`));
}

/** Each site's latest dataset summary: written by the federation service, read by the REST views. */
@Injectable()
export class DatasetSummaries {
  private readonly log = createLogger('dataset-summaries');

  constructor(@Inject(DATABASE) private readonly db: Database) {}

  async record(siteId: string, summary: federation.DatasetSummary): Promise<void> {
    const study = await this.db.prisma.study.findUnique({ where: { id: summary.studyId } });
    if (!study) throw new FederationError(GrpcStatus.NOT_FOUND, `study ${summary.studyId} does not exist`);
    const assigned = await this.db.prisma.round.count({ where: { studyId: study.id, assignedSites: { has: siteId } } });
    if (assigned === 0) {
      throw new FederationError(GrpcStatus.PERMISSION_DENIED, `site ${siteId} takes no part in study ${study.id}`);
    }
    const counts = validateDatasetSummary(summary, studyDefinitionSchema.parse(study.spec).classNames);
    const data = { studyId: study.id, reportedAt: new Date(), summary: { ...counts } };
    await this.db.prisma.siteDatasetSummary.upsert({ where: { siteId }, create: { siteId, ...data }, update: data });
    this.log.info({ siteId, studyId: study.id, files: counts.files, accepted: counts.accepted }, 'dataset summary received');
  }

  /** Latest summary per site id. */
  async latest(siteIds?: readonly string[]): Promise<Map<string, DatasetSummaryView>> {
    const rows = await this.db.prisma.siteDatasetSummary.findMany({ where: siteIds ? { siteId: { in: [...siteIds] } } : {} });
    return new Map(
      rows.map((row) => [
        row.siteId,
        { studyId: row.studyId, reportedAt: row.reportedAt.toISOString(), ...datasetSummarySchema.parse(row.summary) },
      ]),
    );
  }
}
