export { ClippedSliceGradients } from './per-example-gradients.js';
export { tappedForward, type Tap, type TappedLayer, type WeightsByName } from './tapped-forward.js';
export { dpSgdProblems, poissonCapacity, poissonSample, privatizeGradient, type DpSgdSettings } from './dp-sgd.js';
