import { describe, expect, it } from 'vitest';
import { contributionTag, contributionTagKey, tagProblems, taggedLength, tagVector, untagVector } from './tags.js';

describe('contribution tags', () => {
  const key = contributionTagKey(new Uint8Array([1, 2, 3]));
  const scope = { studyId: 's', round: 3 };

  it('lays an update out in whole ciphertexts, each ending with two tags, and gets it back', () => {
    expect(taggedLength(1, 8)).toBe(8);
    expect(taggedLength(6, 8)).toBe(8);
    expect(taggedLength(7, 8)).toBe(16);
    const payload = Float64Array.from({ length: 13 }, (_, i) => i + 1);
    const tagged = tagVector(payload, 8, key, scope, 'site-a');
    expect(tagged).toHaveLength(24);
    expect(Array.from(tagged.subarray(0, 6))).toEqual([1, 2, 3, 4, 5, 6]);
    expect(tagged[6]).toBe(contributionTag(key, scope, 'site-a', 0, 0));
    expect(tagged[15]).toBe(contributionTag(key, scope, 'site-a', 1, 1));
    expect(Array.from(tagged.subarray(16, 17))).toEqual([13]);
    expect(Array.from(untagVector(tagged, 13, 8))).toEqual(Array.from(payload));
  });

  it('makes tags only the key can make, different per site, round, ciphertext and slot', () => {
    const tags = new Set([
      contributionTag(key, scope, 'site-a', 0, 0),
      contributionTag(key, scope, 'site-b', 0, 0),
      contributionTag(key, { ...scope, round: 4 }, 'site-a', 0, 0),
      contributionTag(key, scope, 'site-a', 1, 0),
      contributionTag(key, scope, 'site-a', 0, 1),
      contributionTag(contributionTagKey(new Uint8Array([9])), scope, 'site-a', 0, 0),
    ]);
    expect(tags.size).toBe(6);
    for (const tag of tags) expect(tag >= -1 && tag < 1).toBe(true);
  });

  it('accepts a sum of the named sites only', () => {
    const payload = new Float64Array(10).fill(0.25);
    const a = tagVector(payload, 8, key, scope, 'site-a');
    const b = tagVector(payload, 8, key, scope, 'site-b');
    const sum = a.map((v, i) => v + (b[i] as number));
    expect(tagProblems(sum, 8, key, scope, ['site-a', 'site-b'])).toEqual([]);
    expect(tagProblems(sum, 8, key, scope, ['site-a', 'site-b', 'site-c'])[0]).toMatch(/ciphertext 0 is not the sum of \[site-a, site-b, site-c\]/);
    expect(tagProblems(a, 8, key, scope, ['site-a', 'site-b'])).toHaveLength(2);
    expect(tagProblems(sum.subarray(0, 12), 8, key, scope, ['site-a', 'site-b'])[0]).toMatch(/not whole ciphertexts/);
  });
});
