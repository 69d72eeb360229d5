import { z } from 'zod';

/** Every refusal's body (HttpErrorFilter writes it; the API document names it `Error`). */
export const errorBodySchema = z
  .object({
    error: z.string().describe('What was wrong, in a sentence.'),
    issues: z.array(z.string()).optional().describe('One "field.path: message" per invalid field, when the input was at fault.'),
  })
  .strict();

export type ErrorBody = z.output<typeof errorBodySchema>;
