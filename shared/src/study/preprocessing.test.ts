import { describe, expect, it } from 'vitest';
import {
  DEFAULT_PREPROCESSING,
  describeIssues,
  parsePreprocessingJson,
  PreprocessingError,
  preprocessingSchema,
  preprocessingToJson,
  studyDefinitionSchema,
  studyHash,
  windowValues,
} from './index.js';
import { exampleStudy, schemaIssues } from './study.testkit.js';

const study = exampleStudy;

const issues = (value: unknown): string[] => schemaIssues(preprocessingSchema, value);

describe('study preprocessing', () => {
  it('defaults to the pipeline sites ran before it was declarable, and is part of every definition', () => {
    expect(DEFAULT_PREPROCESSING).toEqual({ resize: 'letterbox', cropFraction: 1, window: 'file', denoise: 'none', normalise: 'unit' });
    expect(studyDefinitionSchema.parse(study).preprocessing).toEqual(DEFAULT_PREPROCESSING);
    // Fills defaults inside objects too, so the stored definition spells out the whole pipeline.
    expect(preprocessingSchema.parse({ normalise: { clahe: {} } }).normalise).toEqual({ clahe: { tiles: 8, maxSlope: 3 } });
  });

  it('is covered by the study hash', () => {
    const plain = studyHash(studyDefinitionSchema.parse(study));
    const lung = studyHash(studyDefinitionSchema.parse({ ...study, preprocessing: { window: 'ct-lung' } }));
    expect(lung).not.toBe(plain);
    // Declaring the defaults is the same study as declaring nothing.
    expect(studyHash(studyDefinitionSchema.parse({ ...study, preprocessing: { ...DEFAULT_PREPROCESSING } }))).toBe(plain);
  });

  it('accepts every documented form', () => {
    for (const value of [
      { window: 'ct-bone', resize: 'center-crop', cropFraction: 0.8 },
      { window: { center: 40, width: 1 }, denoise: { median: 2 }, normalise: 'z-score' },
      { window: 'none', denoise: { gaussian: 0.3 }, normalise: 'histogram-equalisation', resize: 'stretch' },
      { normalise: { clahe: { tiles: 4, maxSlope: 0 } } },
      { normalise: 'min-max' },
    ]) {
      expect(issues(value)).toEqual([]);
    }
  });

  it('names each bad field with its bounds', () => {
    expect(issues({ window: 'ct-liver' })).toEqual([expect.stringMatching(/^window: must be "file", "none", one of "ct-lung", .*\{ center, width \}$/)]);
    expect(issues({ window: { center: 40, width: 0 } })).toEqual(['window.width: window width must be at least 1']);
    expect(issues({ denoise: { median: 9 } })).toEqual(['denoise.median: median radius must be 1-7 pixels']);
    expect(issues({ denoise: { gaussian: 0.1 } })).toEqual(['denoise.gaussian: gaussian sigma must be 0.3-10 pixels']);
    expect(issues({ denoise: 'bilateral' })).toEqual(['denoise: must be "none", { median: radius } or { gaussian: sigma }']);
    expect(issues({ normalise: { clahe: { tiles: 0 } } })).toEqual(['normalise.clahe.tiles: clahe.tiles must be 1-64']);
    expect(issues({ cropFraction: 0.2 })).toEqual(['cropFraction: cropFraction must be 0.5-1']);
    expect(issues({ resize: 'pad' })).toEqual(['resize: must be "letterbox", "stretch" or "center-crop"']);
    expect(issues({ sharpen: true })[0]).toMatch(/sharpen/);
    const inStudy = studyDefinitionSchema.safeParse({ ...study, preprocessing: { window: { center: 0, width: -5 } } });
    expect(inStudy.success ? [] : describeIssues(inStudy.error)).toEqual(['preprocessing.window.width: window width must be at least 1']);
  });

  it('resolves presets to centre and width in HU', () => {
    expect(windowValues('ct-lung')).toEqual({ center: -600, width: 1500 });
    expect(windowValues('ct-bone')).toEqual({ center: 400, width: 1800 });
    expect(windowValues({ center: 3, width: 7 })).toEqual({ center: 3, width: 7 });
    expect(windowValues('file')).toBeUndefined();
  });

  it('travels as canonical JSON that the site parses back strictly', () => {
    const settings = preprocessingSchema.parse({ normalise: { clahe: { maxSlope: 2 } }, window: 'ct-brain' });
    const json = preprocessingToJson(settings);
    expect(json).toBe('{"cropFraction":1,"denoise":"none","normalise":{"clahe":{"maxSlope":2,"tiles":8}},"resize":"letterbox","window":"ct-brain"}');
    expect(parsePreprocessingJson(json)).toEqual(settings);
    expect(parsePreprocessingJson('')).toEqual(DEFAULT_PREPROCESSING);
    // A field this agent does not know must stop it rather than be ignored.
    expect(() => parsePreprocessingJson('{"window":"file","deskew":true}')).toThrow(PreprocessingError);
    expect(() => parsePreprocessingJson('{"window":')).toThrow(/not valid JSON/);
  });
});
