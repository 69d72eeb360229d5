import { readFile } from 'node:fs/promises';
import { describeStudyPrivacy, parameterCount, parseStudyYaml, resolveStudyDefinition, studyDefinitionJson, studyHash, StudyFileError } from '@federa/shared';
import type { CliIo } from './io.js';

/** `federa study validate FILE`: a researcher checks a definition (and learns its hash) before submitting it. */
export async function validateStudy(file: string, values: { json: boolean }, io: CliIo): Promise<number> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    io.stderr(`federa: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}\n`);
    return 1;
  }
  try {
    // The hash the hospitals will approve: the coordinator resolves a privacy target into its noise multiplier.
    const definition = resolveStudyDefinition(parseStudyYaml(text, file));
    const specHash = studyHash(definition);
    const parameters = parameterCount(definition.model);
    if (values.json) {
      io.stdout(`${JSON.stringify({ file, specHash, parameters, definition, definitionJson: studyDefinitionJson(definition) })}\n`);
      return 0;
    }
    io.stdout(
      [
        `${file}: a valid study definition`,
        `  name        ${definition.name}`,
        `  model       ${definition.model.architecture}, ${definition.model.inputSize}x${definition.model.inputSize}x${definition.model.channels}, ${definition.model.classes} classes, ${parameters.toLocaleString('en-US')} parameters`,
        `  rounds      ${definition.rounds}, at least ${definition.minSites} sites${definition.targetSites !== undefined ? `, at most ${definition.targetSites} per round` : ''}`,
        `  aggregation ${definition.aggregation}`,
        `  privacy     ${describeStudyPrivacy(definition.privacy)}`,
        `  hash        ${specHash}   (what each hospital approves: federa-site approve <hash>)`,
        '',
      ].join('\n'),
    );
    return 0;
  } catch (error) {
    if (error instanceof RangeError && /^privacy\./.test(error.message)) {
      io.stderr(`federa: ${file}: ${error.message}\n`);
      return 1;
    }
    if (!(error instanceof StudyFileError)) throw error;
    io.stderr(`federa: ${error.message}\n`);
    return 1;
  }
}
