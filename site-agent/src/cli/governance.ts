import { userInfo, hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { readFile } from 'node:fs/promises';
import { LEDGER_KINDS, describeStudyPrivacy, formatLedgerVerification, type LedgerKind, type StudyDefinition } from '@federa/shared';
import { FederationClient, siteTransport } from '../client/index.js';
import { loadSiteConfig, type SiteConfig } from '../config/index.js';
import { filterLedger, formatLedger, ledgerPath, readLedger, verifyLedger } from '../ledger/index.js';
import { studyRefusal, StudyDecisions, type KnownStudy } from '../policy/index.js';
import { studyBudgetRefusal } from '../privacy/index.js';

/** The hospital's side of governance: review and decide on studies, and read the privacy ledger. */
export class UsageError extends Error {
  /** The usage text to print with the message: a subcommand's own, or the CLI's when absent. */
  constructor(
    message: string,
    readonly usage?: string,
  ) {
    super(message);
  }
}

type Out = (text: string) => void;

/** `federa-site studies`: what the coordinator offers this site, and what the hospital decided. */
export async function studiesCommand(argv: string[], out: Out): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      config: { type: 'string', short: 'c' },
      json: { type: 'boolean', default: false },
      offline: { type: 'boolean', default: false },
      show: { type: 'string' },
    },
  });
  const config = await requireConfig(values.config, 'studies');
  const decisions = new StudyDecisions(config.stateDir);
  let fetchProblem: string | null = null;
  if (!values.offline) {
    try {
      await fetchOffers(config, decisions);
    } catch (error) {
      fetchProblem = `could not fetch the coordinator's list (${(error as Error).message}); showing the studies this site already knows`;
    }
  }
  const known = await decisions.known();
  if (values.show) {
    const wanted = values.show.toLowerCase();
    const match = known.filter((s) => s.hash.startsWith(wanted));
    if (match.length !== 1) throw new UsageError(match.length === 0 ? `no known study has hash ${values.show}` : `hash prefix ${values.show} matches ${match.length} studies`);
    out(`${JSON.stringify(match[0]!.definition, null, 2)}\n`);
    return 0;
  }
  if (values.json) {
    out(`${JSON.stringify({ studies: known.map((s) => ({ ...viewOf(s, config), definition: s.definition })), warning: fetchProblem }, null, 2)}\n`);
    return 0;
  }
  if (fetchProblem) out(`warning: ${fetchProblem}\n`);
  if (known.length === 0) {
    out('no study has been offered to this site yet\n');
    return 0;
  }
  for (const study of known) out(formatStudy(viewOf(study, config)));
  out('\nreview a definition with `federa-site studies --show HASH`; decide with `federa-site approve HASH` or `federa-site reject HASH`\n');
  return 0;
}

/** `federa-site approve|reject HASH`: the hospital's decision, recorded at the site. */
export async function decideCommand(decision: 'approved' | 'rejected', argv: string[], out: Out): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: { config: { type: 'string', short: 'c' }, note: { type: 'string' }, study: { type: 'string' }, json: { type: 'boolean', default: false } },
  });
  const verb = decision === 'approved' ? 'approve' : 'reject';
  if (positionals.length !== 1) throw new UsageError(`${verb} needs exactly one study HASH (from \`federa-site studies\`)`);
  const config = await requireConfig(values.config, verb);
  const decisions = new StudyDecisions(config.stateDir);
  // Fetch the coordinator's list first: the study may be new (a hash read off the dashboard), or a new run of a
  // definition decided before, which needs its own decision. Unreachable, the decision is on the studies seen so far.
  await fetchOffers(config, decisions).catch((error: unknown) =>
    process.stderr.write(`note: could not reach the coordinator (${(error as Error).message.split('\n')[0]}); deciding among the studies this site has seen\n`),
  );
  const by = `${userInfo().username}@${hostname()}`;
  const study = await decisions.decide(positionals[0]!, decision, by, values.note, values.study);
  const view = viewOf(study, config);
  if (values.json) {
    out(`${JSON.stringify(view, null, 2)}\n`);
    return 0;
  }
  out(`${decision} study ${study.studyId} "${study.name}", definition ${study.hash}, as ${by}\n`);
  if (decision === 'approved' && view.policy !== 'ok') out(`note: the site policy ${view.policy}\n`);
  return 0;
}

/** `federa-site ledger verify|show`. */
export async function ledgerCommand(argv: string[], out: Out): Promise<number> {
  const [action, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    strict: true,
    options: {
      config: { type: 'string', short: 'c' },
      ledger: { type: 'string' },
      ca: { type: 'string' },
      json: { type: 'boolean', default: false },
      study: { type: 'string' },
      kind: { type: 'string' },
      since: { type: 'string' },
    },
  });
  let path = values.ledger;
  let caPem: string | undefined = values.ca ? await readFile(values.ca, 'utf8') : undefined;
  if (!path) {
    const config = await requireConfig(values.config, `ledger ${action ?? ''}`.trim());
    path = ledgerPath(config.stateDir);
    if (!caPem && config.coordinator.kit) caPem = await readFile(`${config.coordinator.kit}/ca.pem`, 'utf8').catch(() => undefined);
  }
  if (action === 'verify') {
    const verification = await verifyLedger(path, caPem ? { caPem } : {});
    out(values.json ? `${JSON.stringify(verification, null, 2)}\n` : `${formatLedgerVerification(verification)}\n`);
    return verification.ok ? 0 : 1;
  }
  if (action === 'show') {
    if (values.kind && !(LEDGER_KINDS as readonly string[]).includes(values.kind)) {
      throw new UsageError(`--kind must be one of ${LEDGER_KINDS.join(', ')}`);
    }
    const since = values.since ? new Date(values.since) : undefined;
    if (since && Number.isNaN(since.getTime())) throw new UsageError(`--since must be a date or ISO time, got "${values.since}"`);
    const filter = {
      ...(values.study ? { studyId: values.study } : {}),
      ...(values.kind ? { kind: values.kind as LedgerKind } : {}),
      ...(since ? { since } : {}),
    };
    const { entries, problems } = await readLedger(path);
    if (values.json) out(`${JSON.stringify({ entries: filterLedger(entries, filter), problems }, null, 2)}\n`);
    else {
      out(`${formatLedger(entries, filter)}\n`);
      if (problems.length > 0) out(`${problems.length} unreadable lines; run \`federa-site ledger verify\`\n`);
    }
    return 0;
  }
  throw new UsageError(`ledger needs "verify" or "show", got ${action === undefined ? 'nothing' : `"${action}"`}`);
}

async function requireConfig(path: string | undefined, command: string): Promise<SiteConfig> {
  if (!path) throw new UsageError(`${command} needs --config <site.yaml>`);
  return loadSiteConfig(path);
}

async function fetchOffers(config: SiteConfig, decisions: StudyDecisions): Promise<void> {
  const transport = await siteTransport(config);
  const client = new FederationClient({
    address: config.coordinator.address,
    credentials: transport.credentials,
    ...(transport.declaredSiteId ? { declaredSiteId: transport.declaredSiteId } : {}),
    ...(config.coordinator.serverName ? { serverName: config.coordinator.serverName } : {}),
  });
  try {
    const offered = await client.listStudies(10_000);
    for (const study of offered) {
      await decisions.remember({ hash: study.studyHash, studyId: study.studyId, name: study.name, owner: study.owner, definitionJson: study.studyDefinitionJson, status: study.status });
    }
  } finally {
    client.close();
  }
}

interface StudyView {
  hash: string;
  studyId: string;
  name: string;
  owner: string;
  model: string;
  preprocessing: string;
  aggregation: string;
  rounds: number;
  minSites: number;
  /** The study's differential privacy in words. */
  privacy: string;
  /** What the study computes besides (or instead of) training: its statistics round, in words; '-' without one. */
  statistics: string;
  decision: string;
  /** "ok", or what the site policy would refuse. */
  policy: string;
}

function viewOf(study: KnownStudy, config: SiteConfig): StudyView {
  const def: StudyDefinition = study.definition;
  const refusal = studyRefusal(def, config.policy) ?? studyBudgetRefusal(def, config.policy);
  const p = def.preprocessing;
  return {
    hash: study.hash,
    studyId: study.studyId,
    name: study.name,
    owner: study.owner || '-',
    model: `${def.model.architecture} ${def.model.inputSize}x${def.model.inputSize}x${def.model.channels}, ${def.model.classes} classes [${def.classNames.join(', ')}]`,
    preprocessing: `window ${typeof p.window === 'string' ? p.window : `${p.window.center}/${p.window.width}`}, ${p.resize}, normalise ${typeof p.normalise === 'string' ? p.normalise : 'clahe'}`,
    aggregation: def.aggregation,
    rounds: def.rounds,
    minSites: def.minSites,
    privacy: privacyWords(def),
    statistics: statisticsWords(def),
    decision: study.decision ? `${study.decision.decision} ${study.decision.at} by ${study.decision.by}` : 'undecided',
    policy: refusal ? `would refuse: ${refusal.message}` : 'ok',
  };
}

function formatStudy(view: StudyView): string {
  return [
    `${view.hash}  ${view.name}  (study ${view.studyId}, owner ${view.owner})`,
    `  model:         ${view.model}`,
    `  preprocessing: ${view.preprocessing}`,
    `  aggregation:   ${view.aggregation}, ${view.rounds} rounds, at least ${view.minSites} sites`,
    `  privacy:       ${view.privacy}`,
    `  statistics:    ${view.statistics}`,
    `  decision:      ${view.decision}`,
    `  site policy:   ${view.policy}`,
    '',
  ].join('\n');
}

function statisticsWords(def: StudyDefinition): string {
  const stats = def.statistics;
  if (!stats) return '-';
  const what = [
    ...(stats.intensity ? [`intensity per channel (${stats.intensity.bins} bins over [${stats.intensity.min}, ${stats.intensity.max}])`] : []),
    ...(stats.features ?? []).map((f) => f.name),
    ...(stats.modelFeatures ? ['the linear model\'s input features (histograms, mean and spread of each)'] : []),
  ].join(', ');
  const then = [stats.harmonise ? 'harmonised onto the consortium' : '', stats.zScore ? 'z-scored with its statistics' : ''].filter(Boolean).join(' and ');
  const standardised = stats.modelFeatures ? ', the model\'s features standardised with the consortium\'s' : '';
  return `round 1 sends ${what} of all images, encrypted (only consortium totals are decrypted)${def.rounds > 1 ? `; training rounds then use images ${then || 'as preprocessed'}${standardised}` : ''}`;
}

function privacyWords(def: StudyDefinition): string {
  const words = describeStudyPrivacy(def.privacy);
  return words === 'none' ? 'no differential privacy' : `${words}; \`federa-site privacy\` shows the spend`;
}
