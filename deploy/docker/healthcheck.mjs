// Container health probe, run by the image's HEALTHCHECK on the bundled Node.js 24 (the images have no curl).
//   node healthcheck.mjs [URL]      URL defaults to $FEDERA_HEALTHCHECK_URL
// Exit 0 when the URL answers 2xx within 4 s, 1 otherwise (Docker's contract: 0 healthy, 1 unhealthy).
// FEDERA_HEALTHCHECK_URL=none turns the probe off (a site agent whose site.yaml has no `status:` port): then
// the container is "healthy" whenever the process runs, which is all Docker can know without that port.
const url = process.argv[2] ?? process.env.FEDERA_HEALTHCHECK_URL ?? '';
if (url === 'none') process.exit(0);
if (!url) {
  process.stderr.write('healthcheck: no URL (argument or FEDERA_HEALTHCHECK_URL)\n');
  process.exit(1);
}
try {
  const response = await fetch(url, { signal: AbortSignal.timeout(4000) });
  process.stdout.write(`healthcheck: ${url} answered ${response.status}\n`);
  process.exit(response.ok ? 0 : 1);
} catch (error) {
  process.stderr.write(`healthcheck: ${url}: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
}
