// The learning benchmark's command line (see bench/learning.mjs for what each option does), checked before any data
// is made: every number in range, every list without repeats, every server row and preprocessing through the study
// schema itself.
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { consortiumOptions, finiteNumber, positiveInteger, preprocessingWithNormalise } from './cli-options.mjs';
import { parseServerOptimizerRows } from './server-rows.mjs';

/** The options of `argv` (process.argv's tail), with `shared` (@federa/shared's dist) to check them and `defaultOut` for the results. */
export function learningOptions(argv, shared, defaultOut) {
  const { values: args } = parseArgs({
    args: argv,
    options: {
      architecture: { type: 'string', default: 'small-cnn' },
      rounds: { type: 'string' },
      epochs: { type: 'string' },
      'images-per-site': { type: 'string' },
      holdout: { type: 'string' },
      sites: { type: 'string', default: '4' },
      seeds: { type: 'string' },
      'learning-rate': { type: 'string', default: '0.003' },
      schedule: { type: 'string', default: 'cosine' },
      'batch-size': { type: 'string', default: '8' },
      'class-weights': { type: 'string', default: 'balanced' },
      optimizer: { type: 'string', default: 'adam' },
      mu: { type: 'string', default: '0.01' },
      aggregation: { type: 'string', default: 'ckks' },
      'dp-epsilons': { type: 'string' },
      'dp-delta': { type: 'string', default: '1e-5' },
      'dp-clip': { type: 'string', default: '1' },
      'server-optimizers': { type: 'string' },
      quick: { type: 'boolean', default: false },
      linear: { type: 'string', default: 'logistic-regression,linear-svm' },
      'linear-learning-rate': { type: 'string', default: '0.05' },
      'only-linear': { type: 'boolean', default: false },
      harmonise: { type: 'boolean', default: false },
      normalise: { type: 'string', default: 'unit' },
      out: { type: 'string' },
      plot: { type: 'string' },
    },
  });
  // --quick is a smoke run of the whole pipeline (seconds); its figures say nothing about learning quality,
  // so by default it writes to the temp folder, never over the real results.
  const quick = args.quick;
  const { rounds, epochs, imagesPerSite, holdoutImages, sites } = consortiumOptions(args, quick, { imagesPerSite: [24, 25], holdout: [48, 400] });
  // Seeds are integers (they seed the generator, the initial weights and the shuffles); duplicates would only
  // weight one draw twice in the means.
  const seeds = (args.seeds ?? (quick ? '1' : '1,2,3')).split(',').map((v) => {
    const n = Number(v.trim());
    if (v.trim() === '' || !Number.isInteger(n) || n < 0) throw new RangeError(`--seeds must be a comma-separated list of non-negative integers, got ${args.seeds}`);
    return n;
  });
  if (new Set(seeds).size !== seeds.length) throw new RangeError(`--seeds lists a seed twice: ${args.seeds}`);
  const mu = finiteNumber('mu', args.mu);
  const aggregation = args.aggregation;
  const schedule = args.schedule;
  if (!['cosine', 'constant'].includes(schedule)) throw new RangeError(`--schedule must be cosine or constant, got ${schedule}`);
  if (!['ckks', 'plaintext'].includes(aggregation)) throw new RangeError(`--aggregation must be ckks or plaintext, got ${aggregation}`);
  // Target epsilons of the DP rows, smallest first; 'none' runs no DP. The smoke run trains one, to stay seconds.
  const dpEpsilons = (() => {
    const text = (args['dp-epsilons'] ?? (quick ? '3' : '1,3,8')).trim();
    if (text === 'none') return [];
    const list = text.split(',').map((v) => {
      const n = Number(v.trim());
      if (v.trim() === '' || !Number.isFinite(n) || n <= 0) throw new RangeError(`--dp-epsilons must be 'none' or a comma-separated list of numbers > 0, got ${text}`);
      return n;
    });
    if (new Set(list).size !== list.length) throw new RangeError(`--dp-epsilons lists an epsilon twice: ${text}`);
    return list.sort((a, b) => a - b);
  })();
  const dpDelta = finiteNumber('dp-delta', args['dp-delta']);
  if (!(dpDelta > 0 && dpDelta < 1)) throw new RangeError(`--dp-delta must be in (0, 1), got ${args['dp-delta']}`);
  const dpClip = finiteNumber('dp-clip', args['dp-clip']);
  if (!(dpClip > 0)) throw new RangeError(`--dp-clip must be > 0, got ${args['dp-clip']}`);
  // The server rows, settings checked by the study schema itself. The defaults are the settings a small sweep on this
  // benchmark picked (see the README's serverOptimizer); the smoke run trains one.
  // The last three rows double the sites' local work per round (localEpochs 4, a study setting), which is what brings
  // the rounds down on this benchmark.
  const DEFAULT_SERVER_ROWS =
    'fedavgm:learningRate=1,beta1=0.3;fedadagrad:learningRate=0.03,beta1=0,tau=0.01;fedadam:learningRate=0.02,beta1=0,tau=0.01;fedyogi:learningRate=0.02,beta1=0,tau=0.01;' +
    'fedavg:localEpochs=4;fedadagrad:learningRate=0.03,beta1=0,tau=0.01,localEpochs=4;fedyogi:learningRate=0.02,beta1=0,tau=0.01,localEpochs=4';
  const serverRows = parseServerOptimizerRows(args['server-optimizers'] ?? (quick ? DEFAULT_SERVER_ROWS.split(';')[0] : DEFAULT_SERVER_ROWS)).map((row) => ({
    ...row,
    settings: row.settings === null ? null : shared.serverOptimizerSchema.parse(row.settings),
  }));
  const out = resolve(args.out ?? (quick ? join(tmpdir(), 'federa-learning-quick.json') : defaultOut));
  const plotOut = resolve(args.plot ?? out.replace(/\.json$/, '') + '.png');

  // Identical for every method; only where the data sits differs. Balanced class weights by default: the sites'
  // lesion shares run from 30% to 70% while the held-out set is 50/50, and unweighted each site pulls the output
  // bias towards its own prevalence, so accuracy at the 0.5 threshold swings with whichever prior won the last round
  // (AUC stays near 1 meanwhile). --class-weights none trains unweighted.
  const classWeights = args['class-weights'];
  if (!['balanced', 'none'].includes(classWeights)) throw new RangeError(`--class-weights must be balanced or none, got ${classWeights}`);
  const local = {
    epochs,
    batchSize: positiveInteger('batch-size', args['batch-size']),
    learningRate: finiteNumber('learning-rate', args['learning-rate']),
    optimizer: args.optimizer,
    ...(classWeights === 'balanced' ? { classWeights } : {}),
  };

  // The feature-based rows (bench/lib/learning-linear.mjs): same data, budget and schedule, their own base rate.
  // --only-linear runs just them and writes them into the existing results (which must come from the same setup).
  const linearArchitectures = args.linear.trim() === 'none' ? [] : args.linear.split(',').map((a) => a.trim());
  for (const a of linearArchitectures) {
    if (!shared.ARCHITECTURE_NAMES.includes(a) || !shared.isLinearArchitecture(a)) throw new RangeError(`--linear: ${a} is not a linear architecture`);
  }
  const onlyLinear = args['only-linear'];
  // Every image's contrast normalisation, as a study's preprocessing.normalise sets it (checked by the study schema).
  const normalise = args.normalise;
  const preprocessing = preprocessingWithNormalise(shared, normalise);
  const harmonise = args.harmonise;
  if (onlyLinear && linearArchitectures.length === 0) throw new RangeError('--only-linear needs --linear to name at least one architecture');
  const linearLearningRate = finiteNumber('linear-learning-rate', args['linear-learning-rate']);
  return {
    architecture: args.architecture, quick, rounds, epochs, imagesPerSite, holdoutImages, sites, seeds, mu, aggregation, schedule,
    dpEpsilons, dpDelta, dpClip, serverRows, out, plotOut, classWeights, local, linearArchitectures, onlyLinear,
    preprocessing, normalise, harmonise, linearLearningRate,
  };
}
