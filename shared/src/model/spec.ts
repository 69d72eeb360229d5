import { z } from 'zod';
import { linearSvmSpecSchema, logisticRegressionSpecSchema } from './linear.js';
import { mobilenetSpecSchema } from './mobilenet.js';
import { resnetSpecSchema } from './resnet.js';
import { smallCnnSpecSchema } from './small-cnn.js';
import { unetSpecSchema } from './unet.js';

const SPEC_SCHEMAS = [smallCnnSpecSchema, resnetSpecSchema, mobilenetSpecSchema, unetSpecSchema, logisticRegressionSpecSchema, linearSvmSpecSchema] as const;

/**
 * Every architecture name the schema accepts, in registration order, whatever task it serves: code that trains or
 * evaluates classifiers iterates CLASSIFICATION_ARCHITECTURES (registry.ts) instead.
 */
export const ARCHITECTURE_NAMES: readonly string[] = SPEC_SCHEMAS.map((schema) => schema.shape.architecture.value);

/**
 * Model definitions, discriminated by `architecture`. A new architecture adds its own strict object schema to
 * SPEC_SCHEMAS (it may carry extra fields, e.g. a depth) and an entry, with its task, in the registry in `registry.ts`; the
 * TypeScript `Record` over {@link Architecture} there and in the site agent's builder then refuses to compile until
 * both exist.
 */
export const modelSpecSchema = z.discriminatedUnion('architecture', SPEC_SCHEMAS, {
  error: (issue) =>
    issue.code === 'invalid_union' ? `architecture must be one of: ${ARCHITECTURE_NAMES.join(', ')}` : undefined,
});

/**
 * A model definition as written in a study or passed by a caller: architecture options that have defaults (e.g. a
 * resnet's `width`) may be left out.
 */
export type ModelSpec = z.input<typeof modelSpecSchema>;
/**
 * A validated model definition with every default filled in, as {@link parseModelSpec} returns it. Builders and
 * hashes work from this form, so leaving an option out and spelling out its default describe the same model.
 */
export type ResolvedModelSpec = z.output<typeof modelSpecSchema>;
export type Architecture = ModelSpec['architecture'];

export class InvalidModelSpecError extends Error {
  override readonly name = 'InvalidModelSpecError';
}

/** Validates untrusted input (config files, RPC payloads); the message names every offending field. */
export function parseModelSpec(input: unknown): ResolvedModelSpec {
  const result = modelSpecSchema.safeParse(input);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const field = issue.path.map(String).join('.');
    return field === '' ? issue.message : `${field}: ${issue.message}`;
  });
  throw new InvalidModelSpecError(`invalid model spec: ${problems.join('; ')}`);
}
