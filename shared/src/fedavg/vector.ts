/**
 * The update vector every site sends: (trained - base) * weight for each parameter, then the weight itself
 * in the last slot. Summing these vectors across sites gives both FedAvg's numerator and denominator, so
 * the same sum works whether the vectors travel in the clear or inside CKKS ciphertexts (where the
 * coordinator must not learn the weights).
 */
export function weightedUpdateVector(base: Float32Array, trained: Float32Array, weight: number): Float32Array {
  if (base.length !== trained.length) {
    throw new RangeError(`trained weights have ${trained.length} values but the base model has ${base.length}`);
  }
  if (!Number.isFinite(weight) || weight <= 0) {
    throw new RangeError(`update weight must be a positive finite number, got ${weight}`);
  }
  const out = new Float32Array(base.length + 1);
  for (let i = 0; i < base.length; i++) {
    out[i] = ((trained[i] as number) - (base[i] as number)) * weight;
  }
  out[base.length] = weight;
  return out;
}

/**
 * Running sum of update vectors in float64, so adding many sites does not accumulate float32 rounding.
 * Memory is one vector, whatever the number of sites.
 */
export class UpdateAccumulator {
  readonly sum: Float64Array;
  private added = 0;

  /** `weightIndex`: where the weight slot is (the parameter count; contribution slots may follow it). */
  constructor(
    readonly vectorLength: number,
    readonly weightIndex = vectorLength - 1,
  ) {
    if (!Number.isInteger(vectorLength) || vectorLength < 2) {
      throw new RangeError(`update vector length must be an integer >= 2, got ${vectorLength}`);
    }
    if (!Number.isInteger(weightIndex) || weightIndex < 1 || weightIndex >= vectorLength) {
      throw new RangeError(`weight slot ${weightIndex} is outside a vector of ${vectorLength} values`);
    }
    this.sum = new Float64Array(vectorLength);
  }

  add(vector: Float32Array): void {
    if (vector.length !== this.vectorLength) {
      throw new RangeError(`update vector has ${vector.length} values, expected ${this.vectorLength}`);
    }
    const weight = vector[this.weightIndex] as number;
    if (!Number.isFinite(weight) || weight <= 0) {
      throw new RangeError(`update vector's weight slot must be positive, got ${weight}`);
    }
    for (let i = 0; i < vector.length; i++) {
      const v = vector[i] as number;
      if (!Number.isFinite(v)) throw new RangeError(`update vector value ${i} is not finite`);
      this.sum[i] = (this.sum[i] as number) + v;
    }
    this.added++;
  }

  get count(): number {
    return this.added;
  }
}

/**
 * FedAvg: the new global weights are base + (sum of weighted updates) / (sum of weights). `contributionSlots` is
 * the number of slots after the weight (one per cohort member, see contributions.ts).
 */
export function applyAggregate(base: Float32Array, sum: Float64Array, contributionSlots = 0): Float32Array {
  if (sum.length !== base.length + 1 + contributionSlots) {
    throw new RangeError(
      `aggregate has ${sum.length} values, expected ${base.length + 1 + contributionSlots} (parameters + weight + ${contributionSlots} contribution slots)`,
    );
  }
  const totalWeight = sum[base.length] as number;
  if (!(totalWeight > 0)) throw new RangeError(`aggregate weight must be positive, got ${totalWeight}`);
  const out = new Float32Array(base.length);
  for (let i = 0; i < base.length; i++) {
    out[i] = (base[i] as number) + (sum[i] as number) / totalWeight;
  }
  return out;
}
