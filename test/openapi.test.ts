import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCoordinatorConfig, startCoordinator, type RunningCoordinator } from '@federa/coordinator';

interface Operation {
  operationId?: string;
  summary?: string;
  description?: string;
  parameters?: Array<{ name: string; in: string; required?: boolean; schema?: unknown }>;
  requestBody?: { content?: Record<string, { schema?: unknown }> };
  responses?: Record<string, { description?: unknown; content?: Record<string, { schema?: unknown }> }>;
  security?: Array<Record<string, string[]>>;
  'x-federa-roles'?: unknown;
}
interface Document {
  openapi: string;
  info: { title?: unknown; version?: unknown };
  paths: Record<string, Record<string, Operation>>;
  components?: { schemas?: Record<string, Record<string, unknown>>; securitySchemes?: Record<string, Record<string, unknown>> };
}

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'];

/** /api/v1/studies/:id (or a wildcard *path) as OpenAPI writes it. */
const openApiPath = (path: string): string => path.replace(/[:*]([A-Za-z0-9_]+)/g, '{$1}');

function operations(doc: Document): Array<{ key: string; path: string; method: string; op: Operation }> {
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item)
      .filter(([method]) => METHODS.includes(method))
      .map(([method, op]) => ({ key: `${method.toUpperCase()} ${path}`, path, method, op })),
  );
}

/** Every `$ref` anywhere in a JSON value. */
function refsIn(value: unknown): string[] {
  return [...JSON.stringify(value).matchAll(/"\$ref":"([^"]*)"/g)].map((m) => m[1]!);
}

/**
 * The API document is generated from the code: every route the server serves is in it with exactly the access it
 * declares (so the description cannot drift from what the guard enforces), it is a well-formed OpenAPI 3 document,
 * and Swagger UI is served from this server alone.
 */
describe('OpenAPI document at /api/docs', () => {
  let dir: string;
  let coordinator: RunningCoordinator;
  let doc: Document;
  const get = (path: string) => fetch(`http://127.0.0.1:${coordinator.httpPort}${path}`);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'federa-openapi-'));
    coordinator = await startCoordinator(parseCoordinatorConfig({ insecure: true, httpPort: 0, grpcPort: 0, dataDir: dir }));
    const response = await get('/api/docs/openapi.json');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    doc = (await response.json()) as Document;
  });
  afterAll(async () => {
    await coordinator?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('documents every route the server serves, with the roles the route declares', () => {
    const problems: string[] = [];
    const served = new Set<string>();
    for (const route of coordinator.routes()) {
      const key = `${route.method} ${route.path}`;
      served.add(`${route.method} ${openApiPath(route.path)}`);
      const op = doc.paths[openApiPath(route.path)]?.[route.method.toLowerCase()];
      if (!op) {
        problems.push(`${key}: not in the document`);
        continue;
      }
      const roles = op['x-federa-roles'];
      if (roles === undefined) {
        problems.push(`${key}: no x-federa-roles`);
        continue;
      }
      const declared = route.access === 'public' ? 'public' : [...(route.access ?? [])].sort();
      const documented = Array.isArray(roles) ? [...(roles as string[])].sort() : roles;
      if (JSON.stringify(documented) !== JSON.stringify(declared)) {
        problems.push(`${key}: documents ${JSON.stringify(roles)} but declares ${JSON.stringify(route.access)}`);
      }
      const said = route.access === 'public' ? 'Public' : `Roles: ${(route.access ?? []).join(', ')}`;
      if (!op.description?.includes(said)) problems.push(`${key}: the description does not say "${said}"`);
      if (route.access === 'public') {
        if (JSON.stringify(op.security) !== '[]') problems.push(`${key}: public, but the document asks for credentials`);
      } else {
        if (JSON.stringify(op.security) !== JSON.stringify([{ bearerAuth: [] }])) problems.push(`${key}: no bearerAuth security`);
        for (const status of ['401', '403']) if (!op.responses?.[status]) problems.push(`${key}: no ${status} response`);
      }
    }
    // Nothing documented that the server does not serve.
    for (const { key } of operations(doc)) if (!served.has(key)) problems.push(`${key}: documented but not served`);
    expect(problems).toEqual([]);
    expect(coordinator.routes().length).toBeGreaterThanOrEqual(20);
  });

  it('is a well-formed OpenAPI 3 document', () => {
    expect(doc.openapi).toMatch(/^3\.(0|1)\.\d+$/);
    expect(typeof doc.info.title).toBe('string');
    expect(typeof doc.info.version).toBe('string');
    expect(doc.components?.securitySchemes?.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' });
    const problems: string[] = [];
    const ids = new Map<string, string>();
    for (const { key, path, op } of operations(doc)) {
      if (!path.startsWith('/')) problems.push(`${key}: path does not start with /`);
      if (!op.operationId) problems.push(`${key}: no operationId`);
      else if (ids.has(op.operationId)) problems.push(`${key}: operationId ${op.operationId} is also ${ids.get(op.operationId)}'s`);
      else ids.set(op.operationId, key);
      const responses = Object.entries(op.responses ?? {});
      if (responses.length === 0) problems.push(`${key}: no responses`);
      if (!responses.some(([status]) => /^2\d\d$/.test(status))) problems.push(`${key}: no success response`);
      for (const [status, response] of responses) {
        if (!/^([1-5]\d\d|[1-5]XX|default)$/.test(status)) problems.push(`${key}: response status ${status}`);
        if (typeof response.description !== 'string') problems.push(`${key} ${status}: no description`);
      }
      const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]!).sort();
      const params = op.parameters ?? [];
      const inPath = params.filter((p) => p.in === 'path');
      if (JSON.stringify(inPath.map((p) => p.name).sort()) !== JSON.stringify(templated)) {
        problems.push(`${key}: path parameters ${JSON.stringify(inPath.map((p) => p.name))} for template ${JSON.stringify(templated)}`);
      }
      if (inPath.some((p) => p.required !== true)) problems.push(`${key}: a path parameter is not required`);
      for (const p of params) {
        if (!['path', 'query', 'header', 'cookie'].includes(p.in)) problems.push(`${key}: parameter ${p.name} in ${p.in}`);
        if (p.schema === undefined) problems.push(`${key}: parameter ${p.name} has no schema`);
      }
      if (new Set(params.map((p) => `${p.in}:${p.name}`)).size !== params.length) problems.push(`${key}: duplicate parameters`);
      if (op.requestBody && Object.keys(op.requestBody.content ?? {}).length === 0) problems.push(`${key}: a request body without content`);
      for (const requirement of op.security ?? []) {
        for (const scheme of Object.keys(requirement)) if (!doc.components?.securitySchemes?.[scheme]) problems.push(`${key}: unknown security ${scheme}`);
      }
    }
    // Every reference resolves to a component, and every component is referred to.
    const components = doc.components?.schemas ?? {};
    for (const ref of refsIn(doc)) {
      const name = /^#\/components\/schemas\/(.+)$/.exec(ref)?.[1];
      if (!name || !(name in components)) problems.push(`dangling $ref ${ref}`);
    }
    const referred = new Set(refsIn(doc.paths).concat(refsIn(components)).map((ref) => ref.split('/').pop()));
    for (const name of Object.keys(components)) if (!referred.has(name)) problems.push(`component ${name} is never used`);
    expect(problems).toEqual([]);
  });

  it('describes bodies, responses and errors with the schemas the code validates with', () => {
    const schemas = doc.components?.schemas ?? {};
    const create = doc.paths['/api/v1/studies']?.post;
    // The request side of the study definition: fields with a default may be left out; the response side has them.
    expect(create?.requestBody?.content?.['application/json']?.schema).toEqual({ $ref: '#/components/schemas/StudyDefinitionInput' });
    expect(create?.requestBody?.content?.['application/yaml']).toBeDefined();
    expect(schemas.StudyDefinitionInput?.required).not.toContain('aggregation');
    expect(schemas.StudyDefinition?.required).toContain('aggregation');
    expect(create?.responses?.['201']?.content?.['application/json']?.schema).toEqual({ $ref: '#/components/schemas/StudyStatus' });
    expect(create?.responses?.['400']?.content?.['application/json']?.schema).toEqual({ $ref: '#/components/schemas/Error' });
    expect(schemas.Error).toMatchObject({ required: ['error'], properties: { error: { type: 'string' }, issues: { type: 'array' } } });
    expect(JSON.stringify(schemas.StudyStatus)).toContain('#/components/schemas/StudyDefinition"');

    const status = doc.paths['/api/v1/studies/{id}']?.get;
    expect(status?.summary).toBeTruthy();
    expect(status?.responses?.['404']).toBeDefined();
    expect(doc.paths['/api/v1/tokens']?.post?.requestBody?.content?.['application/json']?.schema).toEqual({ $ref: '#/components/schemas/TokenRequest' });
    expect(doc.paths['/api/v1/studies/{id}/models/{round}']?.get?.responses?.['200']?.content?.['application/octet-stream']).toBeDefined();
    const query = doc.paths['/api/v1/audit/records']?.get?.parameters?.filter((p) => p.in === 'query').map((p) => p.name);
    expect(query).toEqual(expect.arrayContaining(['afterSeq', 'limit', 'kind', 'studyId', 'from', 'to']));
  });

  it('documents liveness, readiness and the Prometheus metrics with their answers and access', () => {
    const json = (op: Operation | undefined, status: string) => op?.responses?.[status]?.content?.['application/json']?.schema;
    expect(json(doc.paths['/api/v1/health']?.get, '200')).toEqual({ $ref: '#/components/schemas/Liveness' });
    const ready = doc.paths['/api/v1/ready']?.get;
    expect(json(ready, '200')).toEqual({ $ref: '#/components/schemas/Readiness' });
    expect(json(ready, '503')).toEqual({ $ref: '#/components/schemas/Readiness' });
    expect(doc.components?.schemas?.Readiness).toMatchObject({ required: expect.arrayContaining(['status', 'database', 'blobStore']) });
    const metrics = doc.paths['/metrics']?.get;
    expect(metrics?.['x-federa-roles']).toEqual(['admin', 'auditor']);
    expect(metrics?.responses?.['200']?.content?.['text/plain; version=0.0.4']).toBeDefined();
    expect(metrics?.description).toContain('federa_rounds_total');
  });

  it('serves Swagger UI from this server, with no external URL, under the Content-Security-Policy', async () => {
    const page = await get('/api/docs');
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('content-security-policy')).toMatch(/script-src 'self'/);
    const html = await page.text();
    expect(html).toContain('id="swagger-ui"');
    expect(html).not.toMatch(/https?:\/\/|\/\/[a-z0-9.-]+\.[a-z]{2,}\//i);
    // No inline script or handler, which the policy would block: every script is a file from here.
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/i);
    expect(html).not.toMatch(/\son[a-z]+=/i);
    const urls = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(urls.length).toBeGreaterThanOrEqual(3);
    for (const url of urls) {
      expect(url).toMatch(/^\/api\/docs\/assets\//);
      const asset = await get(url);
      expect(asset.status, url).toBe(200);
      const type = asset.headers.get('content-type') ?? '';
      const body = await asset.text();
      if (url.endsWith('.js')) expect(type).toMatch(/javascript/);
      if (url.endsWith('.css')) expect(type).toMatch(/^text\/css/);
      if (url.endsWith('federa-swagger.js')) {
        expect(body).toContain("url: '/api/docs/openapi.json'");
        expect(body).toContain('validatorUrl: null');
        expect(body).not.toMatch(/https?:\/\//);
      }
    }
    const missing = await get('/api/docs/assets/..%2F..%2Fpackage.json');
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ error: expect.any(String) });
  });
});
