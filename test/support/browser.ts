import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

/**
 * Headless Chromium for the dashboard tests: the system's Chromium (Debian's /usr/bin/chromium), never a downloaded
 * one. Without it the browser tests skip and say how to install it, unless FEDERA_REQUIRE_BROWSER=1 (CI), which
 * makes them fail instead, so a missing browser cannot pass as tested.
 */
/** FEDERA_CHROMIUM points elsewhere (another install, or a missing path to check the skip). */
export const CHROMIUM = process.env.FEDERA_CHROMIUM ?? '/usr/bin/chromium';
export const REQUIRE_BROWSER = process.env.FEDERA_REQUIRE_BROWSER === '1';
export const HAVE_BROWSER = existsSync(CHROMIUM);
/** True when the browser suites should skip (no Chromium, and not required). */
export const SKIP_BROWSER = !HAVE_BROWSER && !REQUIRE_BROWSER;
if (SKIP_BROWSER) {
  // Visible in the test output on purpose: a skipped suite must not look like a tested one.
  process.stderr.write(`[dashboard] skipping the browser tests: ${CHROMIUM} is missing (apt-get install chromium)\n`);
}

export const SCREENSHOTS = join(resolve(dirname(fileURLToPath(import.meta.url)), '../..'), 'docs/screenshots');
export const VIEWPORT = { width: 1280, height: 900 };

export interface Browser {
  context: BrowserContext;
  page: Page;
  /** Console errors and uncaught page errors, other than failed API calls the test provoked. */
  errors: string[];
  close(): Promise<void>;
}

/** A fresh profile (its own --user-data-dir), closed and deleted by `close`. */
export async function launchBrowser(): Promise<Browser> {
  if (!HAVE_BROWSER) throw new Error(`FEDERA_REQUIRE_BROWSER=1 but ${CHROMIUM} is missing: apt-get install chromium`);
  const profile = await mkdtemp(join(tmpdir(), 'federa-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: VIEWPORT,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    // A refused API call logs "Failed to load resource"; the tests provoke those (bad tokens, 403s) on purpose.
    if (message.type() === 'error' && !/Failed to load resource/.test(message.text())) errors.push(`console: ${message.text()}`);
  });
  await mkdir(SCREENSHOTS, { recursive: true });
  return {
    context,
    page,
    errors,
    close: async () => {
      await context.close().catch(() => undefined);
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/** Saves a 1280x900 screenshot of what the page shows now, with `selector` (if given) scrolled to the top. */
export async function screenshot(page: Page, name: string, selector?: string): Promise<void> {
  if (selector) {
    await page.locator(selector).first().evaluate((element) => element.scrollIntoView({ block: 'start' }));
    await page.evaluate(() => window.scrollBy(0, -16));
  } else {
    await page.evaluate(() => window.scrollTo(0, 0));
  }
  await page.screenshot({ path: join(SCREENSHOTS, name) });
}

/** Signs in through the form with `token`; resolves once the studies view shows. */
export async function signIn(page: Page, baseUrl: string, token: string): Promise<void> {
  // From a clean tab: whatever an earlier (perhaps failed) test left signed in is forgotten first.
  await page.goto(`${baseUrl}/#/studies`);
  await page.evaluate(() => sessionStorage.clear());
  await page.reload();
  await page.locator('#token').fill(token);
  await page.locator('#sign-in').click();
  await page.locator('#studies-view').waitFor();
}

export async function signOut(page: Page): Promise<void> {
  await page.locator('#logout').click();
  await page.locator('#login-form').waitFor();
}
