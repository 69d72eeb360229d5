import { parseArgs } from 'node:util';
import { z } from 'zod';
import { generateConsortium, type ConsortiumSummary, type GeneratedSet } from './consortium.js';
import { MAX_SITES } from './profiles.js';

export const USAGE = `Usage: federa-sim --out DIR [--sites 3] [--images 200] [--holdout 200] [--seed 1] [--force]

Writes a synthetic multi-hospital DICOM consortium for demos and tests:
  DIR/hospital-a/{images/*.dcm,masks/*.seg.dcm,labels.csv}, DIR/hospital-b/..., DIR/holdout/...
  (masks: a DICOM SEG of the lesion per image, empty for normal images)
Options:
  --out DIR        output folder (required)
  --sites N        number of hospitals, 1..${MAX_SITES} (default 3)
  --images N       images per hospital (default 200)
  --holdout N      images in the shared holdout set, 0 for none (default 200)
  --seed N         random seed; the same seed gives identical files (default 1)
  --force          replace existing hospital/holdout folders in DIR
  --help           show this help
  --version        print the version

Exit codes: 0 written; 1 the files could not be written; 2 a flag is wrong (the message names it).
federa-sim sites --count N --kits DIR --coordinator HOST:PORT runs simulated sites against a coordinator
(federa-sim sites --help).
`;

const integer = (name: string, min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, `--${name} must be a whole number`)
    .transform(Number)
    .pipe(z.number().int().min(min, `--${name} must be at least ${min}`).max(max, `--${name} must be at most ${max}`));

const argsSchema = z.object({
  out: z.string({ error: '--out DIR is required' }).min(1, '--out DIR is required'),
  sites: integer('sites', 1, MAX_SITES).default(3),
  images: integer('images', 1, 1_000_000).default(200),
  holdout: integer('holdout', 0, 1_000_000).default(200),
  seed: integer('seed', 0, 2 ** 32 - 1).default(1),
  force: z.boolean().default(false),
});

export type SimCliArgs = z.infer<typeof argsSchema>;

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

/** Parses argv (without node and script); returns the arguments, or an error message for the user. */
export function parseSimArgs(argv: readonly string[]): { ok: true; args: SimCliArgs } | { ok: false; help: boolean; message: string } {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        out: { type: 'string' },
        sites: { type: 'string' },
        images: { type: 'string' },
        holdout: { type: 'string' },
        seed: { type: 'string' },
        force: { type: 'boolean' },
        help: { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    return { ok: false, help: false, message: error instanceof Error ? error.message : String(error) };
  }
  if (values.help === true) return { ok: false, help: true, message: USAGE };
  const { help: _help, ...rest } = values;
  const parsed = argsSchema.safeParse(rest);
  if (!parsed.success) return { ok: false, help: false, message: parsed.error.issues.map((i) => i.message).join('\n') };
  return { ok: true, args: parsed.data };
}

function percent(count: number, total: number): string {
  return total === 0 ? '-' : `${Math.round((100 * count) / total)}%`;
}

/** Human-readable summary table for stdout. */
export function formatSummary(summary: ConsortiumSummary, elapsedMs: number): string {
  const byId = new Map(summary.profiles.map((p) => [p.id, p]));
  const header = ['set', 'size', 'photometric', 'noise', 'lesion', 'normal', 'images', 'labels'];
  const row = (set: GeneratedSet): string[] => {
    const profile = set.profileIds.length === 1 ? byId.get(set.profileIds[0] ?? '') : undefined;
    return [
      set.id,
      profile ? String(profile.imageSize) : 'mixed',
      profile ? profile.photometricInterpretation : 'mixed',
      profile ? profile.noiseSigma.toFixed(3) : 'mixed',
      `${set.classCounts.lesion} (${percent(set.classCounts.lesion, set.images)})`,
      String(set.classCounts.normal),
      String(set.images),
      set.labelsCsv,
    ];
  };
  const sets = [...summary.sites, ...(summary.holdout ? [summary.holdout] : [])];
  const table = [header, ...sets.map(row)];
  const widths = header.map((_, c) => Math.max(...table.map((r) => (r[c] ?? '').length)));
  const lines = table.map((r) => r.map((cell, c) => cell.padEnd(widths[c] ?? 0)).join('  ').trimEnd());
  const total = sets.reduce((n, s) => n + s.images, 0);
  return [
    `Federa synthetic consortium (seed ${summary.seed}) in ${summary.outDir}`,
    ...lines,
    `${total} DICOM files written in ${(elapsedMs / 1000).toFixed(1)} s; classes: ${summary.classNames.join(', ')}`,
    '',
  ].join('\n');
}

/** Runs the CLI and returns the process exit code (0 ok, 2 usage error, 1 failure). */
export async function runSimCli(argv: readonly string[], io: CliIo): Promise<number> {
  const parsed = parseSimArgs(argv);
  if (!parsed.ok) {
    if (parsed.help) {
      io.stdout(parsed.message);
      return 0;
    }
    io.stderr(`federa-sim: ${parsed.message}\n\n${USAGE}`);
    return 2;
  }
  const { out, sites, images, holdout, seed, force } = parsed.args;
  const started = performance.now();
  try {
    const summary = await generateConsortium({ outDir: out, sites, imagesPerSite: images, holdoutImages: holdout, seed, overwrite: force });
    io.stdout(formatSummary(summary, performance.now() - started));
    return 0;
  } catch (error) {
    io.stderr(`federa-sim: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
}
