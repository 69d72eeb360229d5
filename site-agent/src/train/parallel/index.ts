import { TrainingThreads } from './pool.js';

export { TrainingThreadError } from './pool.js';

/** Stops the training threads this process started (they are kept between trainings); a later training starts them again. */
export function closeTrainingThreads(): Promise<void> {
  return TrainingThreads.closeAll();
}
