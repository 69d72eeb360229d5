import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Where the dashboard's files are. The browser code is compiled by `tsc -b` (coordinator/web/tsconfig.json) into
 * coordinator/web/dist; the page and its style sheet are plain files in coordinator/web/static; uPlot comes from
 * node_modules, resolved the way Node resolves it, so a clean `npm ci` (hoisted or not) finds it.
 */
export interface DashboardRoots {
  /** index.html and dashboard.css. */
  static: string;
  /** The compiled ES modules (and their source maps). */
  app: string;
  /** uPlot's browser build and style sheet. */
  vendor: string;
}

/** This file is at coordinator/{src,dist}/dashboard/: the web folder is two levels up either way. */
const WEB_ROOT = fileURLToPath(new URL('../../web/', import.meta.url));

export function dashboardRoots(webRoot: string = WEB_ROOT): DashboardRoots {
  const require = createRequire(import.meta.url);
  return {
    static: join(webRoot, 'static'),
    app: join(webRoot, 'dist'),
    vendor: dirname(require.resolve('uplot/dist/uPlot.iife.min.js')),
  };
}

/** The only vendor files served: an allow-list, not the package folder. */
const VENDOR_FILES = new Set(['uPlot.iife.min.js', 'uPlot.min.css']);
/** A single path segment: no slash, no leading dot, so nothing outside the folder can be named. */
const FILE_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$/;

/**
 * Maps a request path under /dashboard/ to a file, or null. `app/x.js` (and `.js.map`): compiled code;
 * `vendor/...`: uPlot; `x.css`/`x.svg`: static files.
 */
export function dashboardFile(roots: DashboardRoots, path: string): string | null {
  const parts = path.split('/');
  if (parts.length === 2 && parts[0] === 'app' && FILE_NAME.test(parts[1]!) && /\.js(\.map)?$/.test(parts[1]!)) return join(roots.app, parts[1]!);
  if (parts.length === 2 && parts[0] === 'vendor' && VENDOR_FILES.has(parts[1]!)) return join(roots.vendor, parts[1]!);
  if (parts.length === 1 && FILE_NAME.test(parts[0]!) && /\.(css|svg)$/.test(parts[0]!)) return join(roots.static, parts[0]!);
  return null;
}

/** Whether the compiled code is there: a coordinator started from sources without `npm run build` has none. */
export function dashboardBuilt(roots: DashboardRoots): boolean {
  return existsSync(join(roots.app, 'main.js'));
}
