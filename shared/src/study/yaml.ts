import { LineCounter, parseDocument, type Document } from 'yaml';
import { studyDefinitionSchema, type StudyDefinition } from './definition.js';

/** A study file larger than this is refused unread: a definition is a page of settings. */
export const MAX_STUDY_FILE_BYTES = 256 * 1024;

/** A study file that is not valid YAML or not a valid definition; each issue names the file, line and field. */
export class StudyFileError extends Error {
  override readonly name = 'StudyFileError';
  constructor(
    readonly source: string,
    readonly issues: string[],
  ) {
    super(`${source} is not a valid study definition:\n  ${issues.join('\n  ')}`);
  }
}

/**
 * Parses a study definition written as YAML (comments welcome) and validates it with the same schema as the REST
 * API, so a file and the JSON body it stands for give the same definition and the same hash. Errors point at the
 * line of the offending field. Duplicate keys and alias expansion beyond a few dozen nodes are refused.
 */
export function parseStudyYaml(text: string, source = 'study.yaml'): StudyDefinition {
  if (Buffer.byteLength(text, 'utf8') > MAX_STUDY_FILE_BYTES) {
    throw new StudyFileError(source, [`the file is larger than ${MAX_STUDY_FILE_BYTES / 1024} KiB; a study definition is a page of settings`]);
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  const at = (offset: number | undefined): string => {
    if (offset === undefined) return source;
    const { line, col } = lines.linePos(offset);
    return `${source}:${line}:${col}`;
  };
  if (doc.errors.length > 0) throw new StudyFileError(source, doc.errors.map((e) => `${at(e.pos[0])}: ${e.message.split('\n')[0]}`));
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 50 });
  } catch (error) {
    throw new StudyFileError(source, [`${source}: ${(error as Error).message}`]);
  }
  const parsed = studyDefinitionSchema.safeParse(value ?? {});
  if (parsed.success) return parsed.data;
  throw new StudyFileError(
    source,
    parsed.error.issues.map((issue) => {
      const path = issue.path.map(String);
      // A field the file does not have: say so, rather than what type undefined is not.
      const message = /received undefined$/.test(issue.message) ? `is required but missing (${issue.message.replace(/^Invalid input: /, '')})` : issue.message;
      return `${at(offsetOf(doc, path))}: ${path.length > 0 ? path.join('.') : '(root)'}: ${message}`;
    }),
  );
}

/** Where the field at `path` (or the nearest of its parents that is in the file) starts. */
function offsetOf(doc: Document, path: string[]): number | undefined {
  for (let depth = path.length; depth >= 0; depth--) {
    const keys = path.slice(0, depth).map((key) => (/^\d+$/.test(key) ? Number(key) : key));
    const node = keys.length === 0 ? doc.contents : doc.getIn(keys, true);
    const range = (node as { range?: [number, number, number] } | null | undefined)?.range;
    if (range) return range[0];
  }
  return undefined;
}
