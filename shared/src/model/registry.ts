import { mobilenetParameters, type MobilenetSpec } from './mobilenet.js';
import { resnetParameters, type ResnetSpec } from './resnet.js';
import { smallCnnParameters, type SmallCnnSpec } from './small-cnn.js';
import { parseModelSpec, type Architecture, type ModelSpec, type ResolvedModelSpec } from './spec.js';
import type { ParameterShape } from './types.js';

/** What the shared package needs to know about an architecture; the TensorFlow builder lives in the site agent. */
export interface ArchitectureDefinition<S extends ResolvedModelSpec> {
  /** Parameter tensors in flat-weight-vector order (see {@link WEIGHTS_LAYOUT_VERSION}). */
  parameters(spec: S): ParameterShape[];
}

type Registry = { [A in Architecture]: ArchitectureDefinition<Extract<ResolvedModelSpec, { architecture: A }>> };

const REGISTRY: Registry = {
  'small-cnn': { parameters: (spec: SmallCnnSpec) => smallCnnParameters(spec) },
  resnet: { parameters: (spec: ResnetSpec) => resnetParameters(spec) },
  mobilenet: { parameters: (spec: MobilenetSpec) => mobilenetParameters(spec) },
};

/**
 * Version of the flat weight layout: parameters are concatenated in the order returned by
 * {@link describeParameters}, each flattened row-major, as float32. Bump this whenever any existing architecture's
 * order, shapes, initialisation or option defaults change, because persisted and in-flight weight vectors would
 * otherwise be misread. Registering a new architecture changes nothing for existing specs and needs no bump.
 */
export const WEIGHTS_LAYOUT_VERSION = 1;

/** Ordered parameter tensors of the model; validates the spec first, since it often comes from configuration. */
export function describeParameters(spec: ModelSpec): ParameterShape[] {
  const valid = parseModelSpec(spec);
  return architectureOf(valid).parameters(valid);
}

/** Total number of scalars in the flat weight vector. */
export function parameterCount(spec: ModelSpec): number {
  return describeParameters(spec).reduce((sum, p) => sum + elementCount(p.shape), 0);
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((product, dim) => product * dim, 1);
}

function architectureOf<S extends ResolvedModelSpec>(spec: S): ArchitectureDefinition<S> {
  // The mapped Registry type guarantees the entry matches the spec's own architecture.
  return REGISTRY[spec.architecture] as ArchitectureDefinition<S>;
}
