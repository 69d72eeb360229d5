import { describe, expect, it } from 'vitest';
import { studyDefinitionSchema, studyHash } from '../study/definition.js';
import { exampleStudy, schemaIssues } from '../study/study.testkit.js';
import { epsilonSpent } from './rdp-accountant.js';
import { resolveStudyPrivacy, roundMechanism, roundRdp, siteNoiseStd, spentEpsilon } from './study-privacy.js';

const withPrivacy = (privacy: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({ ...exampleStudy, ...extra, privacy });

describe('a study\'s privacy settings', () => {
  it('are optional, and a study without them hashes as before', () => {
    const def = studyDefinitionSchema.parse(exampleStudy);
    expect(def.privacy).toBeUndefined();
    expect(studyHash(def)).toBe(studyHash(studyDefinitionSchema.parse({ ...exampleStudy })));
    expect(JSON.stringify(def)).not.toContain('privacy');
  });

  it('take sample or site DP with a clip norm, delta and a noise multiplier or a target epsilon', () => {
    expect(schemaIssues(studyDefinitionSchema, withPrivacy({ mode: 'sample', clipNorm: 1, noiseMultiplier: 1.1, delta: 1e-5 }))).toEqual([]);
    expect(schemaIssues(studyDefinitionSchema, withPrivacy({ mode: 'sample', clipNorm: 1, targetEpsilon: 3, delta: 1e-5, minSamplesPerSite: 500 }))).toEqual([]);
    expect(schemaIssues(studyDefinitionSchema, withPrivacy({ mode: 'site', clipNorm: 0.1, noiseMultiplier: 1, delta: 1e-5 }))).toEqual([]);
    expect(schemaIssues(studyDefinitionSchema, withPrivacy({ mode: 'none' }))).toEqual([]);
  });

  it('name what is missing or contradictory', () => {
    expect(schemaIssues(studyDefinitionSchema, withPrivacy({ mode: 'sample' }))).toEqual([
      'privacy.clipNorm: is required with privacy.mode sample',
      'privacy.delta: is required with privacy.mode sample (0.00001 suits studies of up to tens of thousands of patients)'.replace('0.00001', String(1e-5)),
      'privacy.noiseMultiplier: or privacy.targetEpsilon is required: how much noise to add',
    ]);
    expect(schemaIssues(studyDefinitionSchema, withPrivacy({ mode: 'none', clipNorm: 1 }))).toEqual(['privacy.clipNorm: is only meaningful with privacy.mode sample or site']);
    expect(schemaIssues(studyDefinitionSchema, withPrivacy({ mode: 'sample', clipNorm: 1, targetEpsilon: 3, delta: 1e-5 }))).toEqual([
      'privacy.minSamplesPerSite: is required with privacy.targetEpsilon in sample mode: the noise is calibrated for the smallest site',
    ]);
    expect(schemaIssues(studyDefinitionSchema, withPrivacy({ mode: 'laplace' }))[0]).toMatch(/^privacy.mode: must be one of none, sample, site/);
    expect(schemaIssues(studyDefinitionSchema, withPrivacy({ mode: 'sample', clipNorm: -1, noiseMultiplier: 1, delta: 1e-5 }))[0]).toMatch(/^privacy.clipNorm:/);
    expect(schemaIssues(studyDefinitionSchema, withPrivacy({ mode: 'sample', clipNorm: 1, noiseMultiplier: 1, delta: 0.5 }))[0]).toMatch(/^privacy.delta:/);
    expect(schemaIssues(studyDefinitionSchema, withPrivacy({ mode: 'sample', clipNorm: 1, noiseMultiplier: 1, delta: 1e-5, extra: 1 }))[0]).toMatch(/^privacy:.*extra/);
  });

  it('refuse site-level noise an encrypted update cannot carry', () => {
    // minSites 2: each site adds noise of sd sigma·C/√2.
    const issues = schemaIssues(studyDefinitionSchema, withPrivacy({ mode: 'site', clipNorm: 1, noiseMultiplier: 1, delta: 1e-5 }));
    expect(issues).toEqual([
      `privacy.clipNorm: gives each site noise of standard deviation ${siteNoiseStd(1, 1, 2).toPrecision(3)} per weight (noiseMultiplier·clipNorm/√minSites), more than the 0.2 an encrypted update can carry; lower clipNorm or raise minSites`,
    ]);
  });
});

describe('privacy accounting of a round', () => {
  const plan = { rounds: 10, batchSize: 32, localEpochs: 2, minSites: 3 };

  it('samples batchSize of the site\'s images per step, for the round\'s steps; site mode is one Gaussian release per round', () => {
    const sample = { ...plan, privacy: { mode: 'sample' as const, clipNorm: 1, noiseMultiplier: 1, delta: 1e-5 } };
    expect(roundMechanism(sample, 1000)).toEqual({ sampleRate: 0.032, steps: 2 * 32 });
    expect(roundMechanism({ ...sample, localEpochs: undefined, localSteps: 7 }, 1000)).toEqual({ sampleRate: 0.032, steps: 7 });
    expect(roundMechanism(sample, 10)).toEqual({ sampleRate: 1, steps: 2 });
    expect(roundMechanism({ ...plan, privacy: { mode: 'site' as const, clipNorm: 0.1, noiseMultiplier: 1, delta: 1e-5 } }, 1000)).toEqual({ sampleRate: 1, steps: 1 });
  });

  it('adds up over rounds to what the accountant gives for all the steps at once', () => {
    const sample = { ...plan, privacy: { mode: 'sample' as const, clipNorm: 1, noiseMultiplier: 1.1, delta: 1e-5 } };
    const one = roundRdp(sample, 1000);
    const ten = one.map((r) => r * 10);
    expect(spentEpsilon(ten, 1e-5)).toBeCloseTo(epsilonSpent({ sampleRate: 0.032, noiseMultiplier: 1.1, steps: 640, delta: 1e-5 }).epsilon, 10);
  });

  it('resolves a target epsilon to the noise that spends at most it over the planned rounds, rounded up', () => {
    const target = { ...plan, privacy: { mode: 'sample' as const, clipNorm: 1, targetEpsilon: 3, delta: 1e-5, minSamplesPerSite: 1000 } };
    const resolved = resolveStudyPrivacy(target)!;
    expect(resolved.targetEpsilon).toBe(3);
    const sigma = resolved.noiseMultiplier!;
    expect(String(sigma).replace(/^0\.0*|\./g, '').length).toBeLessThanOrEqual(4);
    const spent = epsilonSpent({ sampleRate: 0.032, noiseMultiplier: sigma, steps: 640, delta: 1e-5 }).epsilon;
    expect(spent).toBeLessThanOrEqual(3);
    expect(spent).toBeGreaterThan(2.9);
    // A larger site, with a smaller sampling rate, spends less than the target.
    expect(spentEpsilon(roundRdp({ ...target, privacy: resolved }, 5000).map((r) => r * 10), 1e-5)).toBeLessThan(spent);
  });

  it('keeps a stated noise multiplier, and refuses one that misses the stated target', () => {
    const ok = { ...plan, privacy: { mode: 'site' as const, clipNorm: 0.1, noiseMultiplier: 5, targetEpsilon: 8, delta: 1e-5 } };
    expect(resolveStudyPrivacy(ok)).toEqual(ok.privacy);
    expect(() => resolveStudyPrivacy({ ...ok, privacy: { ...ok.privacy, noiseMultiplier: 0.5 } })).toThrow(/privacy.noiseMultiplier 0.5 spends epsilon [\d.]+ over the planned rounds, more than privacy.targetEpsilon 8/);
    expect(() => resolveStudyPrivacy({ ...plan, rounds: 10_000, privacy: { mode: 'site' as const, clipNorm: 0.1, targetEpsilon: 1e-6, delta: 1e-5 } })).toThrow(/privacy.targetEpsilon 0.000001 cannot be reached over 10000 rounds/);
  });
});
