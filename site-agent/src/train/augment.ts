import type { Prng } from '@federa/shared';
import type { AugmentationOptions } from './types.js';

/**
 * Augments an NHWC batch in place: flips, rotation about the centre (nearest neighbour, zeros outside) and
 * intensity jitter v·(1+u) + s. Done in JS on the host buffer rather than with tf.image kernels so it needs no
 * extra wasm kernels and is bit-identical on every backend. Five PRNG draws per image, used or not, so that
 * changing one setting does not shift the random stream of the others.
 */
export function augmentBatch(
  pixels: Float32Array,
  count: number,
  height: number,
  width: number,
  channels: number,
  aug: AugmentationOptions,
  prng: Prng,
  /** Segmentation masks [count, height, width]: moved by the same flips and rotation (no intensity), 0 outside. */
  masks?: Uint8Array,
): void {
  const imageSize = height * width * channels;
  const source = new Float32Array(imageSize);
  const maskSize = height * width;
  const maskSource = masks ? new Uint8Array(maskSize) : undefined;
  const cy = (height - 1) / 2;
  const cx = (width - 1) / 2;
  for (let n = 0; n < count; n++) {
    const flipH = prng.nextFloat() < 0.5 && aug.flips;
    const flipV = prng.nextFloat() < 0.5 && aug.flips;
    const angle = ((prng.nextFloat() * 2 - 1) * aug.rotationDegrees * Math.PI) / 180;
    const scale = 1 + (prng.nextFloat() * 2 - 1) * aug.intensityJitter;
    const shift = (prng.nextFloat() * 2 - 1) * aug.intensityJitter;
    const base = n * imageSize;
    source.set(pixels.subarray(base, base + imageSize));
    if (masks && maskSource) maskSource.set(masks.subarray(n * maskSize, (n + 1) * maskSize));
    const cos = Math.cos(angle);
    const sin = Math.sin(angle);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        // Inverse-map the output pixel through the rotation, then through the flips.
        const dy = y - cy;
        const dx = x - cx;
        let sy = Math.round(cy + cos * dy - sin * dx);
        let sx = Math.round(cx + sin * dy + cos * dx);
        if (flipV) sy = height - 1 - sy;
        if (flipH) sx = width - 1 - sx;
        const inside = sy >= 0 && sy < height && sx >= 0 && sx < width;
        const out = base + (y * width + x) * channels;
        const from = (sy * width + sx) * channels;
        for (let c = 0; c < channels; c++) {
          pixels[out + c] = (inside ? source[from + c]! : 0) * scale + shift;
        }
        if (masks && maskSource) masks[n * maskSize + y * width + x] = inside ? maskSource[sy * width + sx]! : 0;
      }
    }
  }
}

/** Problems with augmentation options, as messages for the caller's RangeError. */
export function augmentationProblems(aug: AugmentationOptions): string[] {
  const problems: string[] = [];
  if (typeof aug.flips !== 'boolean') problems.push(`augmentation.flips must be a boolean, got ${String(aug.flips)}`);
  if (!Number.isFinite(aug.rotationDegrees) || aug.rotationDegrees < 0 || aug.rotationDegrees > 180) {
    problems.push(`augmentation.rotationDegrees must be in [0, 180], got ${aug.rotationDegrees}`);
  }
  if (!Number.isFinite(aug.intensityJitter) || aug.intensityJitter < 0 || aug.intensityJitter > 1) {
    problems.push(`augmentation.intensityJitter must be in [0, 1], got ${aug.intensityJitter}`);
  }
  return problems;
}
