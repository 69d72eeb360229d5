import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, type ModelSpec } from '@federa/shared';
import { openDatabase, parseCoordinatorConfig, startCoordinator, type RunningCoordinator } from '@federa/coordinator';
import { launchBrowser, screenshot, signIn, signOut, SKIP_BROWSER, type Browser } from './support/browser.js';
import { startProvisionedCoordinator } from './support/kits.js';
import { studyBody } from './support/raw-site.js';

const spec: ModelSpec = { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 1 };

/**
 * The dashboard as served: a public page with no data in it, its files from this origin under the strict CSP, and
 * an auditor's view of the audit log that shows an intact chain as intact and, after a record was edited in the
 * database (as its owner could, triggers off), names and marks the edited record.
 */
describe('the web dashboard: serving and the auditor view', () => {
  let dir: string;
  let kits: string;
  let coordinator: RunningCoordinator;
  let base: string;
  let browser: Browser | undefined;
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'federa-dashboard-audit-'));
    ({ kits, coordinator } = await startProvisionedCoordinator(dir, ['hospital-a', 'hospital-b']));
    base = `http://127.0.0.1:${coordinator.httpPort}`;
    for (const role of ['admin', 'researcher', 'auditor'] as const) tokens[role] = (await coordinator.issueToken({ name: `dr. ${role}`, role })).token;
    // Something to audit besides token issuance: a study, created over REST.
    const created = await fetch(`${base}/api/v1/studies`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens.researcher}`, 'content-type': 'application/json' },
      body: JSON.stringify(studyBody(spec, { name: 'audited study' })),
    });
    expect(created.status).toBe(201);
  });

  afterAll(async () => {
    await browser?.close();
    await coordinator?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('serves the page and its files to anyone, under a CSP with no inline script and nothing from elsewhere', async () => {
    const page = await fetch(`${base}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    const csp = page.headers.get('content-security-policy') ?? '';
    expect(csp).toMatch(/script-src 'self'/);
    expect(csp).toMatch(/script-src-attr 'none'/);
    const html = await page.text();
    // Every script is a file from this origin; no inline code, no CDN.
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    expect(scripts.length).toBeGreaterThanOrEqual(2);
    for (const [, attributes, body] of scripts) {
      expect(attributes).toMatch(/src="\/dashboard\//);
      expect(body!.trim()).toBe('');
    }
    expect(html).not.toMatch(/https?:\/\//);
    const assets = [...html.matchAll(/(?:src|href)="(\/dashboard\/[^"]+)"/g)].map((m) => m[1]!);
    expect(assets).toEqual(expect.arrayContaining(['/dashboard/app/main.js', '/dashboard/vendor/uPlot.iife.min.js', '/dashboard/vendor/uPlot.min.css', '/dashboard/dashboard.css']));
    for (const asset of [...assets, '/dashboard/app/studies.js', '/dashboard/app/charts.js']) {
      const response = await fetch(`${base}${asset}`);
      expect(response.status, asset).toBe(200);
      expect(response.headers.get('content-type'), asset).toMatch(asset.endsWith('.css') ? /^text\/css/ : /^text\/javascript/);
    }
    // Only the files the dashboard is made of: nothing else under the coordinator or node_modules.
    for (const path of ['/dashboard/app/../../package.json', '/dashboard/vendor/uPlot.cjs.js', '/dashboard/app/main.d.ts', '/dashboard/%2e%2e/package.json', '/dashboard/.env']) {
      expect((await fetch(`${base}${path}`)).status, path).toBe(404);
    }
    // The routes it adds are public and hold no data; everything else still needs a token.
    const open = coordinator.routes().filter((r) => r.access === 'public' && !r.path.startsWith('/api/')).map((r) => `${r.method} ${r.path}`).sort();
    expect(open).toEqual(['GET /', 'GET /dashboard/*path']);
    expect((await fetch(`${base}/api/v1/sites/activity`)).status).toBe(401);
  });

  it('answers GET /sites/activity for every role, refusing a bad study id and naming an unknown one', async () => {
    for (const role of ['admin', 'researcher', 'auditor']) {
      const response = await fetch(`${base}/api/v1/sites/activity`, { headers: { authorization: `Bearer ${tokens[role]}` } });
      expect(response.status).toBe(200);
      expect(await response.json()).toMatchObject({ studyId: null, sites: [] });
    }
    const get = (query: string) => fetch(`${base}/api/v1/sites/activity?${query}`, { headers: { authorization: `Bearer ${tokens.auditor}` } });
    const bad = await get('studyId=no%20such');
    expect(bad.status).toBe(400);
    expect((await bad.json()).issues).toEqual([expect.stringMatching(/^studyId: must be a study id/)]);
    expect((await get('colour=red')).status).toBe(400);
    expect((await get('studyId=no-such-study')).status).toBe(404);
  });

  describe.skipIf(SKIP_BROWSER)('in headless Chromium', () => {
    beforeAll(async () => {
      browser = await launchBrowser();
    });

    it('refuses a bad token with the server\'s message, and keeps nothing', async () => {
      const { page } = browser!;
      await page.goto(`${base}/`);
      await page.locator('#login-form').waitFor();
      await page.locator('#token').fill('fed_aaaaaaaaaaaa_not-a-real-token');
      await page.locator('#sign-in').click();
      await expect.poll(() => page.locator('#login-status').textContent()).toMatch(/Token refused: the token is invalid, expired or revoked/);
      await screenshot(page, 'dashboard-login.png');
      expect(await page.evaluate(() => sessionStorage.getItem('federa.token'))).toBeNull();
    });

    it('shows an auditor an intact log as intact, then the record edited in the database as broken', async () => {
      const { page, errors } = browser!;
      await signIn(page, base, tokens.auditor!);
      await expect.poll(() => page.locator('nav [data-nav]').allTextContents()).toEqual(['Studies', 'Sites', 'Audit']);
      // An auditor reads studies but defines none.
      expect(await page.locator('#create-form').count()).toBe(0);
      await page.locator('nav [data-nav="audit"]').click();
      const banner = page.locator('#verification-status .banner');
      await expect.poll(() => banner.getAttribute('data-ok')).toBe('true');
      expect(await banner.textContent()).toMatch(/Audit log intact/);
      await page.locator('#records tbody tr[data-seq]').first().waitFor();
      const firstSeqs = await page.locator('#records tbody tr[data-seq]').evaluateAll((rows) => rows.map((r) => Number(r.getAttribute('data-seq'))));
      expect(firstSeqs.slice(0, 3)).toEqual([1, 2, 3]);
      await screenshot(page, 'dashboard-audit.png');

      // Edit record 3 offline, as the database's owner could, and bring the coordinator back on the same port.
      const port = coordinator.httpPort;
      await coordinator.close();
      const db = await openDatabase({ dataDir: join(dir, 'coordinator') }, { logger: createLogger('test', { level: 'silent' }) });
      try {
        await db.prisma.$transaction(async (tx) => {
          await tx.$executeRawUnsafe('ALTER TABLE audit_record DISABLE TRIGGER audit_record_append_only');
          await tx.$executeRawUnsafe(`UPDATE audit_record SET actor = 'system' WHERE seq = 3`);
          await tx.$executeRawUnsafe('ALTER TABLE audit_record ENABLE TRIGGER audit_record_append_only');
        });
      } finally {
        await db.close();
      }
      coordinator = await startCoordinator(
        parseCoordinatorConfig({ kitDir: join(kits, 'coordinator'), httpPort: port, grpcPort: 0, dataDir: join(dir, 'coordinator') }),
      );

      await page.locator('#verify').click();
      await expect.poll(() => banner.getAttribute('data-ok')).toBe('false');
      expect(await banner.getAttribute('data-first-bad')).toBe('3');
      expect(await banner.textContent()).toMatch(/BROKEN at record 3/);
      expect(await page.locator('#first-bad-reason').textContent()).toMatch(/\S/);
      // The page goes to the flagged record and marks it, with the reason under it.
      const flagged = page.locator('#records tr.flagged[data-seq="3"]');
      await flagged.waitFor();
      expect(await flagged.textContent()).toMatch(/system/);
      expect(await page.locator('#records tr.flagged-reason[data-flagged="3"]').textContent()).toContain((await page.locator('#first-bad-reason').textContent())!);
      await screenshot(page, 'dashboard-audit-tampered.png');
      expect(errors).toEqual([]);
      await signOut(page);
      expect(await page.evaluate(() => sessionStorage.getItem('federa.token'))).toBeNull();
    });

    it('lets the API decide: a researcher who opens the audit view gets the server\'s refusal, said plainly', async () => {
      const { page } = browser!;
      await signIn(page, base, tokens.researcher!);
      expect(await page.locator('nav [data-nav]').allTextContents()).toEqual(['Studies', 'Sites']);
      await page.goto(`${base}/#/audit`);
      await expect.poll(() => page.locator('#verification-status').textContent()).toMatch(/Not allowed for your role: a researcher token may not call GET \/api\/v1\/audit\/(verify|checkpoints)/);
      await signOut(page);
    });
  });
});
