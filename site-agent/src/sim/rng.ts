/**
 * Small deterministic PRNG (sfc32) seeded by hashing a list of keys, so every synthetic image can be
 * regenerated on its own from (seed, site, index) regardless of generation order or concurrency.
 */
export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  uniform(min: number, max: number): number;
  /** Integer in [0, n). */
  int(n: number): number;
  /** Standard normal (Box-Muller). */
  normal(): number;
  /** 32 random bits as an unsigned integer. */
  uint32(): number;
}

/** cyrb128-style string hash to four 32-bit seed words. */
function hashKeys(keys: readonly (string | number)[]): [number, number, number, number] {
  const text = keys.map(String).join('\u0000');
  let h1 = 1779033703;
  let h2 = 3144134277;
  let h3 = 1013904242;
  let h4 = 2773480762;
  for (let i = 0; i < text.length; i++) {
    const k = text.charCodeAt(i);
    h1 = h2 ^ Math.imul(h1 ^ k, 597399067);
    h2 = h3 ^ Math.imul(h2 ^ k, 2869860233);
    h3 = h4 ^ Math.imul(h3 ^ k, 951274213);
    h4 = h1 ^ Math.imul(h4 ^ k, 2716044179);
  }
  h1 = Math.imul(h3 ^ (h1 >>> 18), 597399067);
  h2 = Math.imul(h4 ^ (h2 >>> 22), 2869860233);
  h3 = Math.imul(h1 ^ (h3 >>> 17), 951274213);
  h4 = Math.imul(h2 ^ (h4 >>> 19), 2716044179);
  return [(h1 ^ h2 ^ h3 ^ h4) >>> 0, (h2 ^ h1) >>> 0, (h3 ^ h1) >>> 0, (h4 ^ h1) >>> 0];
}

export function createRng(...keys: (string | number)[]): Rng {
  let [a, b, c, d] = hashKeys(keys);
  const uint32 = (): number => {
    a >>>= 0;
    b >>>= 0;
    c >>>= 0;
    d >>>= 0;
    let t = (a + b) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    d = (d + 1) | 0;
    t = (t + d) | 0;
    c = (c + t) | 0;
    return t >>> 0;
  };
  // Warm-up: the first outputs of sfc32 are correlated with the seed words.
  for (let i = 0; i < 12; i++) uint32();
  let spare: number | undefined;
  const next = (): number => uint32() / 4294967296;
  return {
    next,
    uint32,
    uniform: (min, max) => min + (max - min) * next(),
    int: (n) => Math.floor(next() * n),
    normal: () => {
      if (spare !== undefined) {
        const value = spare;
        spare = undefined;
        return value;
      }
      let u = 0;
      while (u === 0) u = next();
      const v = next();
      const radius = Math.sqrt(-2 * Math.log(u));
      spare = radius * Math.sin(2 * Math.PI * v);
      return radius * Math.cos(2 * Math.PI * v);
    },
  };
}

/** Fisher-Yates shuffle in place. */
export function shuffle<T>(items: T[], rng: Rng): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const tmp = items[i] as T;
    items[i] = items[j] as T;
    items[j] = tmp;
  }
  return items;
}

/**
 * A UID under the 2.25 root (UUID-derived, PS3.5 B.2), which needs no registered org root and so cannot
 * collide with real hospital UIDs; derived from the keys so reruns with the same seed give the same UIDs.
 */
export function syntheticUid(...keys: (string | number)[]): string {
  const rng = createRng('uid', ...keys);
  let value = 0n;
  for (let i = 0; i < 4; i++) value = (value << 32n) | BigInt(rng.uint32());
  // Mark it as a version-4-style UUID value so tools that decode 2.25 UIDs see a well-formed UUID.
  value = (value & ~(0xfn << 76n)) | (0x4n << 76n);
  value = (value & ~(0x3n << 62n)) | (0x2n << 62n);
  return `2.25.${value.toString(10)}`;
}
