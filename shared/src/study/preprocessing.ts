import { z } from 'zod';
import { canonicalJson } from './canonical-json.js';

/**
 * CT windows in Hounsfield units, as listed in Radiopaedia's "Windowing (CT)" article. Bone is 400/1800 there;
 * some departments use 300/1500, which a study can still declare as an explicit { center, width }.
 */
export const WINDOW_PRESETS = {
  'ct-lung': { center: -600, width: 1500 },
  'ct-soft-tissue': { center: 40, width: 400 },
  'ct-bone': { center: 400, width: 1800 },
  'ct-brain': { center: 40, width: 80 },
  'ct-mediastinum': { center: 50, width: 350 },
} as const satisfies Record<string, { center: number; width: number }>;

export type WindowPresetName = keyof typeof WINDOW_PRESETS;
const PRESET_NAMES = Object.keys(WINDOW_PRESETS) as [WindowPresetName, ...WindowPresetName[]];

const WINDOW_HELP = `must be "file", "none", one of ${PRESET_NAMES.map((p) => `"${p}"`).join(', ')}, or { center, width }`;
const DENOISE_HELP = 'must be "none", { median: radius } or { gaussian: sigma }';
const NORMALISE_HELP = 'must be "unit", "min-max", "z-score", "histogram-equalisation" or { clahe: { tiles, maxSlope } }';

/** Explicit VOI window in modality units (HU for CT); width 1 is a threshold at the centre, as in DICOM. */
const explicitWindowSchema = z
  .object({
    center: z.number().min(-1e6).max(1e6),
    width: z.number().min(1, 'window width must be at least 1').max(1e6),
  })
  .strict();

/**
 * Unions report a bare "Invalid input" when no branch matches; routing strings and objects to their own schema
 * lets a bad field inside an object name itself, and a bad string get the list of allowed values.
 */
const windowSchema = z.union(
  [z.enum(['file', 'none', ...PRESET_NAMES], { error: WINDOW_HELP }), explicitWindowSchema],
  { error: WINDOW_HELP },
);

const denoiseSchema = z.union(
  [
    z.literal('none', { error: DENOISE_HELP }),
    // sharp's median takes an odd square size: radius r is a (2r+1) x (2r+1) window.
    z.object({ median: z.int().min(1, 'median radius must be 1-7 pixels').max(7, 'median radius must be 1-7 pixels') }).strict(),
    // sharp refuses sigmas below 0.3; beyond 10 pixels the image is no longer denoised but erased.
    z.object({ gaussian: z.number().min(0.3, 'gaussian sigma must be 0.3-10 pixels').max(10, 'gaussian sigma must be 0.3-10 pixels') }).strict(),
  ],
  { error: DENOISE_HELP },
);

const claheSchema = z
  .object({
    /** Regions per side of the image; each pixel is equalised over a window of about side / tiles pixels. */
    tiles: z.int().min(1, 'clahe.tiles must be 1-64').max(64, 'clahe.tiles must be 1-64').default(8),
    /** Contrast limit (histogram clip as a multiple of the uniform level); 0 disables limiting. */
    maxSlope: z.number().min(0, 'clahe.maxSlope must be 0-100').max(100, 'clahe.maxSlope must be 0-100').default(3),
  })
  .strict();

const normaliseSchema = z.union(
  [
    z.enum(['unit', 'min-max', 'z-score', 'histogram-equalisation'], { error: NORMALISE_HELP }),
    z.object({ clahe: claheSchema.prefault({}) }).strict(),
  ],
  { error: NORMALISE_HELP },
);

/**
 * How every site turns a decoded image into model input. It is part of the study definition, so it is covered
 * by the study hash the sites approve, and every site runs exactly this pipeline. The defaults reproduce the
 * behaviour from before the pipeline could be declared (file window, letterbox, values in [0, 1]).
 *
 * Order at the site: modality LUT -> window -> MONOCHROME1 inversion -> colour to the model's channels ->
 * central crop -> denoise (at acquisition resolution) -> resize -> contrast normalisation -> letterbox padding.
 */
export const preprocessingSchema = z
  .object({
    /**
     * 'letterbox': whole image, aspect kept, zero padding; 'stretch': whole image, aspect distorted;
     * 'center-crop': the central square of the shorter side, scaled to fill the input.
     */
    resize: z.enum(['letterbox', 'stretch', 'center-crop'], { error: 'must be "letterbox", "stretch" or "center-crop"' }).default('letterbox'),
    /** Share of each side kept around the centre before resizing, e.g. 0.9 trims burnt-in borders. */
    cropFraction: z.number().min(0.5, 'cropFraction must be 0.5-1').max(1, 'cropFraction must be 0.5-1').default(1),
    /**
     * Grey-level mapping of monochrome DICOM in modality units. 'file': the file's own window, min-max over the
     * frame when it has none; 'none': always min-max; a preset or { center, width }: that window, which only
     * monochrome DICOM (and, for the ct-* presets, only CT) can honour: other images are rejected, not guessed.
     */
    window: windowSchema.default('file'),
    denoise: denoiseSchema.default('none'),
    /**
     * After resizing, per channel and over the image (not its letterbox padding): 'unit' keeps [0, 1];
     * 'min-max' stretches to [0, 1]; 'z-score' gives mean 0, standard deviation 1; 'histogram-equalisation'
     * and CLAHE flatten the grey-level histogram globally or locally.
     */
    normalise: normaliseSchema.default('unit'),
  })
  .strict();

export type Preprocessing = z.output<typeof preprocessingSchema>;
export type PreprocessingInput = z.input<typeof preprocessingSchema>;
export type WindowSetting = Preprocessing['window'];

/** The pipeline an undeclared study runs: today's behaviour. */
export const DEFAULT_PREPROCESSING: Preprocessing = preprocessingSchema.parse({});

/** Centre and width of a preset or explicit window; undefined for 'file' and 'none'. */
export function windowValues(window: WindowSetting): { center: number; width: number } | undefined {
  if (typeof window === 'object') return window;
  if (window === 'file' || window === 'none') return undefined;
  return WINDOW_PRESETS[window];
}

/**
 * The pipeline as it travels to the sites: canonical JSON, so the text (and anything hashed from it) is the
 * same whichever party serialised it.
 */
export function preprocessingToJson(settings: Preprocessing): string {
  return canonicalJson(settings);
}

export class PreprocessingError extends Error {
  override readonly name = 'PreprocessingError';
}

/**
 * Reads the pipeline a site was sent. Empty text means the sender predates declared pipelines, whose only
 * behaviour was the default. Anything unparsable or with unknown fields throws: a site must not train on a
 * pipeline it only partly understands.
 */
export function parsePreprocessingJson(text: string): Preprocessing {
  if (text.trim() === '') return DEFAULT_PREPROCESSING;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new PreprocessingError(`preprocessing settings are not valid JSON: ${(error as Error).message}`);
  }
  const parsed = preprocessingSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.length > 0 ? i.path.map(String).join('.') : '(root)'}: ${i.message}`);
    throw new PreprocessingError(`preprocessing settings are invalid (this agent may be older than the study): ${issues.join('; ')}`);
  }
  return parsed.data;
}
