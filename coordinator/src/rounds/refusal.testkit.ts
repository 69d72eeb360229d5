import { FederationError } from '../federation/federation-error.js';

/** The FederationError `fn` throws; anything else (or nothing) fails the test. */
export function refusal(fn: () => unknown): FederationError {
  try {
    fn();
  } catch (error) {
    if (error instanceof FederationError) return error;
    throw error;
  }
  throw new Error('expected a refusal');
}
