import type { ReferenceObject, SchemaObject } from '@nestjs/swagger';
import { z } from 'zod';

/** A schema as the document holds it: zod's JSON Schema for OpenAPI 3.0, or a reference to a component. */
export type ApiSchemaObject = SchemaObject | ReferenceObject;
type Io = 'input' | 'output';
type Json = Record<string, unknown>;

const COMPONENTS = '#/components/schemas/';
/** Marks references made by the input conversion until names are settled; no name contains it. */
const INPUT_MARK = '~input';
/** Ids of schemas used inline (not named): converted alongside the named ones, never emitted as components. */
const INLINE_MARK = '~inline';

const named = new Map<string, z.ZodType>();
const nameOf = new WeakMap<z.ZodType, string>();

/**
 * Names a schema in the API document: it becomes the component `<id>`, and every use (at any depth) refers to it.
 * Returns the schema, so a declaration reads `export const fooSchema = apiSchema('Foo', z.object(...))`.
 */
export function apiSchema<S extends z.ZodType>(id: string, schema: S): S {
  if (!/^[A-Z][A-Za-z0-9]*$/.test(id)) throw new Error(`API schema name ${JSON.stringify(id)}: use PascalCase letters and digits`);
  const prior = named.get(id);
  if (prior !== undefined && prior !== schema) throw new Error(`API schema name ${id} is already given to another schema`);
  const priorName = nameOf.get(schema);
  if (priorName !== undefined && priorName !== id) throw new Error(`API schema ${id} is already named ${priorName}`);
  named.set(id, schema);
  nameOf.set(schema, id);
  return schema;
}

/**
 * Every schema one document uses, converted once per side: a request body is read on the input side (a field with
 * a default may be left out), a response on the output side (it is always there). A named schema that reads the
 * same both ways is one component; one that differs has an `<id>Input` twin for requests.
 */
export interface SchemaSet {
  /** The schema for a use: a reference to its component when named, else the schema itself. */
  of(schema: z.ZodType, io: Io): ApiSchemaObject;
  /** The components the document refers to (from `root`, its paths), and those they refer to. */
  components(root: unknown): Record<string, SchemaObject>;
}

/** A schema the document uses, and on which side: request bodies and query strings are input, responses output. */
export interface SchemaUse {
  schema: z.ZodType;
  io: Io;
}

export function convertSchemas(uses: Iterable<SchemaUse>): SchemaSet {
  const registry = z.registry<{ id: string }>();
  for (const [id, schema] of named) registry.add(schema, { id });
  const inline = new Map<z.ZodType, string>();
  for (const { schema, io } of uses) {
    // A schema that cannot be written as JSON Schema on the side it is used (a transform in a response) fails here,
    // at start-up, rather than being documented as "anything".
    z.toJSONSchema(schema, { target: 'openapi-3.0', io });
    if (nameOf.has(schema) || inline.has(schema)) continue;
    const id = `${INLINE_MARK}${inline.size}`;
    inline.set(schema, id);
    registry.add(schema, { id });
  }
  // Each side converts every schema, though some are used on one side only (a query with transforms has no output
  // side): what cannot be represented is left blank here, and only the sides checked above reach the document.
  const output = convert(registry, 'output');
  const input = convert(registry, 'input');

  const same = new Map<string, boolean>();
  // Same both ways: identical once input references are read as output ones, and so is everything it refers to.
  const readsSameBothWays = (id: string): boolean => {
    const known = same.get(id);
    if (known !== undefined) return known;
    const inputJson = JSON.stringify(input[id]);
    const result =
      inputJson.replaceAll(`${INPUT_MARK}"`, '"') === JSON.stringify(output[id]) && refsIn(inputJson, INPUT_MARK).every(readsSameBothWays);
    same.set(id, result);
    return result;
  };
  const componentName = (id: string, io: Io): string => (io === 'output' || readsSameBothWays(id) ? id : `${id}Input`);
  // Input references get their final names: the shared component, or the `Input` twin.
  const settle = (schema: Json | undefined, io: Io): Json => {
    const json = JSON.stringify(schema ?? {});
    if (io === 'output') return JSON.parse(json) as Json;
    return JSON.parse(json.replace(/"#\/components\/schemas\/([A-Za-z0-9~]+)~input"/g, (_, id: string) => `"${COMPONENTS}${componentName(id, 'input')}"`)) as Json;
  };

  const all: Record<string, Json> = {};
  for (const id of named.keys()) {
    all[id] = settle(output[id], 'output');
    if (!readsSameBothWays(id)) all[`${id}Input`] = settle(input[id], 'input');
  }
  return {
    of(schema, io) {
      const id = nameOf.get(schema);
      if (id !== undefined) return { $ref: `${COMPONENTS}${componentName(id, io)}` };
      const inlineId = inline.get(schema);
      if (inlineId === undefined) throw new Error('a schema the document uses was not given to convertSchemas');
      return settle(io === 'output' ? output[inlineId] : input[inlineId], io) as SchemaObject;
    },
    components(root) {
      const wanted = new Set<string>();
      const visit = (json: string): void => {
        for (const id of refsIn(json, '')) {
          if (wanted.has(id) || !(id in all)) continue;
          wanted.add(id);
          visit(JSON.stringify(all[id]));
        }
      };
      visit(JSON.stringify(root));
      return Object.fromEntries([...wanted].sort().map((id) => [id, all[id] as SchemaObject]));
    },
  };
}

function convert(registry: z.core.$ZodRegistry<{ id: string }>, io: Io): Record<string, Json> {
  const { schemas } = z.toJSONSchema(registry, {
    target: 'openapi-3.0',
    io,
    unrepresentable: 'any',
    uri: (id) => `${COMPONENTS}${id}${io === 'input' ? INPUT_MARK : ''}`,
  });
  const result: Record<string, Json> = {};
  for (const [id, schema] of Object.entries(schemas)) {
    // `$id` only tells zod's own references apart; the component's key is its name in the document.
    const { $id: _id, ...rest } = schema as Json;
    result[id] = rest;
  }
  return result;
}

/** The component names a JSON text refers to (those ending in `suffix`, without it). */
function refsIn(json: string, suffix: string): string[] {
  const ids: string[] = [];
  for (const match of json.matchAll(/"#\/components\/schemas\/([A-Za-z0-9~]+)"/g)) {
    const ref = match[1]!;
    if (suffix === '') ids.push(ref);
    else if (ref.endsWith(suffix)) ids.push(ref.slice(0, -suffix.length));
  }
  return ids;
}
