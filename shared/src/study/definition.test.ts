import { describe, expect, it } from 'vitest';
import { canonicalJson, studyDefinitionSchema, studyHash } from './index.js';
import { exampleStudy, schemaIssues } from './study.testkit.js';

const input = exampleStudy;

const issues = (value: unknown): string[] => schemaIssues(studyDefinitionSchema, value);

describe('study definition', () => {
  it('defaults to encrypted aggregation, Adam, no FedProx and a 15-minute round deadline', () => {
    const def = studyDefinitionSchema.parse(input);
    expect(def).toMatchObject({ aggregation: 'multiparty', optimizer: 'adam', fedProxMu: 0, roundTimeoutSeconds: 900 });
    expect(def.augmentation).toBeUndefined();
    expect(def.classWeights).toBeUndefined();
  });

  it('names every bad field', () => {
    expect(issues({ ...input, classNames: ['a'], classWeights: [1, 2, 3], fedProxMu: -1, extra: true })).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^classNames: /),
        expect.stringMatching(/^fedProxMu: /),
        expect.stringMatching(/^\(root\): .*extra/),
      ]),
    );
    expect(issues({ ...input, classWeights: [1, 2, 3] })).toEqual(['classWeights: lists 3 weights but model.classes is 2']);
    expect(issues({ ...input, sites: ['hospital-a'] })).toEqual(['minSites: is 2 but only 1 sites are listed']);
    expect(issues({ ...input, augmentation: { flips: true, rotationDegrees: 90 } })[0]).toMatch(/^augmentation\.rotationDegrees: /);
  });

  it('refuses names the database could not store, naming the field', () => {
    expect(issues({ ...input, name: 'lesion\u0000study' })).toEqual(['name: must not contain control characters']);
    expect(issues({ ...input, name: 'lesion \ud800 study' })).toEqual(['name: must be valid Unicode text (it holds a lone surrogate)']);
    expect(issues({ ...input, classNames: ['normal', 'les\udc00ion'] })).toEqual(['classNames.1: must be valid Unicode text (it holds a lone surrogate)']);
    // A well-formed pair (an emoji) is fine.
    expect(issues({ ...input, name: 'lesion \ud83e\udec1 study' })).toEqual([]);
  });

  it('takes exactly one of localEpochs or localSteps', () => {
    const { localEpochs: _epochs, ...noWork } = input;
    const bySteps = studyDefinitionSchema.parse({ ...noWork, localSteps: 50 });
    expect(bySteps.localSteps).toBe(50);
    expect(bySteps.localEpochs).toBeUndefined();
    expect(studyDefinitionSchema.parse(input).localSteps).toBeUndefined();
    expect(issues({ ...input, localSteps: 50 })).toEqual([
      'localSteps: cannot be combined with localEpochs: give exactly one of localEpochs (full passes) or localSteps (optimiser steps)',
    ]);
    expect(issues(noWork)).toEqual([
      'localEpochs: is required unless localSteps is given: give exactly one of localEpochs (full passes) or localSteps (optimiser steps)',
    ]);
    expect(issues({ ...noWork, localSteps: 0 })[0]).toMatch(/^localSteps: /);
    expect(issues({ ...noWork, localSteps: 2.5 })[0]).toMatch(/^localSteps: /);
  });

  it('hashes the definition, not the order its fields were written in', () => {
    const a = studyDefinitionSchema.parse(input);
    const reordered = studyDefinitionSchema.parse(Object.fromEntries(Object.entries(input).reverse()));
    expect(studyHash(reordered)).toBe(studyHash(a));
    expect(studyHash(studyDefinitionSchema.parse({ ...input, fedProxMu: 0.01 }))).not.toBe(studyHash(a));
    // Studies written before localSteps existed keep their hash: an absent field is left out of what is hashed.
    expect(canonicalJson(a)).not.toContain('localSteps');
  });
});
