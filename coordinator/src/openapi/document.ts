import { readFileSync } from 'node:fs';
import type { INestApplication } from '@nestjs/common';
import {
  DocumentBuilder,
  SwaggerModule,
  type OpenAPIObject,
  type OperationObject,
  type ParameterObject,
  type ResponseObject,
  type SchemaObject,
} from '@nestjs/swagger';
import { declaredRoutes, type DeclaredRoute } from '../auth/route-table.js';
import { errorBodySchema } from '../http/error-body.js';
import { API_DOC_METADATA, type ApiContent, type ApiDocOptions } from './api-doc.js';
import { apiSchema, convertSchemas, type SchemaSet, type SchemaUse } from './schemas.js';

export type ControllerClass = new (...args: never[]) => unknown;
/** An operation with the roles extension, which OperationObject does not type. */
export type DocumentedOperation = OperationObject & { 'x-federa-roles'?: readonly string[] | 'public' };

const ERROR = apiSchema('Error', errorBodySchema);
const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'] as const;
type HttpMethod = (typeof HTTP_METHODS)[number];

const AUTH_HINT = 'Send `Authorization: Bearer <token>`. An admin issues tokens (POST /api/v1/tokens); the first admin token comes from `federa token create --role admin`.';

/**
 * The OpenAPI document of these controllers: paths and operation ids from @nestjs/swagger's scan, everything else
 * from the routes' own declarations: access from `@Roles`/`@Public` (the metadata the guard enforces), bodies,
 * responses and parameters from `@ApiDoc` and the zod schemas the handlers validate with.
 */
export function buildOpenApiDocument(app: INestApplication, controllers: ReadonlyArray<ControllerClass>): OpenAPIObject {
  const config = new DocumentBuilder()
    .setTitle('Federa coordinator')
    .setDescription(
      'REST API of the Federa coordinator: studies, tokens, settings, the audit log and health. ' +
        'Each operation names the roles that may call it (also as `x-federa-roles`). ' +
        AUTH_HINT,
    )
    .setVersion(packageVersion())
    .addBearerAuth({ type: 'http', scheme: 'bearer', bearerFormat: 'fed_<id>_<secret>', description: 'A Federa API token (not a JWT).' }, 'bearerAuth')
    .build();
  const document = SwaggerModule.createDocument(app, config, {
    operationIdFactory: (controller, method) => `${controller.replace(/Controller$/, '')}_${method}`,
  });
  const routes = declaredRoutes(controllers).map((route) => ({
    route,
    doc: Reflect.getMetadata(API_DOC_METADATA, route.handler) as ApiDocOptions | undefined,
  }));
  const schemas = convertSchemas([{ schema: ERROR, io: 'output' }, ...routes.flatMap(({ doc }) => (doc ? schemasOf(doc) : []))]);
  for (const { route, doc } of routes) {
    const operation = operationOf(document, route);
    if (operation) describeOperation(operation, route, doc, schemas);
  }
  document.components = { ...document.components, schemas: schemas.components(document.paths) };
  return document;
}

/** /api/v1/studies/:id as OpenAPI writes it: /api/v1/studies/{id} (and a wildcard /files/*path as /files/{path}). */
function openApiPath(expressPath: string): string {
  return expressPath.replace(/[:*]([A-Za-z0-9_]+)/g, '{$1}');
}

function operationOf(document: OpenAPIObject, route: DeclaredRoute): DocumentedOperation | undefined {
  const method = route.method.toLowerCase();
  if (!HTTP_METHODS.includes(method as HttpMethod)) return undefined;
  return document.paths[openApiPath(route.path)]?.[method as HttpMethod];
}

function schemasOf(doc: ApiDocOptions): SchemaUse[] {
  const uses: SchemaUse[] = Object.values(doc.responses).flatMap((c) => (c.schema ? [{ schema: c.schema, io: 'output' as const }] : []));
  if (doc.body?.schema) uses.push({ schema: doc.body.schema, io: 'input' });
  if (doc.query) uses.push({ schema: doc.query, io: 'input' });
  return uses;
}

function describeOperation(operation: DocumentedOperation, route: DeclaredRoute, doc: ApiDocOptions | undefined, schemas: SchemaSet): void {
  const access = route.access;
  // An undeclared route gets no roles here: the guard refuses it, and the document's test fails on it.
  if (access !== null) operation['x-federa-roles'] = access;
  const who = access === null ? null : access === 'public' ? 'Public: no token needed.' : `Roles: ${access.join(', ')}`;
  if (doc) operation.summary = doc.summary;
  operation.description = [doc?.description, who].filter((part) => part).join('\n\n');
  operation.security = access === 'public' ? [] : [{ bearerAuth: [] }];
  operation.parameters = parametersOf(route.path, doc, schemas);
  if (doc) {
    if (doc.body) {
      const body = doc.body;
      const schema = body.schema ? schemas.of(body.schema, 'input') : { type: 'string' as const };
      operation.requestBody = {
        description: body.description,
        required: body.required ?? true,
        content: Object.fromEntries((body.contentTypes ?? ['application/json']).map((type) => [type, { schema }])),
      };
    } else {
      // The scan guesses a body from a `@Body()` parameter; without one in @ApiDoc the handler reads none it documents.
      delete operation.requestBody;
    }
    operation.responses = Object.fromEntries(Object.entries(doc.responses).map(([status, content]) => [status, responseOf(content, schemas)]));
  }
  const refusals: Record<string, string> = { ...doc?.errors };
  if (access !== 'public') {
    refusals['401'] = 'No token, or an invalid, expired or revoked one.';
    refusals['403'] = [`The token's role is not one the route names.`, doc?.errors?.[403]].filter((part) => part).join(' Also: ');
  }
  refusals['429'] ??= 'Too many requests from this client this minute (the coordinator\'s rateLimitPerMinute).';
  const error = { 'application/json': { schema: schemas.of(ERROR, 'output') } };
  for (const [status, description] of Object.entries(refusals)) operation.responses[status] = { description, content: error };
}

/** Every `:name` (or `*name`) of the path (described by @ApiDoc when it says), then the query parameters its schema declares. */
function parametersOf(path: string, doc: ApiDocOptions | undefined, schemas: SchemaSet): ParameterObject[] {
  const parameters: ParameterObject[] = [...path.matchAll(/[:*]([A-Za-z0-9_]+)/g)].map(([, name]) => ({
    name: name!,
    in: 'path',
    required: true,
    schema: { type: 'string' },
    ...(doc?.params?.[name!] ? { description: doc.params[name!] } : {}),
  }));
  if (doc?.query) {
    const query = schemas.of(doc.query, 'input') as SchemaObject;
    // A named query schema would be a reference here, with no properties to list as parameters.
    if (!query.properties) throw new Error(`@ApiDoc query of ${path}: pass the z.object itself, not a schema named with apiSchema`);
    const required = new Set(query.required ?? []);
    for (const [name, schema] of Object.entries(query.properties ?? {})) {
      const { description, ...rest } = schema as SchemaObject;
      parameters.push({ name, in: 'query', required: required.has(name), schema: rest, ...(description ? { description } : {}) });
    }
  }
  return parameters;
}

function responseOf(content: ApiContent, schemas: SchemaSet): ResponseObject {
  const type = content.contentType ?? 'application/json';
  const schema: SchemaObject | { $ref: string } = content.schema
    ? schemas.of(content.schema, 'output')
    : { type: 'string', ...(type === 'application/octet-stream' ? { format: 'binary' } : {}) };
  return {
    description: content.description,
    content: { [type]: { schema } },
    ...(content.headers
      ? { headers: Object.fromEntries(Object.entries(content.headers).map(([name, description]) => [name, { description, schema: { type: 'string' } }])) }
      : {}),
  };
}

function packageVersion(): string {
  // dist/openapi/document.js -> the coordinator's package.json, as `--version` reads it.
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}
