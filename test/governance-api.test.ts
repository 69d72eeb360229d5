import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCoordinatorConfig, startCoordinator, type RunningCoordinator } from '@federa/coordinator';
import { startProvisionedCoordinator } from './support/kits.js';
import { studyBody, tokenFor } from './support/raw-site.js';

type Role = 'admin' | 'researcher' | 'auditor';
const ROLES: Role[] = ['admin', 'researcher', 'auditor'];
const spec = { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 1 };

/**
 * Default deny on the REST API, checked from the router itself: every route the server serves declares who may call
 * it, and answers 401 without credentials, 403 to a role it does not name, and lets the roles it names through.
 */
describe('REST access control', () => {
  let dir: string;
  let coordinator: RunningCoordinator;
  const call = async (method: string, path: string, token: string | null, body?: unknown) => {
    const response = await fetch(`http://127.0.0.1:${coordinator.httpPort}${path}`, {
      method,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? null : JSON.stringify(body),
    });
    return { status: response.status, headers: response.headers, body: (await response.text()) };
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'federa-access-'));
    ({ coordinator } = await startProvisionedCoordinator(dir, ['hospital-a', 'hospital-b']));
  });
  afterAll(async () => {
    await coordinator?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('serves no route that does not declare its roles', () => {
    const routes = coordinator.routes();
    expect(routes.length).toBeGreaterThanOrEqual(18);
    const undeclared = routes.filter((r) => r.access === null).map((r) => `${r.method} ${r.path}`);
    expect(undeclared).toEqual([]);
    // Only liveness and readiness, the dashboard's page and files (no data), and the API's description are open
    // (/metrics is not: it shows study activity).
    expect(routes.filter((r) => r.access === 'public').map((r) => `${r.method} ${r.path}`).sort()).toEqual(
      ['GET /api/v1/health', 'GET /api/v1/ready', 'GET /', 'GET /dashboard/*path', 'GET /api/docs', 'GET /api/docs/openapi.json', 'GET /api/docs/assets/:file'].sort(),
    );
  });

  it('declares exactly the reviewed roles on every route (a new route or a changed role must change this table)', () => {
    const A = 'admin', R = 'researcher', U = 'auditor';
    const reviewed: Record<string, string> = {
      'GET /': 'public',
      'GET /dashboard/*path': 'public',
      'GET /api/docs': 'public',
      'GET /api/docs/openapi.json': 'public',
      'GET /api/docs/assets/:file': 'public',
      'GET /api/v1/health': 'public',
      'GET /api/v1/ready': 'public',
      'GET /metrics': [A, U].join(),
      'POST /api/v1/tokens': A,
      'GET /api/v1/tokens': A,
      'DELETE /api/v1/tokens/:id': A,
      'GET /api/v1/whoami': [A, R, U].join(),
      'GET /api/v1/settings': [A, U].join(),
      'PATCH /api/v1/settings': A,
      'POST /api/v1/studies': R,
      'PUT /api/v1/studies/:id': R,
      'POST /api/v1/studies/:id/start': R,
      'GET /api/v1/studies': [A, R, U].join(),
      'GET /api/v1/studies/:id': [A, R, U].join(),
      'GET /api/v1/studies/:id/definition': [A, R, U].join(),
      'GET /api/v1/studies/:id/evaluation': [A, R, U].join(),
      'GET /api/v1/studies/:id/events': [A, R, U].join(),
      'POST /api/v1/studies/:id/stop': [A, R].join(),
      'POST /api/v1/studies/:id/pause': [A, R].join(),
      'POST /api/v1/studies/:id/resume': [A, R].join(),
      'POST /api/v1/studies/:id/sites/:siteId/drop': [A, R].join(),
      'GET /api/v1/studies/:id/models/:round': R,
      'GET /api/v1/sites': [A, R, U].join(),
      'GET /api/v1/sites/activity': [A, R, U].join(),
      'GET /api/v1/audit/records': [A, U].join(),
      'GET /api/v1/audit/verify': [A, U].join(),
      'GET /api/v1/audit/checkpoints': [A, U].join(),
      'GET /api/v1/audit/export': [A, U].join(),
      'POST /api/v1/audit/reconcile': [A, U].join(),
    };
    const declared = Object.fromEntries(
      coordinator.routes().map((r) => [`${r.method} ${r.path}`, r.access === 'public' ? 'public' : [...(r.access ?? [])].sort().join()]),
    );
    expect(declared).toEqual(Object.fromEntries(Object.entries(reviewed).map(([route, roles]) => [route, roles === 'public' ? roles : roles.split(',').sort().join()])));
  });

  it('answers every route 401 without a token, 403 to the wrong role, and lets the declared roles through', async () => {
    const tokens = Object.fromEntries(await Promise.all(ROLES.map(async (role) => [role, await tokenFor(coordinator, role)]))) as Record<Role, string>;
    const matrix: string[] = [];
    for (const route of coordinator.routes()) {
      const path = route.path.replace(':id', 'no-such-id').replace(':round', '0');
      const body = ['POST', 'PUT', 'PATCH'].includes(route.method) ? {} : undefined;
      for (const caller of [null, ...ROLES] as const) {
        const { status } = await call(route.method, path, caller ? tokens[caller] : null, body);
        let expected: string;
        if (route.access === 'public') expected = 'allowed';
        else if (caller === null) expected = '401';
        else expected = route.access?.includes(caller) ? 'allowed' : '403';
        const got = status === 401 || status === 403 ? String(status) : 'allowed';
        matrix.push(`${route.method} ${route.path} as ${caller ?? 'nobody'}: ${got === expected ? 'ok' : `expected ${expected}, got ${status}`}`);
      }
    }
    expect(matrix.filter((line) => !line.endsWith(': ok'))).toEqual([]);
  });

  it('audits every refusal, naming the route and why', async () => {
    await call('GET', '/api/v1/studies', null);
    await call('GET', '/api/v1/tokens', await tokenFor(coordinator, 'researcher'));
    const records = await call('GET', '/api/v1/audit/records?kind=token.refused&limit=1000', await tokenFor(coordinator, 'auditor'));
    const refused = (JSON.parse(records.body) as { records: Array<{ details: { status: number; route: string; reason: string } }> }).records;
    expect(refused.some((r) => r.details.status === 401 && r.details.route === 'GET /api/v1/studies' && r.details.reason === 'no credentials')).toBe(true);
    expect(refused.some((r) => r.details.status === 403 && r.details.route === 'GET /api/v1/tokens' && /researcher/.test(r.details.reason))).toBe(true);
  });

  it('says how to authenticate, refuses bad and revoked tokens, and never shows a token twice', async () => {
    const none = await call('GET', '/api/v1/studies', null);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(JSON.parse(none.body).error).toMatch(/Authorization: Bearer/);
    expect((await call('GET', '/api/v1/studies', 'fed_aaaaaaaaaaaa_' + 'x'.repeat(43))).status).toBe(401);
    expect((await call('GET', '/api/v1/studies', 'not a token at all')).status).toBe(401);

    const admin = await tokenFor(coordinator, 'admin');
    const issued = await call('POST', '/api/v1/tokens', admin, { name: 'dr. short-lived', role: 'researcher', expiresInDays: 1 });
    expect(issued.status).toBe(201);
    const { id, token } = JSON.parse(issued.body) as { id: string; token: string };
    expect(token).toMatch(/^fed_[a-z0-9]{12}_[A-Za-z0-9_-]{43}$/);
    expect((await call('GET', '/api/v1/studies', token)).status).toBe(200);
    const listed = await call('GET', '/api/v1/tokens', admin);
    expect(listed.body).not.toContain(token.slice(17));
    expect(JSON.parse(listed.body).find((t: { id: string }) => t.id === id)).toMatchObject({ name: 'dr. short-lived', role: 'researcher', status: 'active' });
    expect((await call('DELETE', `/api/v1/tokens/${id}`, admin)).status).toBe(200);
    expect((await call('GET', '/api/v1/studies', token)).status).toBe(401);
    expect((await call('DELETE', `/api/v1/tokens/${id}`, admin)).status).toBe(400);
    const tooLong = await call('POST', '/api/v1/tokens', admin, { name: 'forever', role: 'admin', expiresInDays: 3650 });
    expect(tooLong.status).toBe(400);
    expect(JSON.parse(tooLong.body).error).toMatch(/tokenMaxLifetimeDays/);
    const bad = await call('POST', '/api/v1/tokens', admin, { name: '', role: 'root' });
    expect(JSON.parse(bad.body).issues).toEqual(expect.arrayContaining([expect.stringMatching(/^name:/), expect.stringMatching(/^role: must be one of/)]));
  });

  it('sends security headers and no x-powered-by', async () => {
    const health = await call('GET', '/api/v1/health', null);
    expect(health.status).toBe(200);
    expect(health.headers.get('x-powered-by')).toBeNull();
    expect(health.headers.get('x-content-type-options')).toBe('nosniff');
    expect(health.headers.get('content-security-policy')).toMatch(/default-src 'self'/);
    expect(health.headers.get('strict-transport-security')).toMatch(/max-age/);
  });

  it('lets only a study\'s owner change, start or stop it, and keeps model artifacts from auditors', async () => {
    const alice = await coordinator.issueToken({ name: 'alice', role: 'researcher' });
    const bob = await coordinator.issueToken({ name: 'bob', role: 'researcher' });
    const created = await call('POST', '/api/v1/studies', alice.token, studyBody(spec, { minSites: 3 }));
    expect(created.status).toBe(201);
    const study = JSON.parse(created.body) as { id: string; owner: string; specHash: string };
    expect(study.owner).toBe('alice');
    const stop = await call('POST', `/api/v1/studies/${study.id}/start`, bob.token);
    expect(stop.status).toBe(403);
    expect(JSON.parse(stop.body).error).toMatch(/belongs to alice/);
    const changed = await call('PUT', `/api/v1/studies/${study.id}`, alice.token, studyBody(spec, { minSites: 3, rounds: 2 }));
    expect(changed.status).toBe(200);
    expect(JSON.parse(changed.body).specHash).not.toBe(study.specHash);
    const auditor = await tokenFor(coordinator, 'auditor');
    const definition = await call('GET', `/api/v1/studies/${study.id}/definition`, auditor);
    expect(JSON.parse(definition.body)).toMatchObject({ owner: 'alice', definition: { rounds: 2 } });
    expect((await call('GET', `/api/v1/studies/${study.id}/models/0`, auditor)).status).toBe(403);
    expect((await call('POST', `/api/v1/studies/${study.id}/stop`, alice.token, { reason: 'wrong cohort' })).status).toBe(200);
    const log = JSON.parse((await call('GET', `/api/v1/audit/records?studyId=${study.id}`, auditor)).body) as { records: Array<{ kind: string }> };
    expect(log.records.map((r) => r.kind)).toEqual(['study.created', 'study.changed', 'study.stopped']);
  });

  it('lets admins change settings (audited), names bad ones, and shows them to auditors', async () => {
    const admin = await tokenFor(coordinator, 'admin');
    const bad = await call('PATCH', '/api/v1/settings', admin, { tokenMaxLifetimeDays: 0, colour: 'red' });
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body).issues.join('\n')).toMatch(/colour|tokenMaxLifetimeDays/);
    const ok = await call('PATCH', '/api/v1/settings', admin, { tokenMaxLifetimeDays: 30 });
    expect(JSON.parse(ok.body)).toMatchObject({ tokenMaxLifetimeDays: 30 });
    const seen = await call('GET', '/api/v1/settings', await tokenFor(coordinator, 'auditor'));
    expect(JSON.parse(seen.body).tokenMaxLifetimeDays).toBe(30);
    const changes = JSON.parse((await call('GET', '/api/v1/audit/records?kind=setting.changed', admin)).body) as { records: Array<{ details: unknown }> };
    expect(changes.records.map((r) => r.details)).toEqual([{ key: 'tokenMaxLifetimeDays', from: 365, to: 30 }]);
  });
});

describe('REST rate limiting', () => {
  it('answers 429 once a client passes its requests per minute', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'federa-throttle-'));
    const coordinator = await startCoordinator(parseCoordinatorConfig({ insecure: true, httpPort: 0, grpcPort: 0, dataDir: dir, rateLimitPerMinute: 5 }));
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 8; i++) statuses.push((await fetch(`http://127.0.0.1:${coordinator.httpPort}/api/v1/studies`)).status);
      expect(statuses.slice(0, 5)).toEqual([401, 401, 401, 401, 401]);
      expect(statuses.slice(5)).toEqual([429, 429, 429]);
    } finally {
      await coordinator.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
