import { weightedUpdateVector } from './vector.js';

/**
 * Contribution slots: after its weight, every update carries one slot per member of the round's cohort (the sites
 * assigned to it, sorted), 1 in the sender's own slot and 0 elsewhere. Summed, the slots say which sites an
 * aggregate is made of and how many times each: a site decrypting a published aggregate checks that it is a sum of
 * at least its policy's minimum of distinct sites, each once, and that these are the sites the coordinator names,
 * so a coordinator cannot pass one hospital's update (or one update added twice) off as a consortium's sum.
 */
export function updateVectorLength(parameters: number, cohortSize: number): number {
  return parameters + 1 + cohortSize;
}

/**
 * A site's FedAvg weight: its training sample count, capped at 10,000. The encrypted sum's error bound assumes every
 * value within 1e4 (shared/src/ckks/PARAMETERS.md): an uncapped weight would keep a site with more images from
 * contributing at all. Above the cap a site counts as 10,000 images, which also limits how far one very large
 * site can pull the global model.
 */
export const MAX_SAMPLE_WEIGHT = 10_000;

export function sampleWeight(samples: number): number {
  return Math.min(samples, MAX_SAMPLE_WEIGHT);
}

/** The largest change of any weight in a round; the error bound assumes at most 1 (MAX_WEIGHT_CHANGE). */
export const MAX_WEIGHT_CHANGE = 1;

export function largestChange(base: Float32Array, trained: Float32Array): number {
  let largest = 0;
  for (let i = 0; i < base.length; i++) largest = Math.max(largest, Math.abs((trained[i] as number) - (base[i] as number)));
  return largest;
}

/** The update a site sends: weighted update, weight, then its one-hot contribution slots. */
export function contributionVector(
  base: Float32Array,
  trained: Float32Array,
  weight: number,
  cohort: readonly string[],
  siteId: string,
): Float32Array {
  const own = cohort.indexOf(siteId);
  if (own < 0) throw new RangeError(`site ${siteId} is not in the round's cohort [${cohort.join(', ')}]`);
  const weighted = weightedUpdateVector(base, trained, weight);
  const out = new Float32Array(weighted.length + cohort.length);
  out.set(weighted);
  out[weighted.length + own] = 1;
  return out;
}

/** Slots within this of 0 or 1 count as such; CKKS leaves errors near 1e-8, anything else is not a sum of one-hots. */
const SLOT_TOLERANCE = 0.01;

export interface Contributions {
  /** Sites whose slot is 1, in cohort order. */
  contributors: string[];
  /** What makes the slots no sum of distinct one-hots (a slot of 2, 0.5, ...); empty when they are. */
  problems: string[];
}

/** Reads the contribution slots of an aggregate (the last cohort.length values). */
export function readContributions(slots: ArrayLike<number>, cohort: readonly string[]): Contributions {
  if (slots.length !== cohort.length) {
    return { contributors: [], problems: [`${slots.length} contribution slots for a cohort of ${cohort.length}`] };
  }
  const contributors: string[] = [];
  const problems: string[] = [];
  for (let i = 0; i < cohort.length; i++) {
    const value = slots[i] as number;
    if (Math.abs(value - 1) <= SLOT_TOLERANCE) contributors.push(cohort[i] as string);
    else if (Math.abs(value) > SLOT_TOLERANCE) problems.push(`site ${cohort[i]}'s slot holds ${value.toFixed(3)}, not 0 or 1`);
  }
  return { contributors, problems };
}

/** Checks a plaintext update's slots: exactly the sender's own slot is 1. */
export function ownContributionProblem(slots: ArrayLike<number>, cohort: readonly string[], siteId: string): string | null {
  const { contributors, problems } = readContributions(slots, cohort);
  if (problems.length > 0) return problems.join('; ');
  if (contributors.length !== 1 || contributors[0] !== siteId) {
    return `contribution slots name [${contributors.join(', ')}], expected exactly the sender ${siteId}`;
  }
  return null;
}
