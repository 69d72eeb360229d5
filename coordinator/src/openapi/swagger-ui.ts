import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/**
 * Swagger UI from the swagger-ui-dist that @nestjs/swagger bundles, served by this coordinator: no CDN, so the
 * page works offline and under helmet's Content-Security-Policy (script-src 'self': no inline script, so the
 * start-up script is a file of its own too).
 */
export const DOCS_PATH = '/api/docs';

export const SWAGGER_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Federa coordinator API</title>
<link rel="stylesheet" href="${DOCS_PATH}/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="${DOCS_PATH}/assets/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="${DOCS_PATH}/assets/swagger-ui-bundle.js"></script>
<script src="${DOCS_PATH}/assets/federa-swagger.js"></script>
</body>
</html>
`;

const START_SCRIPT = `window.ui = SwaggerUIBundle({
  url: '${DOCS_PATH}/openapi.json',
  dom_id: '#swagger-ui',
  deepLinking: true,
  // Never send the document to validator.swagger.io: it stays on this server.
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  plugins: [SwaggerUIBundle.plugins.DownloadUrl],
  layout: 'BaseLayout',
});
`;

export interface DocsAsset {
  contentType: string;
  body: Buffer;
}

/** What the page loads, by the name it uses: a fixed list, so no request names any other file. */
const SOURCES: Record<string, { contentType: string; file?: string; text?: string }> = {
  'swagger-ui.css': { contentType: 'text/css; charset=utf-8', file: 'swagger-ui.css' },
  'swagger-ui-bundle.js': { contentType: 'text/javascript; charset=utf-8', file: 'swagger-ui-bundle.js' },
  'favicon-32x32.png': { contentType: 'image/png', file: 'favicon-32x32.png' },
  'federa-swagger.js': { contentType: 'text/javascript; charset=utf-8', text: START_SCRIPT },
};

export const DOCS_ASSET_NAMES = Object.keys(SOURCES);

const loaded = new Map<string, DocsAsset>();

/** An asset by name, read once (the bundle is 1.6 MB: only when the page is first asked for); undefined if unknown. */
export function docsAsset(name: string): DocsAsset | undefined {
  if (!Object.hasOwn(SOURCES, name)) return undefined;
  let asset = loaded.get(name);
  if (!asset) {
    const source = SOURCES[name]!;
    asset = { contentType: source.contentType, body: source.file ? readFileSync(join(swaggerUiDir(), source.file)) : Buffer.from(source.text ?? '') };
    loaded.set(name, asset);
  }
  return asset;
}

/** Resolved from @nestjs/swagger, whose dependency it is, so it is found wherever npm placed it. */
function swaggerUiDir(): string {
  const require = createRequire(import.meta.resolve('@nestjs/swagger'));
  return dirname(require.resolve('swagger-ui-dist/package.json'));
}
