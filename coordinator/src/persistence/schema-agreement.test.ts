/**
 * schema.prisma and the hand-maintained migrations must describe the same database: Prisma Client
 * builds its queries from the former, the database is built from the latter. This applies every
 * migration to an empty PGlite database and compares its catalog with what Prisma's PostgreSQL
 * conventions derive from schema.prisma (types, nullability, defaults, key/index/foreign-key
 * names and rules, enums). The small schema parser refuses constructs it does not understand, so
 * a new kind of attribute fails here instead of slipping through unchecked.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import { createLogger } from '@federa/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Prisma } from './generated/client.js';
import { applyMigrations, MIGRATIONS_TABLE, type SqlConnection } from './migrator.js';

const SCHEMA_PATH = fileURLToPath(new URL('../../prisma/schema.prisma', import.meta.url));

// ---------------------------------------------------------------------------------------------
// A parser for the subset of the Prisma schema language this project uses.

interface Attribute {
  name: string;
  args: string | undefined;
}
interface Field {
  name: string;
  type: string;
  optional: boolean;
  list: boolean;
  attributes: Attribute[];
}
interface Model {
  name: string;
  fields: Field[];
  blockAttributes: Attribute[];
}
interface Enum {
  name: string;
  values: string[];
  dbName: string;
}

function stripComments(source: string): string {
  let out = '';
  let inString = false;
  for (let i = 0; i < source.length; i += 1) {
    const c = source[i]!;
    if (inString) {
      out += c;
      if (c === '\\') out += source[++i] ?? '';
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
      out += c;
    } else if (c === '/' && source[i + 1] === '/') {
      while (i < source.length && source[i] !== '\n') i += 1;
      out += '\n';
    } else {
      out += c;
    }
  }
  return out;
}

/** Splits `@id @default(uuid(7)) @map("x")` into attributes, keeping nested parentheses intact. */
function parseAttributes(text: string, line: string): Attribute[] {
  const attributes: Attribute[] = [];
  let i = 0;
  while (i < text.length) {
    if (/\s/.test(text[i]!)) {
      i += 1;
      continue;
    }
    const match = /^@{1,2}[\w.]+/.exec(text.slice(i));
    if (!match) throw new Error(`cannot parse attributes in: ${line}`);
    const name = match[0];
    i += name.length;
    let args: string | undefined;
    if (text[i] === '(') {
      let depth = 0;
      const start = i;
      let inString = false;
      for (; i < text.length; i += 1) {
        const c = text[i]!;
        if (inString) {
          if (c === '"') inString = false;
        } else if (c === '"') inString = true;
        else if (c === '(') depth += 1;
        else if (c === ')') {
          depth -= 1;
          if (depth === 0) break;
        }
      }
      args = text.slice(start + 1, i).trim();
      i += 1;
    }
    attributes.push({ name, args });
  }
  return attributes;
}

function parseSchema(source: string): { models: Model[]; enums: Enum[] } {
  const models: Model[] = [];
  const enums: Enum[] = [];
  const blocks = /(model|enum|generator|datasource)\s+(\w+)\s*\{([^}]*)\}/g;
  for (const [, kind, name, body] of stripComments(source).matchAll(blocks)) {
    const lines = body!
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
    if (kind === 'enum') {
      const values = lines.filter((l) => !l.startsWith('@@'));
      const map = lines.map((l) => /^@@map\("([^"]+)"\)$/.exec(l)?.[1]).find(Boolean);
      for (const v of values) if (!/^\w+$/.test(v)) throw new Error(`unsupported enum value line: ${v}`);
      enums.push({ name: name!, values, dbName: map ?? name! });
    } else if (kind === 'model') {
      const model: Model = { name: name!, fields: [], blockAttributes: [] };
      for (const line of lines) {
        if (line.startsWith('@@')) {
          model.blockAttributes.push(...parseAttributes(line, line));
          continue;
        }
        const m = /^(\w+)\s+(\w+)(\[\])?(\?)?\s*(.*)$/.exec(line);
        if (!m) throw new Error(`cannot parse field: ${line}`);
        model.fields.push({ name: m[1]!, type: m[2]!, list: Boolean(m[3]), optional: Boolean(m[4]), attributes: parseAttributes(m[5]!, line) });
      }
      models.push(model);
    }
  }
  return { models, enums };
}

const attr = (attributes: Attribute[], name: string): Attribute | undefined => attributes.find((a) => a.name === name);
const quoted = (args: string | undefined): string | undefined => (args ? /^"([^"]*)"$/.exec(args)?.[1] : undefined);
const list = (text: string): string[] => text.replace(/^\[|\]$/g, '').split(',').map((s) => s.trim()).filter(Boolean);
/** `fields: [a, b], references: [id], onDelete: Cascade` -> { fields: '[a, b]', ... } */
function namedArgs(args: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of args.matchAll(/(\w+)\s*:\s*(\[[^\]]*\]|"[^"]*"|\w+)/g)) out[m[1]!] = m[2]!;
  return out;
}

// ---------------------------------------------------------------------------------------------
// What Prisma's PostgreSQL connector makes of the parsed schema.

const SCALARS: Record<string, { dataType: string; udt: string }> = {
  String: { dataType: 'text', udt: 'text' },
  Int: { dataType: 'integer', udt: 'int4' },
  BigInt: { dataType: 'bigint', udt: 'int8' },
  Float: { dataType: 'double precision', udt: 'float8' },
  Boolean: { dataType: 'boolean', udt: 'bool' },
  DateTime: { dataType: 'timestamp without time zone', udt: 'timestamp' },
  Json: { dataType: 'jsonb', udt: 'jsonb' },
  Bytes: { dataType: 'bytea', udt: 'bytea' },
};
const KNOWN_FIELD_ATTRIBUTES = new Set(['@id', '@default', '@map', '@updatedAt', '@unique', '@relation']);
const KNOWN_BLOCK_ATTRIBUTES = new Set(['@@map', '@@id', '@@unique', '@@index']);
const REFERENTIAL_ACTIONS: Record<string, string> = { Cascade: 'c', Restrict: 'r', NoAction: 'a', SetNull: 'n', SetDefault: 'd' };

interface Column {
  table: string;
  column: string;
  dataType: string;
  udt: string;
  nullable: boolean;
  default: string | null;
  precision: number | null;
}
interface Index {
  table: string;
  name: string;
  columns: string[];
  unique: boolean;
  primary: boolean;
}
interface ForeignKey {
  table: string;
  name: string;
  columns: string[];
  refTable: string;
  refColumns: string[];
  onDelete: string;
  onUpdate: string;
}
interface DatabaseShape {
  columns: Column[];
  indexes: Index[];
  foreignKeys: ForeignKey[];
  enums: Array<{ name: string; values: string[] }>;
}

function expectedShape(models: Model[], enums: Enum[]): DatabaseShape {
  const enumByName = new Map(enums.map((e) => [e.name, e]));
  const modelByName = new Map(models.map((m) => [m.name, m]));
  const tableOf = (m: Model): string => quoted(attr(m.blockAttributes, '@@map')?.args) ?? m.name;
  const columnOf = (m: Model, field: string): string => {
    const f = m.fields.find((x) => x.name === field);
    if (!f) throw new Error(`${m.name} has no field ${field}`);
    return quoted(attr(f.attributes, '@map')?.args) ?? f.name;
  };
  const shape: DatabaseShape = { columns: [], indexes: [], foreignKeys: [], enums: [] };
  for (const e of enums) shape.enums.push({ name: e.dbName, values: e.values });

  for (const model of models) {
    const table = tableOf(model);
    for (const a of model.blockAttributes) {
      if (!KNOWN_BLOCK_ATTRIBUTES.has(a.name)) throw new Error(`extend schema-agreement.test.ts for ${a.name} on ${model.name}`);
      if (a.name === '@@id') {
        if (!a.args?.startsWith('[') || a.args.includes(':')) throw new Error(`unsupported ${a.name}(${a.args}) on ${model.name}`);
        shape.indexes.push({ table, name: `${table}_pkey`, columns: list(a.args).map((f) => columnOf(model, f)), unique: true, primary: true });
      }
      if (a.name === '@@unique' || a.name === '@@index') {
        if (!a.args?.startsWith('[') || a.args.includes(':')) throw new Error(`unsupported ${a.name}(${a.args}) on ${model.name}`);
        const columns = list(a.args).map((f) => columnOf(model, f));
        const suffix = a.name === '@@unique' ? 'key' : 'idx';
        shape.indexes.push({ table, name: `${table}_${columns.join('_')}_${suffix}`, columns, unique: a.name === '@@unique', primary: false });
      }
    }
    for (const field of model.fields) {
      for (const a of field.attributes) {
        if (!KNOWN_FIELD_ATTRIBUTES.has(a.name)) throw new Error(`extend schema-agreement.test.ts for ${a.name} on ${model.name}.${field.name}`);
      }
      const target = modelByName.get(field.type);
      if (target) {
        const relation = attr(field.attributes, '@relation');
        if (!relation?.args) continue; // the back-reference side owns no columns
        const args = namedArgs(relation.args);
        const columns = list(args.fields ?? '').map((f) => columnOf(model, f));
        const optional = model.fields.filter((f) => list(args.fields ?? '').includes(f.name)).some((f) => f.optional);
        shape.foreignKeys.push({
          table,
          name: `${table}_${columns.join('_')}_fkey`,
          columns,
          refTable: tableOf(target),
          refColumns: list(args.references ?? '').map((f) => columnOf(target, f)),
          onDelete: REFERENTIAL_ACTIONS[args.onDelete ?? (optional ? 'SetNull' : 'Restrict')]!,
          onUpdate: REFERENTIAL_ACTIONS[args.onUpdate ?? 'Cascade']!,
        });
        continue;
      }
      const enumType = enumByName.get(field.type);
      const scalar = SCALARS[field.type];
      if (!enumType && !scalar) throw new Error(`extend schema-agreement.test.ts for type ${field.type} (${model.name}.${field.name})`);
      const base = enumType ? { dataType: 'USER-DEFINED', udt: enumType.dbName } : scalar!;
      const column = columnOf(model, field.name);
      const castType = enumType ? enumType.dbName : base.dataType;
      const defaultArgs = attr(field.attributes, '@default')?.args;
      let dflt: string | null = null;
      if (defaultArgs === undefined || /^(uuid|cuid|nanoid|ulid)\(/.test(defaultArgs)) dflt = null; // generated by the client
      else if (defaultArgs === 'now()') dflt = 'CURRENT_TIMESTAMP';
      else if (defaultArgs === '[]' && field.list) dflt = `ARRAY[]::${castType}[]`;
      else if (/^-?\d+(\.\d+)?$/.test(defaultArgs)) dflt = defaultArgs;
      else if (defaultArgs === 'true' || defaultArgs === 'false') dflt = defaultArgs;
      else if (quoted(defaultArgs) !== undefined) dflt = `'${quoted(defaultArgs)}'::${castType}`;
      else if (enumType?.values.includes(defaultArgs)) dflt = `'${defaultArgs}'::${castType}`;
      else throw new Error(`extend schema-agreement.test.ts for @default(${defaultArgs}) on ${model.name}.${field.name}`);
      shape.columns.push({
        table,
        column,
        dataType: field.list ? 'ARRAY' : base.dataType,
        udt: field.list ? `_${base.udt}` : base.udt,
        nullable: field.optional || field.list,
        default: dflt,
        precision: field.type === 'DateTime' ? 3 : null,
      });
      if (attr(field.attributes, '@id')) shape.indexes.push({ table, name: `${table}_pkey`, columns: [column], unique: true, primary: true });
      if (attr(field.attributes, '@unique')) {
        shape.indexes.push({ table, name: `${table}_${column}_key`, columns: [column], unique: true, primary: false });
      }
    }
  }
  return shape;
}

// ---------------------------------------------------------------------------------------------
// What the migrations actually built.

async function actualShape(db: PGlite): Promise<DatabaseShape> {
  const notMigrations = (t: { table: string }): boolean => t.table !== MIGRATIONS_TABLE;
  const columns = (
    await db.query<Column>(`
      SELECT table_name AS "table", column_name AS "column", data_type AS "dataType", udt_name AS "udt",
             is_nullable = 'YES' AS nullable, column_default AS "default",
             CASE WHEN data_type LIKE 'timestamp%' THEN datetime_precision END AS precision
        FROM information_schema.columns WHERE table_schema = current_schema()`)
  ).rows.filter(notMigrations);
  const indexes = (
    await db.query<Index>(`
      SELECT t.relname AS "table", i.relname AS name, x.indisunique AS unique, x.indisprimary AS primary,
             array(SELECT a.attname::text FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(attnum, n)
                     JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum ORDER BY k.n) AS columns
        FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
        JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = current_schema()`)
  ).rows.filter(notMigrations);
  const foreignKeys = (
    await db.query<ForeignKey>(`
      SELECT t.relname AS "table", c.conname AS name, r.relname AS "refTable",
             c.confdeltype::text AS "onDelete", c.confupdtype::text AS "onUpdate",
             array(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(attnum, n)
                     JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum ORDER BY k.n) AS columns,
             array(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(attnum, n)
                     JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum ORDER BY k.n) AS "refColumns"
        FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_class r ON r.oid = c.confrelid
        JOIN pg_namespace n ON n.oid = t.relnamespace WHERE c.contype = 'f' AND n.nspname = current_schema()`)
  ).rows;
  const enums = (
    await db.query<{ name: string; values: string[] }>(`
      SELECT t.typname AS name, array_agg(e.enumlabel::text ORDER BY e.enumsortorder) AS values
        FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid JOIN pg_namespace n ON n.oid = t.typnamespace
       WHERE n.nspname = current_schema() GROUP BY t.typname`)
  ).rows;
  return { columns, indexes, foreignKeys, enums };
}

function sorted(shape: DatabaseShape): DatabaseShape {
  const by = <T>(key: (x: T) => string) => (a: T, b: T) => key(a).localeCompare(key(b));
  return {
    columns: [...shape.columns].sort(by((c) => `${c.table}.${c.column}`)),
    indexes: [...shape.indexes].sort(by((i) => i.name)),
    foreignKeys: [...shape.foreignKeys].sort(by((f) => f.name)),
    enums: [...shape.enums].sort(by((e) => e.name)),
  };
}

// ---------------------------------------------------------------------------------------------

describe('schema.prisma and the migrations', () => {
  let db: PGlite;
  let parsed: { models: Model[]; enums: Enum[] };

  beforeAll(async () => {
    parsed = parseSchema(await readFile(SCHEMA_PATH, 'utf8'));
    db = new PGlite();
    await db.waitReady;
    const conn: SqlConnection = {
      query: async <Row extends Record<string, unknown>>(sql: string, params: readonly unknown[] = []) =>
        (await db.query<Row>(sql, [...params])).rows,
      exec: async (sql: string) => {
        await db.exec(sql);
      },
    };
    await applyMigrations(conn, { logger: createLogger('persistence-test', { level: 'silent' }) });
  });
  afterAll(async () => {
    await db.close();
  });

  it('the test parser reads the schema the way the generated client does', () => {
    const modelNames = Object.values(Prisma.ModelName).sort();
    expect(parsed.models.map((m) => m.name).sort()).toEqual(modelNames);
    const namespace = Prisma as unknown as Record<string, Record<string, string> | undefined>;
    for (const model of parsed.models) {
      const scalarFields = namespace[`${model.name}ScalarFieldEnum`];
      const relationFree = model.fields.filter((f) => !modelNames.includes(f.type as (typeof modelNames)[number]));
      expect(relationFree.map((f) => f.name).sort(), model.name).toEqual(Object.keys(scalarFields ?? {}).sort());
    }
  });

  it('migrations build exactly the tables, columns, keys, indexes and enums the schema declares', async () => {
    const expected = sorted(expectedShape(parsed.models, parsed.enums));
    const actual = sorted(await actualShape(db));
    expect(actual.enums).toEqual(expected.enums);
    expect(actual.columns).toEqual(expected.columns);
    expect(actual.indexes).toEqual(expected.indexes);
    expect(actual.foreignKeys).toEqual(expected.foreignKeys);
  });

  it('the parser rejects constructs it has no rule for', () => {
    const schema = (body: string): string => `model M {\n  id String @id\n  ${body}\n}`;
    expect(() => expectedShape(parseSchema(schema('v Decimal')).models, [])).toThrow(/extend/);
    expect(() => expectedShape(parseSchema(schema('v String @db.VarChar(10)')).models, [])).toThrow(/extend/);
    expect(() => expectedShape(parseSchema(schema('v String @default(dbgenerated("x"))')).models, [])).toThrow(/extend/);
    expect(() => expectedShape(parseSchema(schema('@@schema("other")')).models, [])).toThrow(/extend/);
  });
});
