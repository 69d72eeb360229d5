import { z } from 'zod';
import { apiSchema, type Expect, type SameShape } from '../openapi/index.js';
import type { LivenessView, ReadinessView } from './health.controller.js';

/** The liveness answer, for the API document; the check at the end holds it to LivenessView. */
export const livenessViewSchema = apiSchema(
  'Liveness',
  z.object({
    status: z.literal('ok'),
    uptimeSeconds: z.number().describe('Seconds since this coordinator process started.'),
  }),
);

/** The readiness answer, for the API document; the check at the end holds it to ReadinessView. */
export const readinessViewSchema = apiSchema(
  'Readiness',
  z.object({
    status: z.enum(['ok', 'failing']),
    database: z.string().describe("'ok', or what is wrong with the database."),
    blobStore: z.string().describe("'ok', or what is wrong with the blob store."),
  }),
);

/** Compile-time: the schemas are exactly the shapes the handlers return. */
export type HealthApiChecks = [
  Expect<SameShape<z.output<typeof livenessViewSchema>, LivenessView>>,
  Expect<SameShape<z.output<typeof readinessViewSchema>, ReadinessView>>,
];
