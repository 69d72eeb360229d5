import { createLogger, federation, type Logger } from '@federa/shared';
import { CoordinatorRefusal } from '../client/index.js';
import type { SiteConfig } from '../config/index.js';
import { summariseLoadedDataset } from '../data/index.js';
import type { Outbound } from '../outbound/index.js';
import type { RoundState } from './round-state.js';
import type { PreparedData } from './site-data.js';

/**
 * What a site tells the coordinator about its rounds besides the updates: the counts of the data it loaded for a
 * study, and each round's training and validation figures, both through the outbound path (which applies the
 * policy's sharing rules).
 */
export class RoundReports {
  private readonly log: Logger;
  /** Studies this process has described its data to; once each, after the first load for the study. */
  private readonly summarised = new Set<string>();

  constructor(
    private readonly config: SiteConfig,
    private readonly outbound: Outbound,
  ) {
    this.log = createLogger('site-agent').child({ siteId: config.site.id });
  }

  /**
   * Tells the coordinator what data this site loaded for a study, as counts by category only, once per study and
   * process, when the policy shares counts. Informational: failing is logged, never fatal.
   */
  async datasetSummary(studyId: string, data: PreparedData): Promise<void> {
    if (this.summarised.has(studyId)) return;
    this.summarised.add(studyId);
    try {
      const summary = await summariseLoadedDataset(this.config.data.dir, data.contents);
      if (await this.outbound.reportDatasetSummary({ studyId, ...summary })) {
        this.log.info({ studyId, files: summary.files, accepted: summary.accepted }, 'dataset summary reported');
      }
    } catch (error) {
      if (error instanceof CoordinatorRefusal) {
        this.log.warn({ studyId, status: error.statusName, reason: error.message }, 'coordinator refused the dataset summary');
      } else {
        this.summarised.delete(studyId);
        this.log.warn({ studyId, reason: (error as Error).message }, 'could not report the dataset summary; will try again');
      }
    }
  }

  async metrics(state: RoundState): Promise<void> {
    const reports: federation.MetricsReport[] = [
      {
        studyId: state.studyId,
        round: state.round,
        kind: federation.MetricKind.METRIC_KIND_TRAIN,
        loss: state.trainLoss,
        accuracy: state.trainAccuracy,
        samples: state.samples,
        seconds: state.trainSeconds,
        backend: state.backend,
        ...(state.trainThreads !== undefined ? { threads: state.trainThreads } : {}),
        ...(state.privacy ? { privacyEpsilon: state.privacy.epsilonStudy, privacyDelta: state.privacy.delta } : {}),
      },
    ];
    if (state.validationLoss !== null && state.validationAccuracy !== null) {
      reports.push({
        studyId: state.studyId,
        round: state.round,
        kind: federation.MetricKind.METRIC_KIND_VALIDATION,
        loss: state.validationLoss,
        accuracy: state.validationAccuracy,
        samples: state.validationSamples,
        seconds: 0,
        backend: state.backend,
      });
    }
    for (const report of reports) await this.outbound.reportMetrics(report);
  }
}
