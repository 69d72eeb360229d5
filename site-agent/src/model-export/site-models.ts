import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { STUDY_ID, StudyDefinitionMismatchError, verifyStudyDefinition, type StudyDefinition } from '@federa/shared';
import { ModelCache } from '../agent/model-cache.js';
import { StudyDecisions } from '../policy/index.js';

/**
 * What a site keeps of the studies it took part in, read from its state folder: the global model after each round
 * as the site decrypted it (`models/<study>/<round>.f32`, ModelCache) and the study definitions it was sent
 * (`policy/offers/<study>.json`, StudyDecisions). Read-only: the running agent owns both.
 */

/** The requested study or round is not in the site's state; the message lists what is. */
export class ModelExportError extends Error {
  override readonly name = 'ModelExportError';
}

export interface SavedStudyModels {
  studyId: string;
  /** Rounds with a saved global model, ascending (0 is the initial model). */
  rounds: number[];
  /** The study's name, when its definition is known. */
  name?: string;
}

export interface SiteModel {
  studyId: string;
  round: number;
  definition: StudyDefinition;
  studyHash: string;
  weights: Float32Array;
  /** The decrypted weights file in the state folder. */
  path: string;
}

/** Every study with at least one saved global model, in study id order. */
export async function listSavedModels(stateDir: string): Promise<SavedStudyModels[]> {
  const root = join(stateDir, 'models');
  const studies = (await readdirIfAny(root)).filter((name) => STUDY_ID.test(name)).sort();
  const decisions = new StudyDecisions(stateDir);
  const found: SavedStudyModels[] = [];
  for (const studyId of studies) {
    const rounds = await savedRounds(stateDir, studyId);
    if (rounds.length === 0) continue;
    // A damaged offer file only costs the name here; exporting that study names the damage.
    const offer = await decisions.offer(studyId).catch(() => undefined);
    found.push({ studyId, rounds, ...(offer ? { name: offer.name } : {}) });
  }
  return found;
}

/** Rounds of a study with a saved global model, ascending. */
export async function savedRounds(stateDir: string, studyId: string): Promise<number[]> {
  const names = await readdirIfAny(join(stateDir, 'models', studyId));
  return names
    .map((name) => /^(0|[1-9]\d{0,8})\.f32$/.exec(name)?.[1])
    .filter((round): round is string => round !== undefined)
    .map(Number)
    .sort((a, b) => a - b);
}

/**
 * The global model of `round` (a number, or 'latest') of a study, with the verified definition it was trained
 * under. Throws ModelExportError naming the studies or rounds that do exist when the requested one does not.
 */
export async function readSiteModel(stateDir: string, studyId: string, round: number | 'latest'): Promise<SiteModel> {
  if (!STUDY_ID.test(studyId)) {
    throw new ModelExportError(`"${studyId.slice(0, 80)}" is not a study id (1-64 letters, digits and "-"); ${await describeSaved(stateDir)}`);
  }
  const rounds = await savedRounds(stateDir, studyId);
  const offer = await new StudyDecisions(stateDir).offer(studyId);
  if (rounds.length === 0) {
    const known = offer
      ? `this site knows study ${studyId} ("${offer.name}") but has no global model of it: it has not trained or evaluated a round of it yet`
      : `study ${studyId} is not in this site's state (${stateDir})`;
    throw new ModelExportError(`${known}; ${await describeSaved(stateDir)}`);
  }
  const chosen = round === 'latest' ? rounds[rounds.length - 1]! : round;
  if (!rounds.includes(chosen)) {
    throw new ModelExportError(
      `study ${studyId} has no global model of round ${chosen} at this site; it has ${plural(rounds.length, 'round')} ${rounds.join(', ')} ` +
        `(round 0 is the initial model; a round appears once this site has trained on it or evaluated it, and the final one when the study completes)`,
    );
  }
  if (!offer) {
    throw new ModelExportError(
      `this site has global models of study ${studyId} but not its definition (${join(stateDir, 'policy', 'offers', `${studyId}.json`)} is missing), ` +
        'so it cannot say which preprocessing the model needs; run `federa-site studies --config site.yaml` to fetch it from the coordinator',
    );
  }
  let definition: StudyDefinition;
  try {
    definition = verifyStudyDefinition(offer.definitionJson, offer.hash);
  } catch (error) {
    if (!(error instanceof StudyDefinitionMismatchError)) throw error;
    throw new ModelExportError(`the stored definition of study ${studyId} cannot be used: ${error.message}`);
  }
  const cache = new ModelCache(stateDir);
  const weights = await cache.read(studyId, chosen);
  if (!weights) throw new ModelExportError(`${cache.path(studyId, chosen)} disappeared while it was being read; try again`);
  return { studyId, round: chosen, definition, studyHash: offer.hash, weights, path: cache.path(studyId, chosen) };
}

/** "studies with a saved global model: X "name" (rounds 0, 1), …", or that there are none. */
async function describeSaved(stateDir: string): Promise<string> {
  const saved = await listSavedModels(stateDir);
  if (saved.length === 0) {
    return `this site has no saved global model yet (${join(stateDir, 'models')} is empty or missing): models are saved as the agent trains and evaluates rounds`;
  }
  const studies = saved.map((s) => `${s.studyId}${s.name ? ` "${s.name}"` : ''} (${plural(s.rounds.length, 'round')} ${s.rounds.join(', ')})`);
  return `studies with a saved global model: ${studies.join('; ')}`;
}

function plural(n: number, word: string): string {
  return n === 1 ? word : `${word}s`;
}

async function readdirIfAny(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}
