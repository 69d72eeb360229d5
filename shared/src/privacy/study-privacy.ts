import { z } from 'zod';
import { DEFAULT_RDP_ORDERS, noiseMultiplierForEpsilon, rdpToEpsilon, subsampledGaussianRdp } from './rdp-accountant.js';

/**
 * A study's differential privacy, part of its definition and so of the hash a hospital approves.
 *
 * - `sample`: DP-SGD at every site. Each image's gradient is clipped to `clipNorm`, Gaussian noise of standard
 *   deviation noiseMultiplier·clipNorm is added to each Poisson-sampled batch's sum. Protects each image (patient)
 *   of a site's data; each site accounts its own spend, from its own data size.
 * - `site`: each site clips its whole round update to L2 norm `clipNorm` and adds Gaussian noise of standard
 *   deviation noiseMultiplier·clipNorm/√minSites inside the encrypted sum, so a sum of at least minSites updates
 *   carries noise of standard deviation noiseMultiplier·clipNorm: it protects a site's whole dataset in the published
 *   model. Updates are averaged with equal weights (a sample-count weight would scale one site's influence).
 *
 * The noise is given as `noiseMultiplier`, or as `targetEpsilon`, from which the coordinator computes the noise
 * multiplier for the planned rounds when the study is created (for `sample`, at the smallest training set it
 * declares, `minSamplesPerSite`: smaller data spends more). Sites never take the coordinator's word for epsilon:
 * each computes what it spends from the noise multiplier, its own data and the rounds it trains.
 */
export const PRIVACY_MODES = ['none', 'sample', 'site'] as const;
export type PrivacyMode = (typeof PRIVACY_MODES)[number];

/** The default delta: well below one over any hospital's patient count. */
export const DEFAULT_DELTA = 1e-5;

/**
 * The largest standard deviation of one site's site-level noise per weight: an update's values must stay within the
 * encrypted sum's range (a weight may move by at most 1 in a round), and Gaussian noise on ~10^5 weights reaches
 * about 4.5 standard deviations.
 */
export const MAX_SITE_NOISE_STD = 0.2;

export const studyPrivacySchema = z
  .object({
    mode: z.enum(PRIVACY_MODES, { error: `must be one of ${PRIVACY_MODES.join(', ')}` }),
    /** L2 norm each example's gradient (sample) or each site's update (site) is clipped to. */
    clipNorm: z.number().positive().max(1_000).optional(),
    /** Noise standard deviation over clipNorm (on each batch's sum, or on the round's sum of updates). */
    noiseMultiplier: z.number().positive().max(1_000).optional(),
    /** Instead of noiseMultiplier: the epsilon the whole study should spend at delta; the coordinator resolves it. */
    targetEpsilon: z.number().positive().max(1_000).optional(),
    delta: z.number().gt(0).max(0.01).optional(),
    /** Sample mode with targetEpsilon: the smallest training set (images) the noise is calibrated for. */
    minSamplesPerSite: z.int().min(1).max(100_000_000).optional(),
  })
  .strict();

export type StudyPrivacy = z.output<typeof studyPrivacySchema>;

/** What privacy accounting needs of a study definition. */
export interface PrivacyPlan {
  privacy?: StudyPrivacy | undefined;
  rounds: number;
  batchSize: number;
  localEpochs?: number | undefined;
  localSteps?: number | undefined;
  minSites: number;
}

/** Problems with a study's privacy settings, each "privacy.field: message", for the definition's schema. */
export function studyPrivacyIssues(plan: PrivacyPlan): Array<{ path: string[]; message: string }> {
  const p = plan.privacy;
  if (!p) return [];
  const issues: Array<{ path: string[]; message: string }> = [];
  const issue = (field: string, message: string): void => {
    issues.push({ path: ['privacy', field], message });
  };
  if (p.mode === 'none') {
    for (const field of ['clipNorm', 'noiseMultiplier', 'targetEpsilon', 'delta', 'minSamplesPerSite'] as const) {
      if (p[field] !== undefined) issue(field, 'is only meaningful with privacy.mode sample or site');
    }
    return issues;
  }
  if (p.clipNorm === undefined) issue('clipNorm', `is required with privacy.mode ${p.mode}`);
  if (p.delta === undefined) issue('delta', `is required with privacy.mode ${p.mode} (${DEFAULT_DELTA} suits studies of up to tens of thousands of patients)`);
  if (p.noiseMultiplier === undefined && p.targetEpsilon === undefined) issue('noiseMultiplier', 'or privacy.targetEpsilon is required: how much noise to add');
  if (p.mode === 'sample' && p.targetEpsilon !== undefined && p.minSamplesPerSite === undefined) {
    issue('minSamplesPerSite', 'is required with privacy.targetEpsilon in sample mode: the noise is calibrated for the smallest site');
  }
  if (p.mode === 'site' && p.minSamplesPerSite !== undefined) issue('minSamplesPerSite', 'is only meaningful in sample mode');
  if (p.mode === 'site' && p.noiseMultiplier !== undefined && p.clipNorm !== undefined) {
    const std = siteNoiseStd(p.noiseMultiplier, p.clipNorm, plan.minSites);
    if (std > MAX_SITE_NOISE_STD) {
      issue(
        'clipNorm',
        `gives each site noise of standard deviation ${std.toPrecision(3)} per weight (noiseMultiplier·clipNorm/√minSites), more than the ${MAX_SITE_NOISE_STD} an encrypted update can carry; lower clipNorm or raise minSites`,
      );
    }
  }
  return issues;
}

/** One site's site-level noise standard deviation per weight. */
export function siteNoiseStd(noiseMultiplier: number, clipNorm: number, minSites: number): number {
  return (noiseMultiplier * clipNorm) / Math.sqrt(minSites);
}

/** The sampling rate and optimiser steps of one round at a site with `trainingImages` images. */
export function roundMechanism(plan: PrivacyPlan, trainingImages: number): { sampleRate: number; steps: number } {
  const p = plan.privacy;
  if (!p || p.mode === 'none') throw new RangeError('the study has no differential privacy');
  // Site-level: every round's aggregate is one Gaussian mechanism on the site's (clipped) update.
  if (p.mode === 'site') return { sampleRate: 1, steps: 1 };
  if (!Number.isInteger(trainingImages) || trainingImages < 1) throw new RangeError(`training images must be a positive integer, got ${trainingImages}`);
  const steps = plan.localSteps ?? (plan.localEpochs ?? 1) * Math.ceil(trainingImages / plan.batchSize);
  return { sampleRate: Math.min(1, plan.batchSize / trainingImages), steps };
}

/** The RDP curve (at DEFAULT_RDP_ORDERS) one round spends at a site with `trainingImages` images. */
export function roundRdp(plan: PrivacyPlan, trainingImages: number): number[] {
  const sigma = plan.privacy?.noiseMultiplier;
  if (sigma === undefined) throw new RangeError('the study states no privacy.noiseMultiplier; the coordinator resolves it from targetEpsilon when the study is created');
  const { sampleRate, steps } = roundMechanism(plan, trainingImages);
  return subsampledGaussianRdp(sampleRate, sigma, steps, DEFAULT_RDP_ORDERS);
}

/**
 * The definition's privacy with the noise multiplier filled in from targetEpsilon, for the planned rounds (sample:
 * at minSamplesPerSite images). Unchanged when it states a noise multiplier; then, with a target too, the noise
 * must reach it. Throws RangeError naming the field when the target cannot be met.
 */
export function resolveStudyPrivacy(plan: PrivacyPlan): StudyPrivacy | undefined {
  const p = plan.privacy;
  if (!p || p.mode === 'none' || p.targetEpsilon === undefined) return p;
  const delta = p.delta ?? DEFAULT_DELTA;
  const images = p.mode === 'sample' ? (p.minSamplesPerSite ?? 1) : 1;
  const { sampleRate, steps } = roundMechanism({ ...plan, privacy: { ...p, noiseMultiplier: 1 } }, images);
  const totalSteps = steps * plan.rounds;
  if (p.noiseMultiplier !== undefined) {
    const spent = rdpToEpsilon(DEFAULT_RDP_ORDERS, subsampledGaussianRdp(sampleRate, p.noiseMultiplier, totalSteps), delta).epsilon;
    if (spent > p.targetEpsilon * 1.0001) {
      throw new RangeError(`privacy.noiseMultiplier ${p.noiseMultiplier} spends epsilon ${spent.toPrecision(4)} over the planned rounds, more than privacy.targetEpsilon ${p.targetEpsilon}; leave noiseMultiplier out to have it computed`);
    }
    return p;
  }
  let sigma: number;
  try {
    sigma = noiseMultiplierForEpsilon({ targetEpsilon: p.targetEpsilon, delta, sampleRate, steps: totalSteps });
  } catch (error) {
    throw new RangeError(`privacy.targetEpsilon ${p.targetEpsilon} cannot be reached over ${plan.rounds} rounds: ${(error as Error).message}`);
  }
  // Rounded up to 4 significant figures: readable in the definition, and never less noise than computed.
  const unit = 10 ** (Math.floor(Math.log10(sigma)) - 3);
  return { ...p, noiseMultiplier: Number((Math.ceil(sigma / unit) * unit).toPrecision(4)) };
}

/** Epsilon at `delta` of the RDP a site has spent (a sum of roundRdp curves). */
export function spentEpsilon(rdp: readonly number[], delta: number): number {
  return rdpToEpsilon(DEFAULT_RDP_ORDERS, rdp, delta).epsilon;
}

/**
 * A study's differential privacy in one line, for people (the CLIs; the dashboard, which cannot load this package in
 * the browser, has its own in coordinator/web/src/format.ts).
 */
export function describeStudyPrivacy(p: StudyPrivacy | undefined): string {
  if (!p || p.mode === 'none') return 'none';
  const parts = [
    p.clipNorm !== undefined ? `clip norm ${p.clipNorm}` : null,
    p.noiseMultiplier !== undefined ? `noise multiplier ${Number(p.noiseMultiplier.toPrecision(4))}` : null,
    p.targetEpsilon !== undefined ? `target epsilon ${p.targetEpsilon}` : null,
    p.delta !== undefined ? `delta ${p.delta.toExponential()}` : null,
    p.minSamplesPerSite !== undefined ? `calibrated for ${p.minSamplesPerSite} images per site` : null,
  ].filter((part) => part !== null);
  return `${p.mode === 'sample' ? 'sample-level (DP-SGD, protects each image)' : 'site-level (protects each site\'s data)'}: ${parts.join(', ')}`;
}
