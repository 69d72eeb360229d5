import { linearParameters, type LinearArchitectureSpec, type LinearSvmSpec, type LogisticRegressionSpec } from './linear.js';
import { mobilenetParameters, type MobilenetSpec } from './mobilenet.js';
import { resnetParameters, type ResnetSpec } from './resnet.js';
import { smallCnnParameters, type SmallCnnSpec } from './small-cnn.js';
import { ARCHITECTURE_NAMES, parseModelSpec, type Architecture, type ModelSpec, type ResolvedModelSpec } from './spec.js';
import type { ParameterShape } from './types.js';
import { unetParameters, type UnetSpec } from './unet.js';

/**
 * What a model's output means. 'classification': one probability vector per image, [N, classes]. 'segmentation':
 * one per pixel, [N, inputSize, inputSize, classes] (class 0 the background). Training, evaluation, DP and export
 * code written for one must refuse the other rather than misread its output.
 */
export type ArchitectureTask = 'classification' | 'segmentation';

/**
 * How a model computes its output. 'network': a TensorFlow.js graph on the pixels, built by the site agent's
 * model.ts (DP taps, export and the PyTorch twin follow the same layer lists). 'linear': a linear model on
 * hand-crafted image features that the site extracts itself (site-agent train/linear); there is no TensorFlow.js
 * graph to build, export or tap, so code written for networks must refuse it.
 */
export type ArchitectureFamily = 'network' | 'linear';

/** What the shared package needs to know about an architecture; the TensorFlow builder lives in the site agent. */
export interface ArchitectureDefinition<S extends ResolvedModelSpec> {
  readonly task: ArchitectureTask;
  readonly family: ArchitectureFamily;
  /** Parameter tensors in flat-weight-vector order (see {@link WEIGHTS_LAYOUT_VERSION}). */
  parameters(spec: S): ParameterShape[];
}

type Registry = { [A in Architecture]: ArchitectureDefinition<Extract<ResolvedModelSpec, { architecture: A }>> };

const REGISTRY = {
  'small-cnn': { task: 'classification', family: 'network', parameters: (spec: SmallCnnSpec) => smallCnnParameters(spec) },
  resnet: { task: 'classification', family: 'network', parameters: (spec: ResnetSpec) => resnetParameters(spec) },
  mobilenet: { task: 'classification', family: 'network', parameters: (spec: MobilenetSpec) => mobilenetParameters(spec) },
  unet: { task: 'segmentation', family: 'network', parameters: (spec: UnetSpec) => unetParameters(spec) },
  'logistic-regression': { task: 'classification', family: 'linear', parameters: (spec: LogisticRegressionSpec) => linearParameters(spec) },
  'linear-svm': { task: 'classification', family: 'linear', parameters: (spec: LinearSvmSpec) => linearParameters(spec) },
} as const satisfies Registry;

/** The architectures whose output is [N, classes], narrowed at compile time from the registry's `task` fields. */
export type ClassificationArchitecture = { [A in Architecture]: (typeof REGISTRY)[A]['task'] extends 'classification' ? A : never }[Architecture];
/** A resolved spec of a classification architecture: what classifier-only code (losses, DP, export) may accept. */
export type ClassificationModelSpec = Extract<ResolvedModelSpec, { architecture: ClassificationArchitecture }>;

/** The architectures that are TensorFlow.js networks, narrowed at compile time from the registry's `family` fields. */
export type NetworkArchitecture = { [A in Architecture]: (typeof REGISTRY)[A]['family'] extends 'network' ? A : never }[Architecture];
/** The linear models on hand-crafted image features. */
export type LinearArchitecture = { [A in Architecture]: (typeof REGISTRY)[A]['family'] extends 'linear' ? A : never }[Architecture];
/** A resolved spec of a TensorFlow.js network: what builders, DP taps and export may accept. */
export type NetworkModelSpec = Extract<ResolvedModelSpec, { architecture: NetworkArchitecture }>;

/** The task an architecture serves; throws for a name that is not registered (it may come from configuration). */
export function architectureTask(architecture: Architecture): ArchitectureTask {
  if (!Object.hasOwn(REGISTRY, architecture)) throw new RangeError(`unknown architecture ${String(architecture)}`);
  return REGISTRY[architecture].task;
}

export function isClassificationArchitecture(architecture: Architecture): architecture is ClassificationArchitecture {
  return architectureTask(architecture) === 'classification';
}

/** How an architecture computes; throws for a name that is not registered. */
export function architectureFamily(architecture: Architecture): ArchitectureFamily {
  if (!Object.hasOwn(REGISTRY, architecture)) throw new RangeError(`unknown architecture ${String(architecture)}`);
  return REGISTRY[architecture].family;
}

export function isLinearArchitecture(architecture: Architecture): architecture is LinearArchitecture {
  return architectureFamily(architecture) === 'linear';
}

/** A resolved spec of a linear model on image features (what the site's train/linear accepts). */
export function isLinearModelSpec(spec: ResolvedModelSpec): spec is LinearArchitectureSpec {
  return isLinearArchitecture(spec.architecture);
}

/**
 * The classification architectures, in registration order: what benchmarks and classifier tests iterate. It includes
 * the linear models on image features; code that builds TensorFlow.js graphs also checks {@link architectureFamily}.
 */
export const CLASSIFICATION_ARCHITECTURES: readonly ClassificationArchitecture[] = (ARCHITECTURE_NAMES as readonly Architecture[]).filter(
  isClassificationArchitecture,
);

/** The per-example output shape of the model: [classes] for classification, [inputSize, inputSize, classes] else. */
export function modelOutputShape(spec: ModelSpec): number[] {
  const valid = parseModelSpec(spec);
  return architectureTask(valid.architecture) === 'classification' ? [valid.classes] : [valid.inputSize, valid.inputSize, valid.classes];
}

/**
 * Version of the flat weight layout: parameters are concatenated in the order returned by
 * {@link describeParameters}, each flattened row-major, as float32. Bump this whenever any existing architecture's
 * order, shapes, initialisation or option defaults change, because persisted and in-flight weight vectors would
 * otherwise be misread. Registering a new architecture changes nothing for existing specs and needs no bump
 * (layout-pins.test.ts holds the existing layouts to that).
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
