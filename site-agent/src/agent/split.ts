import type { GroupedImages, LabeledImages } from '../data/dataset/load.js';

interface Group {
  readonly id: number;
  readonly indices: number[];
  /** The group's most frequent label (the lowest on a tie): the stratum it is drawn from. */
  readonly label: number;
  /** Position in the seeded shuffle; from the id and seed alone, so the input order cannot change it. */
  readonly rank: number;
}

/** murmur3's 32-bit finaliser: a bijection that spreads every input bit over the output. */
function mix32(value: number): number {
  let x = value >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

function groupsOf(data: GroupedImages, seed: number): Group[] {
  const members = new Map<number, number[]>();
  for (let i = 0; i < data.count; i++) {
    const id = data.groups[i] as number;
    const list = members.get(id);
    if (list) list.push(i);
    else members.set(id, [i]);
  }
  const salt = mix32(seed ^ 0x5eed5eed);
  return [...members].map(([id, indices]) => {
    const counts = new Map<number, number>();
    for (const i of indices) counts.set(data.labels[i] as number, (counts.get(data.labels[i] as number) ?? 0) + 1);
    let label = Infinity;
    let most = 0;
    for (const [l, n] of counts) if (n > most || (n === most && l < label)) [label, most] = [l, n];
    return { id, indices, label, rank: mix32(id ^ salt) };
  });
}

/**
 * Splits a site's images into training and validation sets, the same way every round (seeded by the study), so
 * validation images are never trained on. Whole patient groups (`data.groups`, see assignGroups) go to one side:
 * a patient's other images in training would make the held-out figures look better than they are.
 *
 * Stratified so a small site still validates on every class it has: groups are stratified by their majority
 * label and, in the seeded order, each group joins validation while that brings the stratum's held-out image
 * count closer to round(images x fraction). When every group of a stratum is too large for that, its smallest
 * group is held out anyway, provided the stratum keeps at least as many images for training. With one image per
 * group this holds out exactly round(images x fraction) per label, as the split by image did.
 */
export function splitTrainValidation(
  data: GroupedImages,
  validationFraction: number,
  seed: number,
): { train: GroupedImages; validation: GroupedImages } {
  if (data.groups.length !== data.count) throw new RangeError(`groups has ${data.groups.length} entries for ${data.count} images`);
  const strata = new Map<number, Group[]>();
  for (const group of groupsOf(data, seed)) {
    const stratum = strata.get(group.label);
    if (stratum) stratum.push(group);
    else strata.set(group.label, [group]);
  }
  const train: number[] = [];
  const validation: number[] = [];
  for (const groups of strata.values()) {
    // mix32 is a bijection, so distinct ids never tie on rank.
    groups.sort((a, b) => a.rank - b.rank);
    const images = groups.reduce((n, g) => n + g.indices.length, 0);
    const target = Math.round(images * validationFraction);
    const held = new Set<Group>();
    let heldImages = 0;
    for (const group of groups) {
      // Joining moves the count closer to the target exactly when the group is smaller than twice what is missing.
      if (group.indices.length < 2 * (target - heldImages)) {
        held.add(group);
        heldImages += group.indices.length;
      }
    }
    if (target > 0 && held.size === 0) {
      const smallest = groups.reduce((best, g) => (g.indices.length < best.indices.length ? g : best));
      if (2 * smallest.indices.length <= images) held.add(smallest);
    }
    for (const group of groups) (held.has(group) ? validation : train).push(...group.indices);
  }
  return { train: selectImages(data, train.sort((a, b) => a - b)), validation: selectImages(data, validation.sort((a, b) => a - b)) };
}

/** The given images, in the given order, with their labels, groups and (segmentation data) masks. */
export function selectImages(data: GroupedImages, indices: number[]): GroupedImages;
export function selectImages(data: LabeledImages, indices: number[]): LabeledImages;
export function selectImages(data: LabeledImages, indices: number[]): LabeledImages {
  const size = data.height * data.width * data.channels;
  const images = new Float32Array(indices.length * size);
  const labels = new Int32Array(indices.length);
  indices.forEach((source, target) => {
    images.set(data.images.subarray(source * size, (source + 1) * size), target * size);
    labels[target] = data.labels[source] as number;
  });
  const picked: LabeledImages = { images, labels, count: indices.length, height: data.height, width: data.width, channels: data.channels };
  const { groups, masks } = data;
  if (groups !== undefined) picked.groups = Uint32Array.from(indices, (i) => groups[i] as number);
  if (masks !== undefined) {
    const pixels = data.height * data.width;
    const out = new Uint8Array(indices.length * pixels);
    indices.forEach((source, target) => out.set(masks.subarray(source * pixels, (source + 1) * pixels), target * pixels));
    picked.masks = out;
  }
  return picked;
}
