import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadSiteConfig } from '../config/index.js';
import { exportGlobalModel, listSavedModels, loadExportedModel, predictFiles, type ExportResult, type FilePrediction } from '../model-export/index.js';
import type { BackendPreference } from '../train/index.js';
import { UsageError } from './governance.js';

/** `federa-site model export` and `federa-site predict`: the consortium's model, for use at the hospital. */
type Out = (text: string) => void;

export const MODEL_USAGE = `usage: federa-site model export --study ID --round N --out DIR [--config site.yaml] [--force] [--json]
       federa-site model list [--config site.yaml] [--json]

  export   write the global model of round N of a study this site took part in, as this site decrypted it, as a
           TensorFlow.js LayersModel (DIR/model.json + weight shards) with DIR/federa-model.json beside it: study id,
           round, study hash, model spec, class names, the study's preprocessing and the weights' SHA-256
           --round     a round number (0 is the initial model) or "latest"
           --out       a new or empty folder (--force replaces an earlier export there)
           --config    the site's site.yaml (default: ./site.yaml); its stateDir holds the models
           --json      print the written manifest as JSON
  list     the studies and rounds this site holds a global model of
`;

export const PREDICT_USAGE = `usage: federa-site predict --model DIR FILE|FOLDER... [--json] [--backend auto|wasm|cpu|tensorflow|tensorflow-gpu]

  Class probabilities of an exported model (\`federa-site model export\`) for each file: DICOM, PNG or JPEG, read
  and preprocessed exactly as the site reads its training and evaluation data. A folder stands for every file in it.
  A file that cannot be used gets its own error; the others are still predicted, and the exit code is then 1.
           --model     the folder \`federa-site model export --out\` wrote
           --json      an array of { file, probabilities: { class: p }, predicted } (or { file, error })
           --backend   the TensorFlow.js backend (default: auto, as the site agent chooses)
`;

const BACKENDS: readonly BackendPreference[] = ['auto', 'tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'];

/** `federa-site model export|list`. */
export async function modelCommand(argv: string[], out: Out): Promise<number> {
  const [action, ...rest] = argv;
  if (action === undefined || action === '--help' || action === '-h' || action === 'help') {
    out(MODEL_USAGE);
    return 0;
  }
  if (action === 'export') return exportCommand(rest, out);
  if (action === 'list') return listCommand(rest, out);
  throw new UsageError(`model needs "export" or "list", got "${action}"`, MODEL_USAGE);
}

async function exportCommand(argv: string[], out: Out): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      config: { type: 'string', short: 'c' },
      study: { type: 'string' },
      round: { type: 'string' },
      out: { type: 'string', short: 'o' },
      force: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    out(MODEL_USAGE);
    return 0;
  }
  if (!values.study) throw new UsageError('model export needs --study ID (`federa-site model list` shows the studies this site has models of)', MODEL_USAGE);
  if (values.round === undefined) throw new UsageError('model export needs --round N (a round number, or "latest")', MODEL_USAGE);
  if (!values.out) throw new UsageError('model export needs --out DIR (a new or empty folder)', MODEL_USAGE);
  const round = parseRound(values.round);
  const config = await loadSiteConfig(configPath(values.config, 'model export'));
  const result = await exportGlobalModel({ stateDir: config.stateDir, siteId: config.site.id, studyId: values.study, round, outDir: values.out, force: values.force });
  out(values.json ? `${JSON.stringify({ outDir: result.outDir, files: result.files, manifest: result.manifest }, null, 2)}\n` : formatExport(result));
  return 0;
}

async function listCommand(argv: string[], out: Out): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      config: { type: 'string', short: 'c' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    out(MODEL_USAGE);
    return 0;
  }
  const config = await loadSiteConfig(configPath(values.config, 'model list'));
  const saved = await listSavedModels(config.stateDir);
  if (values.json) out(`${JSON.stringify({ studies: saved }, null, 2)}\n`);
  else if (saved.length === 0) out(`this site has no saved global model yet (state folder ${config.stateDir})\n`);
  else for (const s of saved) out(`${s.studyId}  ${s.name ? `"${s.name}"  ` : ''}rounds ${s.rounds.join(', ')}\n`);
  return 0;
}

/** `federa-site predict --model DIR FILES...`. */
export async function predictCommand(argv: string[], out: Out, err: Out): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      model: { type: 'string', short: 'm' },
      json: { type: 'boolean', default: false },
      backend: { type: 'string', default: 'auto' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    out(PREDICT_USAGE);
    return 0;
  }
  if (!values.model) throw new UsageError('predict needs --model DIR (a folder written by `federa-site model export`)', PREDICT_USAGE);
  if (positionals.length === 0) throw new UsageError('predict needs at least one FILE or FOLDER to predict', PREDICT_USAGE);
  const backend = values.backend as BackendPreference;
  if (!BACKENDS.includes(backend)) throw new UsageError(`--backend must be one of ${BACKENDS.join(', ')}, got "${values.backend}"`, PREDICT_USAGE);
  const exported = await loadExportedModel(values.model, backend);
  let results: FilePrediction[];
  try {
    for (const warning of exported.warnings) err(`warning: ${warning}\n`);
    results = await predictFiles(exported, positionals);
  } finally {
    exported.dispose();
  }
  const failed = results.filter((r) => 'error' in r).length;
  if (values.json) out(`${JSON.stringify(results, null, 2)}\n`);
  else out(formatPredictions(results, exported.manifest.classNames));
  if (failed > 0) err(`${failed} of ${results.length} files could not be predicted; see their errors above\n`);
  return failed > 0 ? 1 : 0;
}

function parseRound(text: string): number | 'latest' {
  if (text === 'latest') return 'latest';
  if (!/^(0|[1-9]\d{0,8})$/.test(text)) throw new UsageError(`--round must be a round number (0, 1, 2, …) or "latest", got "${text}"`, MODEL_USAGE);
  return Number(text);
}

/** The given config, else ./site.yaml, where a site's IT usually runs these from. */
function configPath(given: string | undefined, command: string): string {
  if (given) return given;
  if (existsSync('site.yaml')) return 'site.yaml';
  throw new UsageError(`${command} needs --config <site.yaml> (there is no site.yaml in the current folder)`, MODEL_USAGE);
}

function formatExport(result: ExportResult): string {
  const m = result.manifest;
  const p = m.preprocessing;
  const window = typeof p.window === 'string' ? p.window : `${p.window.center}/${p.window.width}`;
  const normalise = typeof p.normalise === 'string' ? p.normalise : `clahe ${p.normalise.clahe.tiles} tiles, max slope ${p.normalise.clahe.maxSlope}`;
  const denoise = typeof p.denoise === 'string' ? p.denoise : 'median' in p.denoise ? `median ${p.denoise.median}` : `gaussian ${p.denoise.gaussian}`;
  return [
    `exported round ${m.round} of study ${m.studyId} "${m.studyName}" to ${result.outDir}`,
    `  model:         ${m.model.architecture} ${m.model.inputSize}x${m.model.inputSize}x${m.model.channels}, ${m.model.classes} classes [${m.classNames.join(', ')}]`,
    `  preprocessing: window ${window}, ${p.resize}, crop ${p.cropFraction}, denoise ${denoise}, normalise ${normalise}`,
    `  study hash:    ${m.studyHash}`,
    `  weights:       ${m.weights.parameters} parameters, sha256 ${m.weights.sha256}`,
    `  files:         ${result.files.join(', ')}`,
    `predict with \`federa-site predict --model ${result.outDir} FILE...\`; the files are readable by this user only`,
    '',
  ].join('\n');
}

function formatPredictions(results: FilePrediction[], classNames: string[]): string {
  // The file goes last: paths are long and of any length, and the figures stay aligned in front of them.
  const predictedWidth = Math.max(9, ...classNames.map((c) => c.length));
  const columns = classNames.map((c) => Math.max(8, c.length));
  const header = ['predicted'.padEnd(predictedWidth), ...classNames.map((c, i) => c.padStart(columns[i]!)), 'file'].join('  ');
  const rows = results.map((r) =>
    'error' in r
      ? `${'error'.padEnd(predictedWidth)}  ${r.file}: (${r.error.reason}) ${r.error.message}`
      : [r.predicted.padEnd(predictedWidth), ...classNames.map((c, i) => (r.probabilities[c] ?? NaN).toFixed(4).padStart(columns[i]!)), r.file].join('  '),
  );
  return `${[header, ...rows].join('\n')}\n`;
}
