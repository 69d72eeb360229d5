import { describe, expect, it } from 'vitest';
import { InvalidModelSpecError, modelSpecFromMessage, modelSpecToMessage, parseModelSpec, type ModelSpec } from './index.js';

describe('model spec on the wire', () => {
  it('round-trips every architecture with its defaults filled in', () => {
    const specs: ModelSpec[] = [
      { architecture: 'small-cnn', inputSize: 32, channels: 1, classes: 2, seed: 1 },
      { architecture: 'resnet', inputSize: 64, channels: 3, classes: 4, seed: 9, width: 8 },
      { architecture: 'mobilenet', inputSize: 64, channels: 1, classes: 3, seed: 5, alpha: 0.25 },
    ];
    for (const spec of specs) expect(modelSpecFromMessage(modelSpecToMessage(spec))).toEqual(parseModelSpec(spec));
    expect(modelSpecToMessage(specs[0]!).optionsJson).toBe('');
    // Defaults travel explicitly, so a site with other defaults still builds the study's model.
    expect(JSON.parse(modelSpecToMessage(specs[1]!).optionsJson)).toEqual({ width: 8, blocksPerStage: [2, 2, 2] });
  });

  it('refuses options the site does not know or cannot read, naming them', () => {
    const base = modelSpecToMessage({ architecture: 'resnet', inputSize: 64, channels: 1, classes: 2, seed: 1 });
    expect(() => modelSpecFromMessage({ ...base, optionsJson: '{"width":8,"depth":50}' })).toThrow(/depth/);
    expect(() => modelSpecFromMessage({ ...base, optionsJson: '{"width":1000}' })).toThrow(/width/);
    expect(() => modelSpecFromMessage({ ...base, optionsJson: '{' })).toThrow(InvalidModelSpecError);
    expect(() => modelSpecFromMessage({ ...base, optionsJson: '[1]' })).toThrow(/JSON object/);
    expect(() => modelSpecFromMessage({ ...base, optionsJson: '{"seed":3}' })).toThrow(/base field seed/);
  });
});
