import { z } from 'zod';
import { apiSchema, type Expect, type SameShape } from '../openapi/index.js';
import type { HealthView } from './health.controller.js';

/** The health check's answer, for the API document; the check at the end holds it to HealthView. */
export const healthViewSchema = apiSchema(
  'Health',
  z.object({
    status: z.enum(['ok', 'failing']),
    database: z.string().describe("'ok', or what is wrong with the database."),
    blobStore: z.string().describe("'ok', or what is wrong with the blob store."),
  }),
);

/** Compile-time: the schema is exactly the shape the handler returns. */
export type HealthApiChecks = [Expect<SameShape<z.output<typeof healthViewSchema>, HealthView>>];
