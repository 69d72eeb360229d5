import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mergeEvaluationCounts } from '@federa/shared';
import { LocalConsortium } from '../demo/src/consortium.js';
import { launchBrowser, screenshot, signIn, signOut, SKIP_BROWSER, type Browser } from './support/browser.js';

const DEFINITION = `# A small study for the dashboard test: two rounds of a few steps on 32x32 images.
name: dashboard e2e
model:
  architecture: small-cnn
  inputSize: 32
  channels: 1
  classes: 2
  seed: 3
classNames: [normal, lesion]
rounds: 2
minSites: 2
localSteps: 20
batchSize: 8
learningRate: 0.002
roundTimeoutSeconds: 120
`;

/**
 * The dashboard against a real consortium (a coordinator and two site agents, separate processes, mutual TLS): a
 * researcher defines a study in the form, the hospitals approve it by the hash the page shows, the researcher starts
 * it and watches it run live to the end, with curves, ROC and confusion matrix drawn from what the sites reported.
 * Then the site health table, and an auditor, who sees no controls and no downloads, reconciles a site's ledger.
 */
describe.skipIf(SKIP_BROWSER)('the web dashboard with a live consortium', () => {
  let workDir: string;
  let consortium: LocalConsortium;
  let browser: Browser;
  let base: string;
  let studyId: string;

  beforeAll(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'federa-dashboard-'));
    // The browser first: without one (FEDERA_REQUIRE_BROWSER=1) the suite fails before any process starts.
    browser = await launchBrowser();
    consortium = await LocalConsortium.start({
      workDir,
      sites: 2,
      imagesPerSite: 60,
      holdoutImages: 0,
      seed: 21,
      // Counts leave the sites, so the page can draw the ROC curve and the confusion matrix (default: figures only).
      policy: { shareMetrics: 'full' },
    });
    base = `http://127.0.0.1:${consortium.httpPort}`;
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await consortium?.stop();
    await rm(workDir, { recursive: true, force: true });
  });

  it('lets a researcher define, start and watch a study live to the end, with curves, ROC and confusion matrix', async () => {
    const { page, errors } = browser;
    await signIn(page, base, consortium.tokens.researcher);
    await page.locator('#create-form').waitFor();

    // The server's validation issues show next to the text, with line and column for YAML.
    await page.locator('#definition').fill(DEFINITION.replace('rounds: 2', 'rounds: 0'));
    await page.locator('#create-study').click();
    await expect.poll(() => page.locator('#definition-issues .issue-list').textContent()).toMatch(/:\d+:\d+: rounds: /);

    await page.locator('#definition').fill(DEFINITION);
    await page.locator('#create-study').click();
    await page.locator('#study-view #study-hash').waitFor();
    studyId = (await page.locator('#study-view').getAttribute('data-study'))!;
    const hash = (await page.locator('#study-hash').textContent())!.trim();
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    expect(await page.locator('#approval-hint').textContent()).toContain(`federa-site approve ${hash}`);

    // Both hospitals approve the hash the page shows; then the owner starts it from the page.
    await consortium.approve(hash);
    await page.locator('#study-summary [data-action="start"]').click();
    await expect.poll(() => page.locator('#live-state').getAttribute('data-state')).toBe('live');
    await page.locator('#round-progress').waitFor({ timeout: 60_000 });
    await page.locator('#round-sites tbody tr[data-site]').first().waitFor();
    // Mid-study if the page is quick enough to catch it (rounds here take about a second): a round done, one open.
    await expect.poll(() => page.locator('#rounds-progress').getAttribute('data-done'), { timeout: 120_000, interval: 100 }).not.toBe('0');
    // The per-site figures for the study (GET /sites/activity) follow the status event by a request.
    await page.locator('#round-sites td:last-child', { hasText: 'KiB' }).first().waitFor({ timeout: 5_000 }).catch(() => undefined);
    await screenshot(page, 'dashboard-study-live.png');

    // Live to the end: both rounds done, the stream says so, every site reported in the last round.
    await expect.poll(() => page.locator('#rounds-progress').getAttribute('data-done'), { timeout: 150_000, interval: 500 }).toBe('2');
    await expect.poll(() => page.locator('#live-state').getAttribute('data-state'), { timeout: 30_000 }).toBe('ended');
    expect(await page.locator('#study-summary .facts .badge').first().textContent()).toBe('completed');
    const siteIds = consortium.sites.map((s) => s.id).sort();
    expect(await page.locator('#round-sites tbody tr').evaluateAll((rows) => rows.map((r) => [r.getAttribute('data-site'), r.getAttribute('data-state')]))).toEqual(
      siteIds.map((id) => [id, 'reported']),
    );

    // One uPlot chart per metric, a series per site and "global", with the study's rounds on the x axis.
    for (const key of ['loss', 'accuracy', 'balancedAccuracy', 'auc']) {
      const chart = page.locator(`[data-chart="${key}"]`);
      await expect.poll(() => chart.locator('.uplot canvas').count(), { timeout: 60_000 }).toBeGreaterThan(0);
      expect(await chart.locator('.u-legend .u-series .u-label').allTextContents()).toEqual(['round', ...siteIds, 'global']);
    }

    // The final round's evaluation arrives after the study ends; the page follows it until every site answered.
    const evaluation = await consortium.settledEvaluation(studyId, 2, 60_000);
    expect(evaluation?.pendingSites).toEqual([]);
    const counts = mergeEvaluationCounts((await consortium.evaluation(studyId)).rounds.find((r) => r.number === 2)!.sites.map((s) => s.counts!));
    await expect.poll(() => page.locator('#evaluation-round').inputValue(), { timeout: 30_000 }).toBe('2');
    await expect.poll(() => page.locator('#confusion td.cell').evaluateAll((cells) => cells.map((c) => Number(c.getAttribute('data-count')))), { timeout: 30_000 }).toEqual(counts.confusion);
    // One ROC point per score bin that holds any image of the positive class's histograms, plus the origin.
    const bins = counts.bins;
    const occupied = Array.from({ length: bins }, (_, b) => counts.positives[bins + b]! + counts.negatives[bins + b]!).filter((n) => n > 0).length;
    expect(Number(await page.locator('#roc').getAttribute('data-points'))).toBe(occupied + 1);
    expect(await page.locator('#roc canvas').count()).toBe(1);
    const rocAuc = Number(await page.locator('#roc').getAttribute('data-auc'));
    const serverAuc = evaluation?.overall?.auc ?? null;
    // The area under the points drawn is the AUC the coordinator computes from the same histograms.
    expect(serverAuc).not.toBeNull();
    expect(Math.abs(rocAuc - serverAuc!)).toBeLessThan(1e-3);
    await screenshot(page, 'dashboard-curves.png', '#charts');
    await screenshot(page, 'dashboard-evaluation.png', '#evaluation');
    // The owner may download the published models; the page offers one per round.
    expect(await page.locator('#rounds [data-download]').count()).toBe(2);

    // Site health: every site's updates, bytes and round times, from GET /sites/activity.
    await page.locator('nav [data-nav="sites"]').click();
    const rows = page.locator('#sites tbody tr[data-site]');
    await rows.first().waitFor();
    expect(await rows.evaluateAll((r) => r.map((row) => row.getAttribute('data-site')))).toEqual(siteIds);
    for (const id of siteIds) {
      const row = page.locator(`#sites tr[data-site="${id}"]`);
      expect(await row.locator('td[data-updates]').textContent()).toBe('2 / 2');
      expect(Number(await row.locator('td[data-bytes]').getAttribute('data-bytes'))).toBeGreaterThan(10_000);
      expect(Number(await row.locator('td[data-round-seconds]').getAttribute('data-round-seconds'))).toBeGreaterThan(0);
      expect(await row.textContent()).toMatch(/connected/);
    }
    await screenshot(page, 'dashboard-sites.png');
    expect(errors).toEqual([]);
    await signOut(page);
  }, 300_000);

  it('shows an auditor the study with no controls and no model downloads, and reconciles a site ledger', async () => {
    const { page, errors } = browser;
    await signIn(page, base, consortium.tokens.auditor);
    expect(await page.locator('#create-form').count()).toBe(0);
    await page.locator(`#study-list tr[data-study="${studyId}"]`).waitFor();
    expect(await page.locator('#study-list [data-action]').count()).toBe(0);
    await page.locator(`#study-list tr[data-study="${studyId}"] a.study-link`).click();
    await page.locator('#rounds tbody tr[data-round]').first().waitFor();
    expect(await page.locator('[data-action]').count()).toBe(0);
    expect(await page.locator('[data-download]').count()).toBe(0);
    expect(await page.locator('#rounds thead th').allTextContents()).not.toContain('Download');

    await page.locator('nav [data-nav="audit"]').click();
    await expect.poll(() => page.locator('#verification-status .banner').getAttribute('data-ok')).toBe('true');
    const site = consortium.sites[0]!;
    await page.locator('#ledger-file').setInputFiles(join(site.stateDir, 'ledger', 'ledger.jsonl'));
    await page.locator('#reconcile-button').click();
    const answer = page.locator('#reconcile-result .reconcile-answer');
    await answer.waitFor();
    expect(await answer.getAttribute('data-ok')).toBe('true');
    expect(await answer.textContent()).toContain(`${site.id}: the ledger and the audit log agree`);
    expect(errors).toEqual([]);
  });
});
