#!/usr/bin/env node
import { childLogLevel } from './quiet-logs.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { studyDefinitionSchema, type StudyDefinitionInput } from '@federa/shared';
import { evaluateModel, initBackend, loadLabeledDataset } from '@federa/site-agent';
import { LocalConsortium, type RoundEvaluationView, type SiteProcess } from './consortium.js';
import { statisticsOverview } from './statistics-overview.js';
import { formatEvaluationTable, formatRoundTable } from './table.js';

const CLASS_NAMES = ['normal', 'lesion'];

/**
 * `npm run demo`: three synthetic hospitals train one model over gRPC for five rounds on this machine, and
 * the global model is scored on a held-out set after every round.
 */
async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      sites: { type: 'string', default: '3' },
      rounds: { type: 'string', default: '5' },
      images: { type: 'string', default: '200' },
      keep: { type: 'boolean', default: false },
      // Run a statistics-only study (a dataset overview: consortium totals only) before the training study.
      statistics: { type: 'boolean', default: false },
      serve: { type: 'boolean', default: false },
      port: { type: 'string', default: '0' },
      // multiparty (default): keys no single party holds; ckks: one shared key; plaintext: development only.
      aggregation: { type: 'string', default: 'multiparty' },
    },
  });
  const aggregation = values.aggregation;
  if (aggregation !== 'multiparty' && aggregation !== 'ckks' && aggregation !== 'plaintext') {
    throw new Error(`--aggregation must be multiparty, ckks or plaintext, got "${aggregation}"`);
  }
  // Serving the consortium afterwards means keeping its folder: the coordinator's database and the sites' state.
  const keep = values.keep || values.serve;
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port must be a TCP port (0-65535), got "${values.port}"`);
  const sites = Number(values.sites);
  const rounds = Number(values.rounds);
  const imagesPerSite = Number(values.images);
  const out = (line = ''): boolean => process.stdout.write(`${line}\n`);
  const started = Date.now();
  const workDir = await mkdtemp(join(tmpdir(), 'federa-demo-'));
  out(`Federa local consortium demo: ${sites} hospitals, ${rounds} rounds (work folder ${workDir})`);
  out('Generating synthetic DICOM data and starting the coordinator and site agents ...');
  let auditorCommands: string[] = [];
  const consortium = await LocalConsortium.start({
    workDir,
    sites,
    imagesPerSite,
    holdoutImages: 200,
    seed: 7,
    httpPort: port,
    env: { FEDERA_LOG_LEVEL: childLogLevel },
    sharedKey: aggregation === 'ckks',
    ...(aggregation === 'plaintext' ? { policy: { requireEncryption: false } } : {}),
  });
  let ok = false;
  try {
    out(`Coordinator up (REST ${consortium.baseUrl}, gRPC 127.0.0.1:${consortium.grpcPort}); ${sites} sites connected.`);
    const definition: StudyDefinitionInput = {
      name: 'Lesion detection demo',
      model: { architecture: 'small-cnn', inputSize: 64, channels: 1, classes: 2, seed: 42 },
      classNames: CLASS_NAMES,
      rounds,
      minSites: sites,
      localEpochs: 2,
      batchSize: 16,
      learningRate: 0.001,
      optimizer: 'adam',
      // The hospitals' lesion shares run from 30% to 70% while the held-out set is 50/50; unweighted, each round's
      // average pulls the decision threshold towards whichever prevalence dominated, and accuracy swings.
      classWeights: 'balanced',
      aggregation,
      roundTimeoutSeconds: 600,
    };
    const backend = await initBackend('auto');
    const holdoutSet = consortium.data.holdout;
    if (!holdoutSet) throw new Error('the consortium was generated without a held-out set');
    // Held-out images are prepared exactly as the study tells the sites to prepare theirs.
    const declared = studyDefinitionSchema.parse(definition);
    const holdout = await loadLabeledDataset({
      dir: holdoutSet.dir,
      labelsCsv: holdoutSet.labelsCsv,
      inputSize: declared.model.inputSize,
      channels: declared.model.channels,
      classNames: CLASS_NAMES,
      preprocessing: declared.preprocessing,
    });
    const lesions = holdout.images.labels.reduce((n, label) => n + (label === 1 ? 1 : 0), 0);
    const chance = Math.max(lesions, holdout.images.count - lesions) / holdout.images.count;
    if (values.statistics) await statisticsOverview(consortium, out, definition);
    const study = await consortium.createStudy(definition);
    out(`Study ${study.id} created by a researcher token (model small-cnn 64x64, ${rounds} rounds, FedAvg over ${aggregation === 'multiparty' ? 'CKKS updates under keys no single party holds' : aggregation === 'ckks' ? 'CKKS updates under one shared key' : 'plaintext updates (development only)'}).`);
    // Each hospital's IT reviews the study and approves it by the hash of its definition; nothing runs before that.
    await consortium.approve(study.specHash);
    out(`Each hospital approved study hash ${study.specHash.slice(0, 16)}... with \`federa-site approve\`; starting.`);
    if (aggregation === 'multiparty') out('The coordinator only ever holds ciphertexts; the global model below is what a hospital decrypted with the model key only the round\'s hospitals hold.');
    else if (aggregation === 'ckks') out('The coordinator only ever holds ciphertexts; the global model below is decrypted with a hospital\'s key.');
    await consortium.startStudy(study.id);
    let roundStarted = Date.now();
    let finalAccuracy = 0;
    // Written from the round callback; an object, so the type checker does not narrow it to its initial value.
    const last: { federated: RoundEvaluationView | null } = { federated: null };
    const finished = await consortium.follow(
      study.id,
      async (round) => {
        const weights = await consortium.globalWeights(study.id, round.number);
        const global = await evaluateModel(definition.model as Parameters<typeof evaluateModel>[0], weights, holdout.images);
        finalAccuracy = global.accuracy;
        const seconds = (Date.now() - roundStarted) / 1000;
        // The sites score each published model on their own held-out data before training on it.
        const federated = await consortium.settledEvaluation(study.id, round.number, 60_000);
        out();
        out(formatRoundTable(round, global.accuracy, holdout.images.count, seconds));
        out(formatEvaluationTable(federated));
        last.federated = federated;
        roundStarted = Date.now();
      },
      10 * 60_000,
    );
    const seconds = (Date.now() - started) / 1000;
    const margin = finalAccuracy - chance;
    out();
    out(
      `Study ${finished.status}: ${finished.rounds.length} rounds in ${seconds.toFixed(1)} s on the ${backend.name} backend. ` +
        `Final global accuracy ${(finalAccuracy * 100).toFixed(1)}% on ${holdout.images.count} held-out images; ` +
        `chance (majority class) is ${(chance * 100).toFixed(1)}%.`,
    );
    const overall = last.federated?.overall;
    if (overall) {
      const pct = (x: number | null): string => (x === null ? '-' : `${(x * 100).toFixed(1)}%`);
      const what = overall.method === 'site-mean' ? 'mean of the sites\' own figures; no counts left them' : `${overall.samples} images, counts only`;
      out(
        `Federated evaluation of the final model on the sites' own held-out images (${overall.sites} sites, ${what}): ` +
          `accuracy ${pct(overall.accuracy)}, balanced accuracy ${pct(overall.balancedAccuracy)}, AUC ${overall.auc?.toFixed(3) ?? '-'}.`,
      );
    }
    ok = margin >= 0.15;
    out(ok ? 'The federated model is well above chance.' : 'The federated model is NOT well above chance: something is wrong.');
    if (keep) {
      await consortium.exportAudit(join(workDir, 'audit-export.jsonl'));
      auditorCommands = auditCommands(workDir, consortium.sites);
    }
    if (values.serve && ok) {
      printServeGuide(out, consortium, workDir);
      await untilInterrupted();
      out('Stopping the consortium ...');
    }
    return ok ? 0 : 1;
  } finally {
    await consortium.stop();
    if (ok && !keep) await rm(workDir, { recursive: true, force: true });
    else out(`Logs and data kept in ${workDir}`);
    if (auditorCommands.length > 0) {
      out();
      out('For auditors: the coordinator\'s signed audit export and each hospital\'s privacy ledger are in the folder. Check them with:');
      for (const command of auditorCommands) out(`  ${command}`);
    }
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`demo failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);

/** `--serve`: the consortium stays up for the dashboard and the CLI; this says how to reach it. */
function printServeGuide(out: (line?: string) => boolean, consortium: LocalConsortium, workDir: string): void {
  const url = `http://127.0.0.1:${consortium.httpPort}`;
  out();
  out(`The consortium stays up until Ctrl-C. Dashboard: ${url}/  (API reference: ${url}/api/docs)`);
  out(`  researcher token: ${consortium.tokens.researcher}`);
  out(`  auditor token:    ${consortium.tokens.auditor}`);
  out(`  admin token:      ${consortium.tokens.admin}`);
  out('Run a study from the command line (see "For researchers" in the README):');
  out(`  npx federa login --url ${url} --token ${consortium.tokens.researcher}`);
  out('  npx federa study create -f examples/studies/small-cnn.yaml');
  out('Each hospital approves the printed hash before its site trains anything:');
  out(`  for site in ${join(workDir, 'sites')}/*/site.yaml; do npx federa-site approve HASH --config $site; done`);
  out('  npx federa study start ID && npx federa study watch ID');
}

function untilInterrupted(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}

/** What an auditor runs on the kept folder: the export against the CA alone, each ledger, and their reconciliation. */
function auditCommands(workDir: string, sites: readonly SiteProcess[]): string[] {
  const ca = join(workDir, 'kits', 'coordinator', 'ca.pem');
  const bundle = join(workDir, 'audit-export.jsonl');
  const first = sites[0];
  return [
    `npx federa audit verify --bundle ${bundle} --ca ${ca}`,
    ...sites.map((site) => `npx federa-site ledger verify --config ${site.configPath}`),
    ...sites.map((site) => `npx federa audit reconcile --ledger ${join(site.stateDir, 'ledger', 'ledger.jsonl')} --bundle ${bundle} --ca ${ca}`),
    ...(first ? [`npx federa-site studies --config ${first.configPath} --offline`] : []),
  ];
}
