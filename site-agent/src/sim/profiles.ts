import type { LesionAppearance } from './phantom.js';
import { createRng } from './rng.js';
import type { SopClass, WriterTransferSyntax } from './writer.js';

/**
 * How one simulated hospital acquires and stores images. The differences are what makes federated data
 * non-IID in practice: scanner noise and contrast, matrix size, class prevalence, case mix (which presentations
 * of the disease a hospital sees), and storage conventions (rescale, signedness, MONOCHROME1, VR encoding) that
 * the site pipeline has to undo. Scanner contrast differs twofold across the base hospitals (0.65 to 1.35), as
 * protocols and scanner generations do: a model trained at one hospital learns how bright a lesion is on its own
 * scanner, and only data from several scanners teaches it to look at size and shape instead.
 */
export interface HospitalProfile {
  readonly id: string;
  /** Obviously fictional institution name written to (0008,0080). */
  readonly institutionName: string;
  readonly imageSize: number;
  /** Standard deviation of Gaussian noise in display units (the display range is 0..1). */
  readonly noiseSigma: number;
  /** Multiplies deviations from the tissue level (scanner/protocol contrast). */
  readonly contrast: number;
  /** Added to display intensity (calibration offset). */
  readonly brightness: number;
  /** Share of images in the lesion class. */
  readonly lesionFraction: number;
  /**
   * Case mix: how this hospital's lesions look. The base hospitals each see lesions of one size band (large,
   * middling, small; the fourth sees large ones through a low-contrast scanner), so no single hospital's data
   * covers every presentation the held-out set holds.
   */
  readonly lesionAppearance: LesionAppearance;
  readonly photometricInterpretation: 'MONOCHROME1' | 'MONOCHROME2';
  readonly modality: string;
  readonly sopClass: SopClass;
  readonly transferSyntax: WriterTransferSyntax;
  readonly bitsStored: number;
  readonly pixelRepresentation: 0 | 1;
  readonly rescaleSlope: number;
  readonly rescaleIntercept: number;
  /** Modality (rescaled) values displayed as black and white; written as the VOI window. */
  readonly valueRange: readonly [number, number];
}

/** Referral centres' case mix: large, hyperdense lesions. */
const LARGE_LESIONS: LesionAppearance = { radius: [3.4, 4.6], contrast: [0.28, 0.4] };

export const BASE_PROFILES: readonly HospitalProfile[] = [
  {
    id: 'hospital-a',
    institutionName: 'Simulated Hospital A (synthetic)',
    imageSize: 64,
    noiseSigma: 0.02,
    // A recent scanner with a high-contrast protocol.
    contrast: 1.35,
    brightness: 0,
    lesionFraction: 0.3,
    // A referral centre: lesions arrive large and hyperdense.
    lesionAppearance: LARGE_LESIONS,
    photometricInterpretation: 'MONOCHROME2',
    modality: 'CT',
    sopClass: 'ct',
    transferSyntax: 'explicit-vr-little-endian',
    bitsStored: 12,
    pixelRepresentation: 0,
    rescaleSlope: 1,
    rescaleIntercept: -1024,
    valueRange: [-1000, 1000],
  },
  {
    id: 'hospital-b',
    institutionName: 'Simulated Hospital B (synthetic)',
    imageSize: 72,
    noiseSigma: 0.035,
    contrast: 0.8,
    brightness: 0.04,
    lesionFraction: 0.5,
    // A general hospital: lesions of middling size.
    lesionAppearance: { radius: [2.8, 4.0], contrast: [0.3, 0.42] },
    photometricInterpretation: 'MONOCHROME1',
    modality: 'CR',
    sopClass: 'secondary-capture',
    transferSyntax: 'explicit-vr-little-endian',
    bitsStored: 12,
    pixelRepresentation: 0,
    rescaleSlope: 0.5,
    rescaleIntercept: 0,
    valueRange: [100, 1900],
  },
  {
    id: 'hospital-c',
    institutionName: 'Simulated Hospital C (synthetic)',
    imageSize: 80,
    noiseSigma: 0.05,
    contrast: 1.15,
    brightness: -0.03,
    lesionFraction: 0.7,
    // A screening programme: lesions caught early, small.
    lesionAppearance: { radius: [1.8, 2.6], contrast: [0.28, 0.4] },
    photometricInterpretation: 'MONOCHROME2',
    modality: 'MR',
    sopClass: 'mr',
    transferSyntax: 'implicit-vr-little-endian',
    bitsStored: 12,
    pixelRepresentation: 1,
    rescaleSlope: 2,
    rescaleIntercept: -500,
    valueRange: [-1500, 2500],
  },
  {
    id: 'hospital-d',
    institutionName: 'Simulated Hospital D (synthetic)',
    imageSize: 64,
    noiseSigma: 0.03,
    // An older scanner: half the contrast of hospital-a, so its lesions are as faint as hospital-a's vessels.
    contrast: 0.65,
    brightness: 0.02,
    lesionFraction: 0.5,
    // Another referral centre: large lesions, like hospital-a's, seen through a very different scanner.
    lesionAppearance: LARGE_LESIONS,
    photometricInterpretation: 'MONOCHROME2',
    modality: 'CT',
    sopClass: 'ct',
    transferSyntax: 'implicit-vr-little-endian',
    bitsStored: 12,
    pixelRepresentation: 1,
    rescaleSlope: 1,
    rescaleIntercept: -1024,
    valueRange: [-1000, 1000],
  },
];

export const MAX_SITES = 26;

/** hospital-a ... hospital-z. */
export function siteId(index: number): string {
  if (!Number.isInteger(index) || index < 0 || index >= MAX_SITES) throw new RangeError(`site index must be 0..${MAX_SITES - 1}, got ${index}`);
  return `hospital-${String.fromCharCode(97 + index)}`;
}

/**
 * Profiles for `count` sites: the four base hospitals first, then seeded variations of them so larger
 * consortia stay heterogeneous (sizes, noise, prevalence and polarity all vary; the case mix is the base's).
 */
export function hospitalProfiles(count: number, seed: number): HospitalProfile[] {
  const profiles: HospitalProfile[] = [];
  for (let i = 0; i < count; i++) {
    const base = BASE_PROFILES[i % BASE_PROFILES.length] as HospitalProfile;
    const id = siteId(i);
    if (i < BASE_PROFILES.length) {
      profiles.push(base);
      continue;
    }
    const rng = createRng(seed, 'profile', i);
    const letter = id.slice(-1).toUpperCase();
    profiles.push({
      ...base,
      id,
      institutionName: `Simulated Hospital ${letter} (synthetic)`,
      imageSize: [64, 72, 80][rng.int(3)] ?? 64,
      noiseSigma: Number((base.noiseSigma * rng.uniform(0.8, 1.3)).toFixed(4)),
      contrast: Number((base.contrast * rng.uniform(0.9, 1.1)).toFixed(3)),
      brightness: Number((base.brightness + rng.uniform(-0.03, 0.03)).toFixed(3)),
      lesionFraction: [0.3, 0.5, 0.7][rng.int(3)] ?? 0.5,
      photometricInterpretation: rng.next() < 0.3 ? 'MONOCHROME1' : 'MONOCHROME2',
    });
  }
  return profiles;
}
