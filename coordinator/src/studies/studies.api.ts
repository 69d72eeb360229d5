import { z } from 'zod';
import { datasetSummarySchema, evaluationCountsSchema, featureStatisticsViewSchema, studyDefinitionSchema } from '@federa/shared';
import { apiSchema, type Expect, type SameShape } from '../openapi/index.js';
import type { RoundEvaluationView } from '../rounds/evaluation.js';
import { REFUSAL_REASONS } from '../rounds/site-reports.js';
import type { DatasetSummaryView } from '../sites/dataset-summaries.js';
import type {
  RefusalView,
  RoundView,
  SiteView,
  StudiesService,
  StudyDefinitionView,
  StudyEvaluation,
  StudyStatus,
  StudySummary,
} from './studies.service.js';

/**
 * What the studies routes answer, as schemas for the API document. The service's interfaces stay the source of the
 * types; the checks at the end make any drift between the two a compile error.
 */
const time = z.string().meta({ format: 'date-time', description: 'ISO 8601, UTC.' });
const sha256 = z.string().meta({ description: 'Lower-case hex SHA-256.' });
const figure = z.number().nullable();

/** Path parameters every study route shares. */
export const STUDY_PARAMS = { id: 'The study id (as POST /studies answered it).' };

export const studyDefinitionApiSchema = apiSchema('StudyDefinition', studyDefinitionSchema);

export const refusalViewSchema = apiSchema(
  'Refusal',
  z.object({
    siteId: z.string(),
    round: z.int(),
    task: z.string().describe('train, evaluate or key-switch.'),
    reason: z.string().describe(`The site's reason code: ${Object.values(REFUSAL_REASONS).join(', ')}.`),
    message: z.string(),
    studyHash: sha256,
    reportedAt: time,
  }),
);

export const datasetSummaryViewSchema = apiSchema(
  'DatasetSummary',
  datasetSummarySchema.safeExtend({ studyId: z.string(), reportedAt: time }).describe('What a site loaded for a study: counts only.'),
);

const evaluationFigures = { accuracy: figure, balancedAccuracy: figure, sensitivity: figure, specificity: figure, f1: figure, auc: figure };
const segmentationFigures = { dice: figure, iou: figure, sensitivity: figure, precision: figure };

const segmentationEvaluationSchema = z
  .object({
    ...segmentationFigures,
    perClass: z.array(z.object({ className: z.string(), ...segmentationFigures })).nullable().describe('Per foreground class, from the pixel counts; null when only figures were shared.'),
    diceHistogram: z
      .object({ bins: z.int(), counts: z.array(z.array(z.int())) })
      .nullable()
      .describe('Per foreground class, held-out images per Dice bin over [0, 1].'),
  })
  .describe('A segmentation study\'s figures: mean over the foreground classes of Dice, IoU, sensitivity and precision from summed pixel counts.');

export const roundEvaluationSchema = apiSchema(
  'RoundEvaluation',
  z.object({
    requestedSites: z.array(z.string()),
    pendingSites: z.array(z.string()),
    refusedSites: z.array(z.object({ siteId: z.string(), reason: z.string() })),
    sites: z.array(
      z.object({
        ...evaluationFigures,
        siteId: z.string(),
        shared: z.enum(['counts', 'figures']).describe('What the site shared: its counts, or (under its policy) only the figures.'),
        samples: z.int().nullable(),
        confusion: z.array(z.array(z.int())).nullable().describe('confusion[t][p]: held-out images of true class t predicted as p.'),
        backend: z.string().nullable(),
        seconds: z.number().nullable(),
        reportedAt: time,
        counts: evaluationCountsSchema.optional().describe('The counts as reported, on GET /studies/{id}/evaluation.'),
        segmentation: segmentationEvaluationSchema.optional(),
      }),
    ),
    overall: z
      .object({
        ...evaluationFigures,
        sites: z.int(),
        method: z.enum(['pooled-counts', 'site-mean']),
        samples: z.int().nullable(),
        confusion: z.array(z.array(z.int())).nullable(),
        segmentation: segmentationEvaluationSchema.optional(),
      })
      .nullable(),
  }),
);

const modelViewSchema = apiSchema(
  'Model',
  z.object({
    kind: z.string().describe("'weights' (readable global weights), 'encrypted_aggregate' (single-key CKKS: only sites can decrypt it) or 'multiparty_aggregate' (only the round's key epoch members can decrypt it)."),
    sha256,
    sizeBytes: z.int(),
    parameterCount: z.int(),
  }),
);

export const roundViewSchema = apiSchema(
  'Round',
  z.object({
    number: z.int(),
    status: z.string(),
    openedAt: time,
    closedAt: time.nullable(),
    deadlineAt: time.nullable(),
    extensions: z.int(),
    assignedSites: z.array(z.string()),
    reportedSites: z.array(z.string()),
    participants: z.int(),
    baseStateSha256: sha256
      .nullable()
      .describe("SHA-256 of the global model (and server optimizer state) the round's updates were trained from, as the sites decrypted it; fixed by the first accepted update that names one, null until then."),
    model: modelViewSchema.nullable(),
    metrics: z.array(
      z.object({
        siteId: z.string(),
        kind: z.string(),
        loss: z.number(),
        accuracy: z.number(),
        samples: z.int().nullable(),
        privacyEpsilon: z
          .number()
          .nullable()
          .describe('Differential privacy the site has spent on the study up to and including this round (RDP accountant), at privacyDelta; null when the study has none or the site does not share it.'),
        privacyDelta: z.number().nullable(),
      }),
    ),
    failures: z.array(z.object({ siteId: z.string(), reason: z.string(), message: z.string() })),
    refusals: z.array(refusalViewSchema),
    evaluation: roundEvaluationSchema.nullable(),
  }),
);

export const studySummarySchema = apiSchema(
  'StudySummary',
  z.object({
    id: z.string(),
    name: z.string(),
    owner: z.string().nullable().describe('The researcher (token name) who created it.'),
    status: z.string().describe('draft, running, paused, completed, failed or cancelled.'),
    specHash: sha256,
    totalRounds: z.int(),
    currentRound: z.int(),
    createdAt: time,
    startedAt: time.nullable(),
    finishedAt: time.nullable(),
    error: z.string().nullable(),
    droppedSites: z.array(z.string()),
  }),
);

export const studyStatusSchema = apiSchema(
  'StudyStatus',
  studySummarySchema.extend({
    definition: studyDefinitionApiSchema,
    initialModel: modelViewSchema.nullable(),
    rounds: z.array(roundViewSchema),
    sites: z.array(z.object({ id: z.string(), connected: z.boolean(), dropped: z.boolean(), dataset: datasetSummaryViewSchema.nullable() })),
    refusals: z.array(refusalViewSchema),
    statistics: z
      .object({
        round: z.int(),
        sha256,
        features: z.array(featureStatisticsViewSchema),
        mismatchedSites: z.array(z.string()).describe('Sites whose decrypted totals differed from these (the first site\'s).'),
      })
      .nullable()
      .describe('A study with statistics: the consortium totals of its statistics round (count, mean, variance, bounds, histogram, quantiles per feature), as the sites decrypted them.'),
  }),
);

export const droppedSiteSchema = apiSchema(
  'StudyStatusAfterDrop',
  studyStatusSchema.extend({
    dropped: z.object({
      siteId: z.string(),
      round: z.int().nullable(),
      updateCounted: z.boolean().describe('Whether an update the site sent to the round in progress was already counted.'),
    }),
  }),
);

export const studyDefinitionViewSchema = apiSchema(
  'StudyDefinitionView',
  z.object({
    id: z.string(),
    name: z.string(),
    owner: z.string().nullable(),
    specHash: sha256,
    definition: studyDefinitionApiSchema,
    definitionJson: z.string().describe('Canonical JSON of the definition: its SHA-256 is specHash, the hash sites approve.'),
  }),
);

export const studyEvaluationSchema = apiSchema(
  'StudyEvaluation',
  z.object({ studyId: z.string(), classNames: z.array(z.string()), rounds: z.array(roundEvaluationSchema.extend({ number: z.int() })) }),
);

export const siteViewSchema = apiSchema(
  'Site',
  z.object({
    id: z.string(),
    status: z.string(),
    connected: z.boolean(),
    registeredAt: time,
    lastSeenAt: time,
    agentVersion: z.string().nullable(),
    backend: z.string().nullable(),
    policy: z.unknown().describe('What the site said its policy refuses, at its last registration.'),
    dataset: datasetSummaryViewSchema.nullable(),
  }),
);

export const studySummariesSchema = z.array(studySummarySchema);
export const siteViewsSchema = z.array(siteViewSchema);

/** Compile-time: each schema is exactly the shape its handler returns. */
export type StudiesApiChecks = [
  Expect<SameShape<z.output<typeof refusalViewSchema>, RefusalView>>,
  Expect<SameShape<z.output<typeof datasetSummaryViewSchema>, DatasetSummaryView>>,
  Expect<SameShape<z.output<typeof roundEvaluationSchema>, RoundEvaluationView>>,
  Expect<SameShape<z.output<typeof roundViewSchema>, RoundView>>,
  Expect<SameShape<z.output<typeof studySummarySchema>, StudySummary>>,
  Expect<SameShape<z.output<typeof studyStatusSchema>, StudyStatus>>,
  Expect<SameShape<z.output<typeof droppedSiteSchema>, Awaited<ReturnType<StudiesService['dropSite']>>>>,
  Expect<SameShape<z.output<typeof studyDefinitionViewSchema>, StudyDefinitionView>>,
  Expect<SameShape<z.output<typeof studyEvaluationSchema>, StudyEvaluation>>,
  Expect<SameShape<z.output<typeof siteViewSchema>, SiteView>>,
];
