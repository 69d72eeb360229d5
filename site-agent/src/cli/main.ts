#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { SingleBar } from 'cli-progress';
import { asksForVersion, createLogger, LedgerError, versionLine } from '@federa/shared';
import { SiteAgent } from '../agent/index.js';
import { SiteKitError, siteTransport } from '../client/index.js';
import { loadSiteConfig, SiteConfigError } from '../config/index.js';
import { formatDoctorReport, runDoctor } from '../doctor/index.js';
import { DicomWebError, inspectDicomFile, PacsCredentialsError, prepareSiteDataset, scanDataset, type ScanReport } from '../data/index.js';
import { DecisionError } from '../policy/index.js';
import { ExportedModelError, ModelExportError } from '../model-export/index.js';
import { BackendUnavailableError } from '../train/index.js';
import { decideCommand, ledgerCommand, studiesCommand, UsageError } from './governance.js';
import { initCommand } from './init.js';
import { modelCommand, predictCommand } from './model.js';
import { privacyCommand } from './privacy.js';

const USAGE = `usage: federa-site <command> [options]

commands:
  init --kit DIR --coordinator HOST:PORT [--server-name NAME] [--out site.yaml] [--data-dir DIR [--labels CSV]]
       [--state-dir DIR] [--force]
       [--pacs URL --labels CSV (--from-labels | --modality CT | --study UID... | --series UID...
        | --studies-from/--studies-to YYYYMMDD) [--pacs-user NAME --pacs-password-file FILE]]
                              write a commented site.yaml from this site's kit, with absolute paths and the
                              safe policy defaults (state folder: beside the file, or /var/lib/federa-site when
                              the file is under /etc); --pacs reads the images from the hospital's PACS over
                              DICOMweb instead of a folder: --from-labels retrieves exactly the studies, series
                              or instances the labels CSV names (--modality and dates may narrow it), --study
                              and --series repeat or take comma-separated UIDs;
                              refuses to overwrite a file without --force
  start --config site.yaml    run the site agent: connect to the coordinator and train the rounds it assigns
  doctor --config site.yaml   check the kit, data, state folder (writable, free space), compute backend and
                              threads, the coordinator's certificate names, the connection and whether this
                              site's certificate was revoked (--json for machine-readable output; exit 1 when
                              a check fails)
  data scan (--config site.yaml | --dir DIR [--labels CSV | --folders]) [--json]
                              decode every file (DICOM, PNG, JPEG) and count by class, modality, transfer
                              syntax and size, labelled as the config's data.layout says (--labels: a CSV
                              keyed by file, sop_instance_uid, series_instance_uid or study_instance_uid;
                              --folders: one folder per class); list every rejected file with its reason
  data inspect FILE [--json] [--raw OUT]
                              the header fields that matter (never patient identity) and the decode status;
                              --raw writes the stored pixel values of all frames as little-endian bytes
  studies --config site.yaml [--show HASH] [--offline] [--json]
                              the studies the coordinator offers this site: name, owner, model, preprocessing,
                              aggregation, rounds, hash, the hospital's decision and what the site policy says
  approve HASH --config site.yaml [--study ID] [--note TEXT]
  reject HASH --config site.yaml [--study ID] [--note TEXT]
                              record the hospital's decision on a study (by its hash, or a unique prefix of
                              8+ characters; --study when several studies share one definition); the running
                              agent reads it before its next task
  ledger verify --config site.yaml [--ca ca.pem] [--json]
                              check the privacy ledger's hash chain and the coordinator's signed receipts
                              (exit 1 when anything is wrong); --ledger FILE instead of --config
  ledger show --config site.yaml [--study ID] [--kind KIND] [--since TIME] [--json]
                              every message this site sent: kind, study, round, bytes, SHA-256, encryption
  privacy --config site.yaml [--study ID] [--json]
                              the differential privacy each study has spent of this site's data, from the
                              ledger: mechanism, epsilon per round and in total, and what is left of the
                              budget (policy.privacyBudget)
  model export --study ID --round N --out DIR [--config site.yaml] [--json]
                              write a round's global model, as this site decrypted it, as a TensorFlow.js
                              LayersModel with federa-model.json (study, class names, preprocessing, hashes);
                              \`model list\` shows the rounds this site holds (federa-site model --help)
  predict --model DIR FILE|FOLDER... [--json]
                              class probabilities of an exported model for DICOM, PNG and JPEG files,
                              preprocessed as the site does for training (federa-site predict --help)
  --version                   print the version
  --help                      this text (each command also takes --help)

exit codes: 0 done; 1 a check or verification failed (doctor, ledger verify, predict with an unreadable file) or
the agent stopped on an unexpected error; 2 the command, its flags, the site.yaml or the kit are wrong (the
message says what to change).
FEDERA_LOG_LEVEL (trace, debug, info, warn, error, fatal, silent) sets the JSON log lines on stderr.
`;

/**
 * `federa-site COMMAND --help`: that command's lines of USAGE (a block starts at a two-space indented command and
 * runs over its deeper-indented explanation), so each command's help is the overview's text, never a second copy.
 */
export function commandUsage(command: string): string | null {
  const blocks: string[][] = [];
  for (const line of USAGE.split('\n')) {
    if (/^ {2}[a-z]/.test(line)) blocks.push([line]);
    else if (/^ {4,}\S/.test(line) && blocks.length > 0) blocks.at(-1)!.push(line);
  }
  // Commands listed together share the explanation under the last of them (approve and reject).
  const merged: string[][] = [];
  for (const block of blocks) {
    const previous = merged.at(-1);
    // A block without explanation: command lines only, none with its text beside it after a wide gap.
    if (previous && previous.every((line) => /^ {2}[a-z]/.test(line) && !/\S {3,}\S/.test(line))) previous.push(...block);
    else merged.push(block);
  }
  const names = (block: string[]): string[] => block.filter((line) => /^ {2}[a-z]/.test(line)).map((line) => line.trimStart().split(' ')[0]!);
  const mine = merged.filter((b) => names(b).includes(command));
  return mine.length === 0 ? null : `usage: federa-site\n${mine.map((b) => b.join('\n')).join('\n')}\n`;
}

const log = createLogger('federa-site');
const write = (text: string): void => {
  process.stdout.write(text);
};

async function start(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, strict: true, options: { config: { type: 'string', short: 'c' } } });
  if (!values.config) throw new UsageError('start needs --config <site.yaml>');
  const config = await loadSiteConfig(values.config);
  const agent = new SiteAgent(config, await siteTransport(config), { onDataProgress: progressBar('reading images') });
  const stop = (signal: string): void => {
    log.info({ signal }, 'stopping after the current step');
    agent.stop();
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
  await agent.run();
}

/** A progress bar on an interactive terminal; on a service's log, the agent's own log lines say enough. */
function progressBar(what: string): ((done: number, total: number) => void) | undefined {
  if (!process.stderr.isTTY) return undefined;
  let bar: SingleBar | undefined;
  return (done, total) => {
    if (!bar) {
      bar = new SingleBar({ format: `${what} [{bar}] {value}/{total} {eta_formatted} left`, stream: process.stderr });
      bar.start(total, 0);
    }
    bar.update(done);
    if (done >= total) {
      bar.stop();
      bar = undefined;
    }
  };
}

async function data(argv: string[]): Promise<void> {
  const [action, ...rest] = argv;
  if (action === 'scan') return scan(rest);
  if (action === 'inspect') return inspect(rest);
  throw new UsageError(`data needs "scan" or "inspect", got ${action === undefined ? 'nothing' : `"${action}"`}`);
}

async function scan(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      config: { type: 'string', short: 'c' },
      dir: { type: 'string' },
      labels: { type: 'string' },
      folders: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  });
  if (values.labels && values.folders) throw new UsageError('data scan takes --labels or --folders, not both');
  let dir = values.dir;
  let labels = values.labels;
  let folders = values.folders;
  let files: string[] | undefined;
  if (values.config) {
    const config = await loadSiteConfig(values.config);
    // A PACS source is copied into its cache first (new instances only); the scan then reads the selection there.
    if (!dir && config.data.source?.kind === 'dicomweb') files = (await prepareSiteDataset(config.data, { onProgress: progressBar('retrieving from PACS') })).files;
    dir ??= config.data.dir;
    // Options on the command line override the config's layout as a whole, not field by field.
    if (!labels && !folders) {
      labels = config.data.labels;
      folders = config.data.layout === 'folders';
    }
  }
  if (!dir) throw new UsageError('data scan needs --config <site.yaml> or --dir <folder>');
  const report = await scanDataset({ dir, labelsCsv: labels, layout: folders ? 'folders' : undefined, files, onProgress: progressBar('scanning') });
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatScan(report));
}

function formatScan(report: ScanReport): string {
  const table = (title: string, counts: Record<string, number>): string[] => [
    `${title}:`,
    ...Object.entries(counts)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([key, n]) => `  ${String(n).padStart(6)}  ${key}`),
  ];
  const labelledBy = report.labelledBy === 'none' ? 'not labelled (decoding checked only)' : `labelled by ${report.labelledBy.replaceAll('_', ' ')}`;
  const lines = [
    `${report.files} files, ${report.accepted} usable, ${report.rejected.length} rejected; ${labelledBy}`,
    ...table('by class', report.byClass),
    ...table('by modality', report.byModality),
    ...table('by transfer syntax', report.byTransferSyntax),
    ...table('by size (columns x rows[x frames])', report.bySize),
    ...(report.rejected.length > 0 ? ['rejected:', ...report.rejected.map((r) => `  ${r.reason.padEnd(28)} ${r.message}`)] : []),
  ];
  return `${lines.join('\n')}\n`;
}

async function inspect(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: { json: { type: 'boolean', default: false }, raw: { type: 'string' } },
  });
  const [file] = positionals;
  if (!file || positionals.length !== 1) throw new UsageError('data inspect needs exactly one FILE');
  const result = await inspectDicomFile(file, values.raw);
  if (values.json) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } else if (result.status === 'rejected') {
    process.stdout.write(`${file}: rejected (${result.reason}): ${result.message}\n`);
  } else {
    const fields = Object.entries(result.header ?? result.image ?? {}).map(([key, value]) => `  ${key.padEnd(26)} ${value === undefined ? '-' : String(value)}`);
    process.stdout.write(`${file}: decoded\n${fields.join('\n')}\n`);
    if (result.raw) process.stdout.write(`raw stored values: ${result.raw.bytes} bytes, ${result.raw.frames} frame(s) -> ${result.raw.path}\n`);
  }
  if (result.status === 'rejected') process.exitCode = 1;
}

async function doctor(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: { config: { type: 'string', short: 'c' }, json: { type: 'boolean', default: false } },
  });
  if (!values.config) throw new UsageError('doctor needs --config <site.yaml>');
  const checks = await runDoctor(await loadSiteConfig(values.config));
  process.stdout.write(values.json ? `${JSON.stringify({ checks }, null, 2)}\n` : formatDoctorReport(checks));
  if (checks.some((c) => !c.ok)) process.exitCode = 1;
}

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  if (asksForVersion(process.argv.slice(2))) {
    process.stdout.write(versionLine('federa-site', new URL('../../package.json', import.meta.url)));
    return;
  }
  // model and predict have their own detailed help; every other command shows its part of the overview.
  if (command !== undefined && command !== 'model' && command !== 'predict' && (rest.includes('--help') || rest.includes('-h'))) {
    const usage = commandUsage(command);
    if (usage) {
      process.stdout.write(usage);
      return;
    }
  }
  switch (command) {
    case 'init':
      process.exitCode = await initCommand(rest, write);
      return;
    case 'start':
      return start(rest);
    case 'doctor':
      return doctor(rest);
    case 'data':
      return data(rest);
    case 'studies':
      process.exitCode = await studiesCommand(rest, write);
      return;
    case 'approve':
      process.exitCode = await decideCommand('approved', rest, write);
      return;
    case 'reject':
      process.exitCode = await decideCommand('rejected', rest, write);
      return;
    case 'ledger':
      process.exitCode = await ledgerCommand(rest, write);
      return;
    case 'privacy':
      process.exitCode = await privacyCommand(rest, write);
      return;
    case 'model':
      process.exitCode = await modelCommand(rest, write);
      return;
    case 'predict':
      process.exitCode = await predictCommand(rest, write, (text) => process.stderr.write(text));
      return;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return;
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

main().then(
  () => process.exit(process.exitCode ?? 0),
  (error: unknown) => {
    if (
      error instanceof UsageError ||
      error instanceof SiteConfigError ||
      error instanceof SiteKitError ||
      error instanceof DecisionError ||
      error instanceof LedgerError ||
      error instanceof ModelExportError ||
      error instanceof ExportedModelError ||
      error instanceof BackendUnavailableError ||
      error instanceof DicomWebError ||
      error instanceof PacsCredentialsError ||
      (error instanceof TypeError && 'code' in error)
    ) {
      process.stderr.write(`federa-site: ${(error as Error).message}\n${error instanceof UsageError ? (error.usage ?? USAGE) : ''}`);
      process.exit(2);
    }
    log.fatal({ err: error }, 'site agent failed');
    process.exit(1);
  },
);
