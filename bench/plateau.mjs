#!/usr/bin/env node
// Rounds to plateau, again, from the curves a learning benchmark stored: the seed-mean and seed-by-seed figures of
// bench/lib/server-rows.mjs computed on `seedCurves` and `serverOptimizers` of an existing results file, so a
// change in how plateaus are judged does not need the hours of training that made the curves. Prints the table;
// --write also replaces the file's roundsToPlateau with what it computed (nothing else in the file changes).
//   npm run bench -- plateau bench/results/learning.json [more results files] [--write]
import { readFile, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { meanCurve } from './lib/learning-report.mjs';
import { plateauDocument, plateauSummary } from './lib/server-rows.mjs';

const { values: args, positionals: files } = parseArgs({ allowPositionals: true, options: { write: { type: 'boolean', default: false } } });
if (files.length === 0) {
  process.stderr.write('usage: npm run bench -- plateau <results.json> [more] [--write]\n');
  process.exit(2);
}
for (const file of files) {
  const results = JSON.parse(await readFile(file, 'utf8'));
  // Only a learning benchmark's results have both; the seed-mean curves are taken again below from the seed curves.
  if (!Array.isArray(results.seedCurves) || typeof results.curves !== 'object' || results.curves === null) {
    throw new Error(`${file} has no seedCurves or curves: not a learning benchmark's results`);
  }
  // The stored seed-mean curves are the means of these same seed curves; taken again so both views agree.
  const seedCurves = results.seedCurves.map(({ seed, pooled, fedavg, fedprox }) => ({ seed, pooled, fedavg, fedprox }));
  const curves = Object.fromEntries(['pooled', 'fedavg', 'fedprox'].map((m) => [m, meanCurve(seedCurves.map((s) => s[m]))]));
  const roundsToPlateau = plateauDocument(curves, seedCurves, results.serverOptimizers ?? []);
  process.stdout.write(`${file}:\n${plateauSummary({ ...results, roundsToPlateau }).join('\n')}\n`);
  if (args.write) {
    await writeFile(file, `${JSON.stringify({ ...results, roundsToPlateau }, null, 2)}\n`);
    process.stdout.write(`rewrote roundsToPlateau in ${file}\n`);
  }
}
