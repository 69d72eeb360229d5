import { z } from 'zod';
import { apiSchema, type Expect, type SameShape } from '../openapi/index.js';
import type { SiteActivity } from './site-activity.js';

/**
 * GET /sites/activity as a schema for the API document; the check at the end holds it to the service's interface,
 * so the two cannot drift apart.
 */
const time = z.string().meta({ format: 'date-time', description: 'ISO 8601, UTC.' });

const incidentSchema = z.object({
  studyId: z.string(),
  round: z.int(),
  task: z.string().nullable().describe('train or evaluate; null for a round failure.'),
  reason: z.string(),
  message: z.string(),
  at: time,
});

export const siteActivitySchema = apiSchema(
  'SiteActivity',
  z.object({
    studyId: z.string().nullable().describe('The study the figures are limited to; null for every study.'),
    sites: z.array(
      z.object({
        siteId: z.string(),
        roundsAssigned: z.int().describe('Rounds the site was assigned to.'),
        updates: z.int().describe('Accepted model updates.'),
        bytesSent: z.number().describe('Bytes of every accepted update together.'),
        lastUpdateAt: time.nullable(),
        roundSeconds: z
          .object({ mean: z.number(), median: z.number(), max: z.number(), last: z.number(), lastStudyId: z.string(), lastRound: z.int() })
          .nullable()
          .describe("Seconds from a round opening to the site's update arriving; null before any update."),
        refusals: z.object({ count: z.int(), last: incidentSchema.nullable() }),
        failures: z.object({ count: z.int(), last: incidentSchema.nullable() }),
      }),
    ),
  }),
);

/** Compile-time: the schema is exactly the shape the handler returns. */
export type SitesApiChecks = [Expect<SameShape<z.output<typeof siteActivitySchema>, SiteActivity>>];
