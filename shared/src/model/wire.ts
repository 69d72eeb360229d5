import { canonicalJson } from '../study/canonical-json.js';
import { parseModelSpec, InvalidModelSpecError, type ModelSpec, type ResolvedModelSpec } from './spec.js';

/** The model spec as it travels in a task: the fields every architecture has, plus its own options as JSON. */
export interface ModelSpecMessage {
  architecture: string;
  inputSize: number;
  channels: number;
  classes: number;
  seed: number;
  optionsJson: string;
}

const BASE_FIELDS = new Set(['architecture', 'inputSize', 'channels', 'classes', 'seed']);

/** Study spec to wire form; defaults are filled in first, so the site builds exactly the model the study hashed. */
export function modelSpecToMessage(spec: ModelSpec): ModelSpecMessage {
  const valid = parseModelSpec(spec);
  const options = Object.fromEntries(Object.entries(valid).filter(([key]) => !BASE_FIELDS.has(key)));
  return {
    architecture: valid.architecture,
    inputSize: valid.inputSize,
    channels: valid.channels,
    classes: valid.classes,
    seed: valid.seed,
    optionsJson: Object.keys(options).length > 0 ? canonicalJson(options) : '',
  };
}

/**
 * Wire form back to a validated spec. Unknown or invalid options throw InvalidModelSpecError naming the field,
 * so a site never trains a different model from the one the study declares.
 */
export function modelSpecFromMessage(message: ModelSpecMessage): ResolvedModelSpec {
  let options: unknown = {};
  if (message.optionsJson.trim() !== '') {
    try {
      options = JSON.parse(message.optionsJson);
    } catch (error) {
      throw new InvalidModelSpecError(`invalid model spec: options are not valid JSON (${(error as Error).message})`);
    }
  }
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new InvalidModelSpecError('invalid model spec: options must be a JSON object');
  }
  const clash = Object.keys(options).find((key) => BASE_FIELDS.has(key));
  if (clash !== undefined) throw new InvalidModelSpecError(`invalid model spec: options must not repeat the base field ${clash}`);
  return parseModelSpec({
    ...options,
    architecture: message.architecture,
    inputSize: message.inputSize,
    channels: message.channels,
    classes: message.classes,
    seed: message.seed,
  });
}
