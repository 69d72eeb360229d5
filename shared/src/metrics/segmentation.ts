import { z } from 'zod';

/**
 * What a site reports of a segmentation model on its held-out images: sums, never anything per image. Per class, the
 * pixels predicted and true (tp), predicted but not true (fp) and true but missed (fn), summed over the site's
 * images; and per foreground class a histogram of the images' Dice, so the spread is visible without any one image's
 * score leaving. Sums of sites' counts are the consortium's counts, from which Dice, IoU, sensitivity and precision
 * follow per site and overall.
 */
export const segmentationCountsSchema = z
  .object({
    classes: z.int().min(2).max(256),
    /** Dice histogram bins over [0, 1]. */
    bins: z.int().min(1).max(100),
    images: z.int().min(0),
    /** [classes] each: pixel counts. */
    tp: z.array(z.number().min(0)),
    fp: z.array(z.number().min(0)),
    fn: z.array(z.number().min(0)),
    /** [(classes − 1) x bins]: per foreground class, how many images' Dice fell in each bin. */
    diceHistogram: z.array(z.int().min(0)),
  })
  .strict()
  .superRefine((c, ctx) => {
    for (const key of ['tp', 'fp', 'fn'] as const) {
      if (c[key].length !== c.classes) ctx.addIssue({ code: 'custom', path: [key], message: `must hold ${c.classes} values (one per class), got ${c[key].length}` });
    }
    if (c.diceHistogram.length !== (c.classes - 1) * c.bins) {
      ctx.addIssue({ code: 'custom', path: ['diceHistogram'], message: `must hold ${(c.classes - 1) * c.bins} values ((classes - 1) x bins), got ${c.diceHistogram.length}` });
    }
  });

export type SegmentationCounts = z.output<typeof segmentationCountsSchema>;

export const DEFAULT_DICE_BINS = 10;

export function emptySegmentationCounts(classes: number, bins = DEFAULT_DICE_BINS): SegmentationCounts {
  return { classes, bins, images: 0, tp: new Array<number>(classes).fill(0), fp: new Array<number>(classes).fill(0), fn: new Array<number>(classes).fill(0), diceHistogram: new Array<number>((classes - 1) * bins).fill(0) };
}

/**
 * Counts for `probabilities` [images x height x width x classes] (softmax outputs; each pixel takes its arg-max class)
 * against `masks` [images x height x width], `pixelsPerImage` = height x width. An image where a class is neither
 * true nor predicted has Dice 1 for it.
 */
export function segmentationCounts(probabilities: ArrayLike<number>, masks: ArrayLike<number>, classes: number, pixelsPerImage: number, bins = DEFAULT_DICE_BINS): SegmentationCounts {
  if (!Number.isInteger(pixelsPerImage) || pixelsPerImage < 1 || masks.length % pixelsPerImage !== 0) {
    throw new RangeError(`masks hold ${masks.length} pixels, not a whole number of images of ${pixelsPerImage}`);
  }
  if (probabilities.length !== masks.length * classes) {
    throw new RangeError(`probabilities has ${probabilities.length} values, expected mask pixels (${masks.length}) x classes (${classes})`);
  }
  const out = emptySegmentationCounts(classes, bins);
  const images = masks.length / pixelsPerImage;
  const tp = new Array<number>(classes);
  const fp = new Array<number>(classes);
  const fn = new Array<number>(classes);
  for (let n = 0; n < images; n++) {
    tp.fill(0);
    fp.fill(0);
    fn.fill(0);
    for (let p = n * pixelsPerImage; p < (n + 1) * pixelsPerImage; p++) {
      const truth = masks[p] as number;
      if (!Number.isInteger(truth) || truth < 0 || truth >= classes) throw new RangeError(`mask pixel ${p} is ${truth}, not in [0, ${classes})`);
      let predicted = 0;
      for (let c = 1; c < classes; c++) if ((probabilities[p * classes + c] as number) > (probabilities[p * classes + predicted] as number)) predicted = c;
      if (predicted === truth) tp[truth]!++;
      else {
        fp[predicted]!++;
        fn[truth]!++;
      }
    }
    for (let c = 0; c < classes; c++) {
      out.tp[c]! += tp[c]!;
      out.fp[c]! += fp[c]!;
      out.fn[c]! += fn[c]!;
      if (c === 0) continue;
      const denominator = 2 * tp[c]! + fp[c]! + fn[c]!;
      const dice = denominator === 0 ? 1 : (2 * tp[c]!) / denominator;
      out.diceHistogram[(c - 1) * bins + Math.min(bins - 1, Math.floor(dice * bins))]! += 1;
    }
    out.images++;
  }
  return out;
}

/** Adds sites' counts (same classes and bins). */
export function mergeSegmentationCounts(a: SegmentationCounts, b: SegmentationCounts): SegmentationCounts {
  if (a.classes !== b.classes || a.bins !== b.bins) throw new RangeError(`cannot add segmentation counts of ${a.classes} classes / ${a.bins} bins and ${b.classes} / ${b.bins}`);
  const add = (x: number[], y: number[]): number[] => x.map((v, i) => v + (y[i] as number));
  return { classes: a.classes, bins: a.bins, images: a.images + b.images, tp: add(a.tp, b.tp), fp: add(a.fp, b.fp), fn: add(a.fn, b.fn), diceHistogram: add(a.diceHistogram, b.diceHistogram) };
}

export interface SegmentationClassMetrics {
  dice: number | null;
  iou: number | null;
  sensitivity: number | null;
  precision: number | null;
}

/**
 * Dice, IoU, sensitivity and precision of each foreground class from summed pixel counts (null where undefined: no
 * such pixel true nor predicted), and their mean over the foreground classes that have a value.
 */
export function segmentationMetricsFromCounts(counts: SegmentationCounts): { perClass: SegmentationClassMetrics[]; mean: SegmentationClassMetrics } {
  const ratio = (num: number, den: number): number | null => (den > 0 ? num / den : null);
  const perClass = counts.tp.slice(1).map((_, k) => {
    const c = k + 1;
    const tp = counts.tp[c] as number;
    const fp = counts.fp[c] as number;
    const fn = counts.fn[c] as number;
    return { dice: ratio(2 * tp, 2 * tp + fp + fn), iou: ratio(tp, tp + fp + fn), sensitivity: ratio(tp, tp + fn), precision: ratio(tp, tp + fp) };
  });
  const mean = (key: keyof SegmentationClassMetrics): number | null => {
    const values = perClass.map((m) => m[key]).filter((v): v is number => v !== null);
    return values.length > 0 ? values.reduce((a, v) => a + v, 0) / values.length : null;
  };
  return { perClass, mean: { dice: mean('dice'), iou: mean('iou'), sensitivity: mean('sensitivity'), precision: mean('precision') } };
}
