import { mkdir, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { KitError, readSiteKit, type SiteKit } from '@federa/shared';
import { SiteKitError } from '../client/index.js';
import { parseSiteConfig, sitePolicySchema, type SitePolicy } from '../config/index.js';
import { UsageError } from './governance.js';

type Out = (text: string) => void;

/** Where the agent's state goes when --state-dir is not given: beside the config, unless that is /etc (read-only under systemd). */
export const SYSTEM_STATE_DIR = '/var/lib/federa-site';

export function defaultStateDir(configPath: string): string {
  const folder = dirname(resolve(configPath));
  return folder === '/etc' || folder.startsWith('/etc/') ? SYSTEM_STATE_DIR : resolve(folder, 'state');
}

export interface SiteYamlOptions {
  kit: SiteKit;
  /** Absolute kit folder. */
  kitDir: string;
  /** host:port of the coordinator's gRPC service. */
  coordinator: string;
  serverName?: string;
  /** Absolute paths. */
  dataDir: string;
  labels?: string;
  stateDir: string;
  /** Instead of dataDir: the hospital's PACS over DICOMweb. */
  pacs?: PacsOptions;
}

export interface PacsOptions {
  url: string;
  username?: string;
  /** Absolute path of a file holding the password (never the password itself). */
  passwordFile?: string;
  modality?: string;
  studyInstanceUids: string[];
  seriesInstanceUids: string[];
  studyDateFrom?: string;
  studyDateTo?: string;
  /** The selection is the UIDs of the labels CSV (modality and dates may narrow it). */
  fromLabels: boolean;
}

/** The data block for a PACS source: the query says exactly which images the site trains on. */
function pacsLines(pacs: PacsOptions, labels: string): string[] {
  const query = [
    ...(pacs.fromLabels ? ['      fromLabels: true   # one search per UID in the labels CSV; unlabelled images are never retrieved'] : []),
    ...(pacs.modality ? [`      modality: ${q(pacs.modality)}`] : []),
    ...(pacs.studyInstanceUids.length > 0 ? [`      studyInstanceUids: [${pacs.studyInstanceUids.map(q).join(', ')}]`] : []),
    ...(pacs.seriesInstanceUids.length > 0 ? [`      seriesInstanceUids: [${pacs.seriesInstanceUids.map(q).join(', ')}]`] : []),
    ...(pacs.studyDateFrom ? [`      studyDateFrom: ${q(pacs.studyDateFrom)}   # YYYYMMDD`] : []),
    ...(pacs.studyDateTo ? [`      studyDateTo: ${q(pacs.studyDateTo)}`] : []),
  ];
  return [
    '  source:   # the hospital\'s PACS over DICOMweb; retrieved instances are cached in stateDir/pacs-cache',
    '    kind: dicomweb',
    `    url: ${q(pacs.url)}   # the DICOMweb root (QIDO-RS and WADO-RS below it)`,
    ...(pacs.username && pacs.passwordFile
      ? [`    auth: { basic: { username: ${q(pacs.username)}, passwordFile: ${q(pacs.passwordFile)} } }   # the password stays in that file (mode 600)`]
      : ['    # auth: { basic: { username: federa, passwordFile: /etc/federa/pacs-password } }   # or { bearerFile: ... }']),
    '    query:   # which images this site trains on: at least one filter, or fromLabels: true (the labels CSV\'s UIDs)',
    ...query,
    `  labels: ${q(labels)}   # CSV keyed by sop_instance_uid, series_instance_uid or study_instance_uid`,
  ];
}

/** Why each policy field is set as it is; a Record so a new policy field cannot be written without its comment. */
const POLICY_COMMENTS: Record<keyof SitePolicy, string> = {
  requireEncryption: 'refuse studies that aggregate in the clear (the coordinator would see this site\'s update)',
  minParticipants: 'refuse aggregates of fewer sites than this (the sum of one site\'s update is that update); at least 2',
  maxRounds: 'refuse studies with more rounds (each round releases an aggregate and metrics)',
  shareMetrics: 'none | aggregate (figures, no counts) | full (also sample counts and the dataset summary)',
  minCountPerBin: 'under shareMetrics full: every non-empty score-histogram bin holds at least this many images',
  minStatisticsCount: 'refuse a federated statistic computed on fewer images than this (only consortium totals are decrypted)',
  verifySum: 'multiparty: check each sum this site helps decrypt is the sum of the signed updates it lists (downloads their c1 parts)',
  privacyBudget: 'the most differential privacy one study may spend here (RDP accountant); with it, studies without DP are refused',
  autoApprove: 'true trains every study without `federa-site approve`: demos and local tests only',
};

/** What an optional policy setting looks like, for the commented-out line. */
const POLICY_EXAMPLES: Partial<Record<keyof SitePolicy, string>> = {
  privacyBudget: '{ epsilon: 8, delta: 0.00001 }',
};

/** JSON strings are valid YAML double-quoted scalars, so any path (spaces, colons, '#') is written safely. */
const q = (value: string): string => JSON.stringify(value);

/** A commented site.yaml: every path absolute, so it means the same whatever folder the agent starts in. */
export function renderSiteYaml(options: SiteYamlOptions): string {
  const { kit } = options;
  const policy = sitePolicySchema.parse({});
  // An optional setting with no default is written as a commented-out example.
  const policyLines = (Object.keys(POLICY_COMMENTS) as Array<keyof SitePolicy>).map((key) =>
    policy[key] === undefined ? `  # ${key}: ${POLICY_EXAMPLES[key] ?? '...'}   # ${POLICY_COMMENTS[key]}` : `  ${key}: ${String(policy[key])}   # ${POLICY_COMMENTS[key]}`,
  );
  const host = options.coordinator.slice(0, options.coordinator.lastIndexOf(':'));
  const serverName = options.serverName
    ? `  serverName: ${q(options.serverName)}   # the name the coordinator's certificate must carry`
    : isIP(host)
      ? '  # serverName: coordinator.example.org   # needed when the certificate does not name this IP: `federa-site doctor` says which'
      : '  # serverName: coordinator.example.org   # only when the certificate names another host than the address';
  // Written out, though folder is the default, so the file shows where a PACS (dicomweb) source would go instead.
  const source = '  source: { kind: folder }   # folder: the files under dir | dicomweb: the hospital\'s PACS (see the README)';
  const data = options.pacs
    ? pacsLines(options.pacs, options.labels ?? '')
    : options.labels
    ? [
        `  dir: ${q(options.dataDir)}   # folder source: DICOM, PNG and JPEG files under this folder`,
        `  labels: ${q(options.labels)}   # CSV keyed by file (relative to dir), sop_instance_uid, series_instance_uid or study_instance_uid`,
      ]
    : [`  dir: ${q(options.dataDir)}   # folder source: DICOM, PNG and JPEG files, one folder per class`, '  layout: folders'];
  return [
    `# Federa site agent configuration, written by \`federa-site init\` on ${new Date().toISOString().slice(0, 10)}.`,
    `# Site ${kit.siteId} of consortium "${kit.manifest.consortium}". Check it with: federa-site doctor --config <this file>`,
    '# Relative paths would be taken relative to this file\'s folder; init writes absolute ones.',
    'site:',
    `  id: ${kit.siteId}   # must match the kit's certificate`,
    'coordinator:',
    `  address: ${q(options.coordinator)}   # host:port of the coordinator's gRPC service`,
    serverName,
    `  kit: ${q(options.kitDir)}   # CA, site certificate and key, CKKS secret key (certificate serial ${kit.manifest.certificate.serialNumber})`,
    'data:',
    ...(options.pacs ? [] : [source]),
    ...data,
    '  validationFraction: 0.2   # share held out by patient for validation, never trained on',
    'training:',
    '  backend: auto   # auto | tensorflow-gpu | webgpu | tensorflow | wasm | cpu (auto: the first that works, in that order)',
    '  threads: auto   # auto | 1..256: threads that train data-parallel on wasm and cpu (auto: every core)',
    `stateDir: ${q(options.stateDir)}   # round state, every update sent, approvals, privacy ledger: must be writable`,
    'policy:   # the hospital\'s rules; these are the safe defaults',
    ...policyLines,
    '',
  ].join('\n');
}

/** UIDs given as repeated options, each possibly a comma-separated list (UIDs hold no commas). */
const uidList = (values: string[] | undefined): string[] => (values ?? []).flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v !== '');

/** The --pacs options, checked together: a PACS source needs a query and labels keyed by UID, and no folder. */
function pacsOptions(values: {
  pacs?: string;
  'pacs-user'?: string;
  'pacs-password-file'?: string;
  modality?: string;
  study?: string[];
  series?: string[];
  'from-labels'?: boolean;
  'studies-from'?: string;
  'studies-to'?: string;
  'data-dir'?: string;
  labels?: string;
}): PacsOptions | undefined {
  const pacsOnly = ['pacs-user', 'pacs-password-file', 'modality', 'study', 'series', 'from-labels', 'studies-from', 'studies-to'] as const;
  if (!values.pacs) {
    const stray = pacsOnly.filter((k) => values[k] !== undefined && values[k] !== false);
    if (stray.length > 0) throw new UsageError(`--${stray.join(', --')} only go with --pacs <DICOMweb URL>`);
    return undefined;
  }
  if (values['data-dir'] !== undefined) throw new UsageError('--pacs and --data-dir exclude each other: the images come from the PACS (cached in the state folder)');
  if (!values.labels) throw new UsageError('--pacs needs --labels <CSV keyed by sop_instance_uid, series_instance_uid or study_instance_uid>');
  if ((values['pacs-user'] === undefined) !== (values['pacs-password-file'] === undefined)) {
    throw new UsageError('--pacs-user and --pacs-password-file go together (a file holding the password, mode 600)');
  }
  const studies = uidList(values.study);
  const series = uidList(values.series);
  const fromLabels = values['from-labels'] === true;
  if (fromLabels && (studies.length > 0 || series.length > 0)) {
    throw new UsageError('--from-labels selects the UIDs in --labels: list studies or series there instead of --study/--series');
  }
  if (!fromLabels && !values.modality && studies.length === 0 && series.length === 0 && !values['studies-from'] && !values['studies-to']) {
    throw new UsageError('--pacs needs a selection: --from-labels, --modality, --study UID, --series UID (repeatable or comma-separated) or --studies-from/--studies-to YYYYMMDD');
  }
  return {
    url: values.pacs,
    ...(values['pacs-user'] ? { username: values['pacs-user'] } : {}),
    ...(values['pacs-password-file'] ? { passwordFile: resolve(values['pacs-password-file']) } : {}),
    ...(values.modality ? { modality: values.modality } : {}),
    studyInstanceUids: studies,
    seriesInstanceUids: series,
    fromLabels,
    ...(values['studies-from'] ? { studyDateFrom: values['studies-from'] } : {}),
    ...(values['studies-to'] ? { studyDateTo: values['studies-to'] } : {}),
  };
}

/** `federa-site init`: a site.yaml from the site kit, checked with the same loader the agent uses before it is written. */
export async function initCommand(argv: string[], out: Out): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      kit: { type: 'string' },
      coordinator: { type: 'string' },
      'server-name': { type: 'string' },
      out: { type: 'string', short: 'o', default: 'site.yaml' },
      'data-dir': { type: 'string' },
      labels: { type: 'string' },
      'state-dir': { type: 'string' },
      pacs: { type: 'string' },
      'pacs-user': { type: 'string' },
      'pacs-password-file': { type: 'string' },
      modality: { type: 'string' },
      study: { type: 'string', multiple: true },
      series: { type: 'string', multiple: true },
      'from-labels': { type: 'boolean' },
      'studies-from': { type: 'string' },
      'studies-to': { type: 'string' },
      force: { type: 'boolean', default: false },
    },
  });
  const pacs = pacsOptions(values);
  if (positionals.length > 0) throw new UsageError(`init takes no arguments, got ${positionals.join(' ')}`);
  if (!values.kit) throw new UsageError('init needs --kit <folder>: this site\'s kit from the consortium operator (`federa provision`)');
  // The kit holds certificates and keys, not the coordinator's address: the operator tells each site where it runs.
  if (!values.coordinator) throw new UsageError('init needs --coordinator <host:port>: the coordinator\'s gRPC address, from the consortium operator');
  const kitDir = resolve(values.kit);
  let kit: SiteKit;
  try {
    kit = await readSiteKit(kitDir);
  } catch (error) {
    if (error instanceof KitError) throw new SiteKitError(`${error.message}; --kit must be the unpacked kit folder the consortium operator sent this site`);
    throw error;
  }
  const outPath = resolve(values.out);
  const defaultData = values['data-dir'] === undefined && !pacs;
  const text = renderSiteYaml({
    kit,
    kitDir,
    coordinator: values.coordinator,
    ...(values['server-name'] ? { serverName: values['server-name'] } : {}),
    dataDir: resolve(values['data-dir'] ?? resolve(dirname(outPath), 'data')),
    ...(pacs ? { pacs } : {}),
    ...(values.labels ? { labels: resolve(values.labels) } : {}),
    stateDir: resolve(values['state-dir'] ?? defaultStateDir(outPath)),
  });
  // The agent's own loader, before anything is written: init never leaves a site.yaml the agent would refuse.
  const config = parseSiteConfig(parseYaml(text), dirname(outPath), 'the generated site.yaml (from the options given to init)');
  // A fresh host has no /etc/federa yet; the file holds no secret (credentials stay in their own files).
  await mkdir(dirname(outPath), { recursive: true, mode: 0o755 }).catch((error: unknown) => {
    throw new UsageError(`cannot write ${outPath}: cannot create its folder (${(error as Error).message}); choose a writable --out`);
  });
  try {
    await writeFile(outPath, text, { flag: values.force ? 'w' : 'wx', mode: 0o644 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new UsageError(`${outPath} already exists: give --force to overwrite it, or --out another file`);
    }
    throw new UsageError(`cannot write ${outPath}: ${(error as Error).message}; choose a writable --out`);
  }
  out(
    [
      `wrote ${outPath} for site ${kit.siteId} of consortium "${kit.manifest.consortium}"`,
      pacs
        ? `  data: the PACS at ${pacs.url}, ${pacs.fromLabels ? 'selected and labelled' : 'labelled'} by ${config.data.labels}, cached in ${config.data.dir}`
        : `  data: ${config.data.dir}${config.data.labels ? ` labelled by ${config.data.labels}` : ' (one folder per class)'}`,
      `  state folder: ${config.stateDir}`,
      ...(defaultData ? ['  data.dir was not given (--data-dir): edit it in the file before the first start'] : []),
      `next: federa-site doctor --config ${outPath}`,
      '',
    ].join('\n'),
  );
  return 0;
}
