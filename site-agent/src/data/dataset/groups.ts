import { createHash } from 'node:crypto';

/** What an image can be grouped by. Only imageKey is always known. */
export interface GroupKeys {
  /** Pseudonym of Patient ID (0010,0020): the header's patientKey. */
  readonly patientKey?: string | undefined;
  readonly studyInstanceUid?: string | undefined;
  /** Stands for the image alone (its SOP Instance UID, else its path) when it has neither of the above. */
  readonly imageKey: string;
}

/** 32 bits of SHA-256: a collision can only merge two groups, which never puts one patient on both sides. */
function hash32(text: string): number {
  return createHash('sha256').update(text, 'utf8').digest().readUInt32BE(0);
}

/** The key that names an image's group, and its tier: a patient outranks a study, which outranks the image. */
function namingKey(keys: GroupKeys): { tier: number; key: string } {
  if (keys.patientKey !== undefined) return { tier: 0, key: `patient\0${keys.patientKey}` };
  if (keys.studyInstanceUid !== undefined) return { tier: 1, key: `study\0${keys.studyInstanceUid}` };
  return { tier: 2, key: `image\0${keys.imageKey}` };
}

/**
 * A group id per image such that images of one patient share it: images are joined when they share a Patient ID
 * or a Study Instance UID (so an image without a Patient ID follows its study, and through it the study's patient),
 * and an image with neither stands alone. An id depends only on its group's keys, never on the order the images
 * came in, so the split made from it is the same on every run. The ids stay at the site like the keys they hash.
 */
export function assignGroups(keys: readonly GroupKeys[]): Uint32Array {
  const parent = Int32Array.from(keys, (_, i) => i);
  const find = (i: number): number => {
    let root = i;
    while (parent[root] !== root) root = parent[root] as number;
    // Path compression keeps repeated lookups near constant for sites with many images per patient.
    for (let at = i; parent[at] !== root; ) {
      const next = parent[at] as number;
      parent[at] = root;
      at = next;
    }
    return root;
  };
  const firstWith = new Map<string, number>();
  const join = (key: string, i: number): void => {
    const first = firstWith.get(key);
    if (first === undefined) firstWith.set(key, i);
    else parent[find(i)] = find(first);
  };
  keys.forEach((k, i) => {
    if (k.patientKey !== undefined) join(`patient\0${k.patientKey}`, i);
    if (k.studyInstanceUid !== undefined) join(`study\0${k.studyInstanceUid}`, i);
  });
  // A group is named by the smallest hash of its highest-tier keys: the same members give the same id whatever
  // their order, and a patient keeps its id when images without a Patient ID join it through a study.
  const nameOfRoot = new Map<number, { tier: number; id: number }>();
  keys.forEach((k, i) => {
    const root = find(i);
    const { tier, key } = namingKey(k);
    const current = nameOfRoot.get(root);
    if (current !== undefined && current.tier < tier) return;
    const id = hash32(key);
    if (current === undefined || current.tier > tier || id < current.id) nameOfRoot.set(root, { tier, id });
  });
  return Uint32Array.from(keys, (_, i) => (nameOfRoot.get(find(i)) as { id: number }).id);
}
