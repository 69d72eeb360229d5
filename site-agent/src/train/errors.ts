/** What training and evaluation throw, for the TensorFlow.js networks and the linear models on image features alike. */

/** The loss became NaN or infinite: the learning rate is too high for this data, or the input weights are bad. */
export class TrainingDivergedError extends Error {
  override readonly name = 'TrainingDivergedError';
  constructor(
    readonly epoch: number,
    readonly batch: number,
    readonly loss: number,
    reason = `loss is ${loss}`,
  ) {
    super(`training diverged at epoch ${epoch + 1}, batch ${batch + 1}: ${reason}; lower the learning rate`);
  }
}

/** The images or labels do not fit the model spec. */
export class TrainingDataError extends Error {
  override readonly name = 'TrainingDataError';
}
