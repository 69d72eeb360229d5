import type { ChildProcess } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify as toYaml } from 'yaml';
import {
  applyAggregate,
  bytesToFloat32,
  CkksContext,
  readSiteKit,
  sha256Hex,
  untagVector,
  type ClassificationMetrics,
  type DatasetSummary,
  type EvaluationCounts,
  type StudyDefinitionInput,
} from '@federa/shared';
import { generateConsortium, type ConsortiumSummary } from '@federa/site-agent';
import {
  COORDINATOR_MAIN,
  issueToken,
  launch,
  offlineAdminToken,
  provisionKits,
  SITE_MAIN,
  terminate,
  waitForReadyFile,
  type ApiRole,
} from './processes.js';

/** What goes into every site's `policy:` block (see site-agent/src/config: sitePolicySchema). */
export interface SitePolicyInput {
  requireEncryption?: boolean;
  minParticipants?: number;
  maxRounds?: number;
  shareMetrics?: 'none' | 'aggregate' | 'full';
  minCountPerBin?: number;
  verifySum?: boolean;
  privacyBudget?: { epsilon: number; delta: number };
  autoApprove?: boolean;
}

export type { ApiRole };

export interface LocalConsortiumOptions {
  workDir: string;
  sites: number;
  imagesPerSite: number;
  holdoutImages: number;
  seed: number;
  /** PostgreSQL for the coordinator; the embedded PGlite database otherwise. */
  databaseUrl?: string;
  /** The coordinator's REST port (dashboard and API); 0 or absent: any free port. */
  httpPort?: number;
  /** Extra environment for every process (e.g. FEDERA_LOG_LEVEL). */
  env?: NodeJS.ProcessEnv;
  /** 'mtls' (default) provisions kits with `federa provision` and runs every connection over mutual TLS. */
  transport?: 'mtls' | 'insecure';
  /** Provisions the consortium's one shared CKKS key too (`--shared-key`), for studies with aggregation ckks. */
  sharedKey?: boolean;
  /**
   * Every site's policy. By default the secure defaults, with minParticipants lowered to the number of sites when
   * the consortium has fewer than three (it cannot go below 2).
   */
  policy?: SitePolicyInput;
}

export interface SiteProcess {
  id: string;
  configPath: string;
  stateDir: string;
  process: ChildProcess;
}

/** One round's federated evaluation (REST): each contributing site's figures on its held-out data, and overall. */
export interface RoundEvaluationView {
  requestedSites: string[];
  pendingSites: string[];
  refusedSites: Array<{ siteId: string; reason: string }>;
  sites: Array<
    Omit<ClassificationMetrics, 'samples'> & {
      siteId: string;
      shared: 'counts' | 'figures';
      samples: number | null;
      confusion: number[][] | null;
      counts?: EvaluationCounts;
    }
  >;
  overall: (Omit<ClassificationMetrics, 'samples'> & { sites: number; method: string; samples: number | null; confusion: number[][] | null }) | null;
}

/** A site as GET /sites shows it, with the counts-only summary of the data it last loaded. */
export interface SiteView {
  id: string;
  connected: boolean;
  dataset: (DatasetSummary & { studyId: string; reportedAt: string }) | null;
}

/** The REST view of a study, as far as the demo and tests read it. */
export interface StudyStatusView {
  id: string;
  status: string;
  specHash: string;
  owner: string | null;
  error: string | null;
  currentRound: number;
  totalRounds: number;
  initialModel: { sha256: string; kind: string } | null;
  rounds: Array<{
    number: number;
    status: string;
    assignedSites: string[];
    reportedSites: string[];
    participants: number;
    model: { sha256: string; kind: string; parameterCount: number } | null;
    metrics: Array<{ siteId: string; kind: string; loss: number; accuracy: number; samples: number | null; privacyEpsilon?: number | null; privacyDelta?: number | null }>;
    failures: Array<{ siteId: string; reason: string; message: string }>;
    refusals: RefusalView[];
    evaluation: RoundEvaluationView | null;
  }>;
  refusals: RefusalView[];
}

export interface RefusalView {
  siteId: string;
  round: number;
  task: string;
  reason: string;
  message: string;
  studyHash: string;
}

/**
 * A whole consortium on one machine: synthetic hospital data, a coordinator process and one site-agent
 * process per hospital, talking gRPC over loopback. Used by `npm run demo` and the end-to-end tests.
 */
export class LocalConsortium {
  private constructor(
    readonly options: LocalConsortiumOptions,
    readonly data: ConsortiumSummary,
    readonly coordinator: ChildProcess,
    readonly httpPort: number,
    readonly grpcPort: number,
    readonly sites: SiteProcess[],
    /** REST tokens: the admin one from `federa token create`, the others issued by it over REST. */
    readonly tokens: Record<ApiRole, string>,
  ) {}

  static async start(options: LocalConsortiumOptions): Promise<LocalConsortium> {
    const logs = join(options.workDir, 'logs');
    await mkdir(logs, { recursive: true });
    const data = await generateConsortium({
      outDir: join(options.workDir, 'data'),
      sites: options.sites,
      imagesPerSite: options.imagesPerSite,
      holdoutImages: options.holdoutImages,
      seed: options.seed,
    });
    const mtls = (options.transport ?? 'mtls') === 'mtls';
    const kitsDir = join(options.workDir, 'kits');
    if (mtls) await provisionKits(options.workDir, kitsDir, data.sites.map((s) => s.id), join(logs, 'provision.log'), options.sharedKey ?? false);
    // The first admin token is made offline, into the database the coordinator is about to open.
    const adminToken = await offlineAdminToken(join(options.workDir, 'coordinator'), options.databaseUrl, join(logs, 'token.log'));
    const readyFile = join(options.workDir, 'coordinator.ready.json');
    const args = [
      COORDINATOR_MAIN,
      ...(mtls ? ['--kit', join(kitsDir, 'coordinator')] : ['--insecure']),
      '--http-port',
      String(options.httpPort ?? 0),
      '--grpc-port',
      '0',
      '--data-dir',
      join(options.workDir, 'coordinator'),
      '--ready-file',
      readyFile,
    ];
    if (options.databaseUrl) args.push('--database-url', options.databaseUrl);
    const coordinator = launch('coordinator', args, join(logs, 'coordinator.log'), options.env);
    const ready = await waitForReadyFile(readyFile, coordinator, join(logs, 'coordinator.log'));
    const tokens: Record<ApiRole, string> = {
      admin: adminToken,
      researcher: await issueToken(ready.httpPort, adminToken, 'researcher', 'demo researcher'),
      auditor: await issueToken(ready.httpPort, adminToken, 'auditor', 'demo auditor'),
    };
    const policy: SitePolicyInput = {
      ...(data.sites.length < 3 ? { minParticipants: Math.max(2, data.sites.length) } : {}),
      ...options.policy,
    };

    const sites: SiteProcess[] = [];
    for (const site of data.sites) {
      const siteDir = join(options.workDir, 'sites', site.id);
      await mkdir(siteDir, { recursive: true });
      const configPath = join(siteDir, 'site.yaml');
      const stateDir = join(siteDir, 'state');
      await writeFile(
        configPath,
        toYaml({
          site: { id: site.id },
          coordinator: mtls
            ? { address: `127.0.0.1:${ready.grpcPort}`, serverName: 'localhost', kit: join(kitsDir, 'sites', site.id) }
            : { address: `127.0.0.1:${ready.grpcPort}`, insecure: true },
          data: { dir: site.dir, labels: site.labelsCsv, validationFraction: 0.2 },
          // The sites share this machine's cores: each trains on its share rather than all of them contending.
          training: { backend: 'auto', threads: Math.max(1, Math.floor(availableParallelism() / data.sites.length)) },
          stateDir,
          policy,
        }),
      );
      const child = launch(site.id, [SITE_MAIN, 'start', '--config', configPath], join(logs, `${site.id}.log`), options.env);
      sites.push({ id: site.id, configPath, stateDir, process: child });
    }
    const consortium = new LocalConsortium(options, data, coordinator, ready.httpPort, ready.grpcPort, sites, tokens);
    await consortium.waitForSites(sites.map((s) => s.id));
    return consortium;
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${this.httpPort}/api/v1`;
  }

  async createStudy(definition: StudyDefinitionInput): Promise<StudyStatusView> {
    return this.request('POST', '/studies', definition);
  }

  async startStudy(id: string): Promise<StudyStatusView> {
    return this.request('POST', `/studies/${id}/start`);
  }

  /** Starts a study and waits until it has stopped running (completed, failed or stopped); its final status. */
  async runStudy(id: string, timeoutMs = 120_000): Promise<StudyStatusView> {
    await this.startStudy(id);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const study = await this.study(id);
      if (study.status !== 'running') return study;
      if (Date.now() > deadline) throw new Error(`study ${id} still running after ${timeoutMs / 1000} s`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /**
   * Every hospital approves the study, the way its IT does: `federa-site approve HASH --config site.yaml` (which
   * fetches the coordinator's list of offered studies over mutual TLS and records the decision at the site).
   */
  async approve(studyHash: string, siteIds: readonly string[] = this.sites.map((s) => s.id)): Promise<void> {
    for (const site of this.sites.filter((s) => siteIds.includes(s.id))) {
      const logPath = join(this.options.workDir, 'logs', `${site.id}.approve.log`);
      const child = launch(`${site.id} approve`, [SITE_MAIN, 'approve', studyHash, '--config', site.configPath, '--note', 'approved for the demo'], logPath, this.options.env);
      const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
      if (code !== 0) {
        const tail = (await readFile(logPath, 'utf8').catch(() => '')).split('\n').slice(-10).join('\n');
        throw new Error(`federa-site approve failed at ${site.id} with code ${code}:\n${tail}`);
      }
    }
  }

  /** The signed audit export (auditor token), written to `path`. */
  async exportAudit(path: string): Promise<void> {
    const response = await fetch(`${this.baseUrl}/audit/export`, { headers: { authorization: `Bearer ${this.tokens.auditor}` } });
    if (!response.ok) throw new Error(`GET /audit/export: ${response.status} ${await response.text()}`);
    await writeFile(path, await response.text());
  }

  async study(id: string): Promise<StudyStatusView> {
    return this.request('GET', `/studies/${id}`);
  }

  async siteViews(): Promise<SiteView[]> {
    return this.request('GET', '/sites');
  }

  /** Every round's federated evaluation, with the counts each site reported. */
  async evaluation(id: string): Promise<{ classNames: string[]; rounds: Array<{ number: number } & RoundEvaluationView> }> {
    return this.request('GET', `/studies/${id}/evaluation`);
  }

  /**
   * The federated evaluation of `round` once every site asked has answered, or as far as it got within `timeoutMs`:
   * the study never waits for evaluations, so whoever reads them does.
   */
  async settledEvaluation(id: string, round: number, timeoutMs: number): Promise<RoundEvaluationView | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.assertAlive();
      const evaluation = (await this.study(id)).rounds.find((r) => r.number === round)?.evaluation ?? null;
      if ((evaluation && evaluation.pendingSites.length === 0) || Date.now() > deadline) return evaluation;
      await sleep(250);
    }
  }

  /** The artifact a round published (REST), verified against its SHA-256 header. */
  async artifact(id: string, round: number): Promise<{ kind: string; bytes: Uint8Array }> {
    const response = await fetch(`${this.baseUrl}/studies/${id}/models/${round}`, { headers: { authorization: `Bearer ${this.tokens.researcher}` } });
    if (!response.ok) throw new Error(`GET model ${round} of ${id}: ${response.status} ${await response.text()}`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    const expected = response.headers.get('x-federa-sha256');
    if (sha256Hex(bytes) !== expected) throw new Error(`model ${round} of study ${id} does not match its hash header`);
    return { kind: response.headers.get('x-federa-model-kind') ?? 'weights', bytes };
  }

  /**
   * The global weights after `round` (0 = initial). For an encrypted study the coordinator cannot produce them:
   * a single-key (ckks) aggregate is decrypted here with the first site's CKKS secret key, as any key-holding site
   * does; a multiparty one only the round's sites can decrypt, so this reads what one of them decrypted (its model
   * cache), waiting for it to evaluate the round.
   */
  async globalWeights(id: string, round: number): Promise<Float32Array> {
    const key = `${id}/${round}`;
    const cached = this.weightCache.get(key);
    if (cached) return cached;
    const { kind, bytes } = await this.artifact(id, round);
    let weights: Float32Array;
    if (kind === 'weights') {
      weights = bytesToFloat32(bytes, `model ${round}`);
    } else if (kind === 'multiparty_aggregate' || (await this.request<{ definition?: { serverOptimizer?: unknown } }>('GET', `/studies/${id}`)).definition?.serverOptimizer !== undefined) {
      // A server optimizer's step needs its state, which only the sites hold: read the model a site computed.
      weights = await this.decryptedAtSite(id, round);
    } else {
      const previous = await this.globalWeights(id, round - 1);
      const { context, secretKey } = await this.keyHolder();
      // Parameters, the weight, one contribution slot per cohort site; each ciphertext ends with contribution tags.
      const cohort = (await this.study(id)).rounds.find((r) => r.number === round)?.assignedSites.length ?? 0;
      const sum = untagVector(context.decryptVector(bytes, secretKey), previous.length + 1 + cohort, context.valuesPerCiphertext);
      weights = applyAggregate(previous, sum, cohort);
    }
    this.weightCache.set(key, weights);
    return weights;
  }

  private async decryptedAtSite(id: string, round: number): Promise<Float32Array> {
    const members = (await this.study(id)).rounds.find((r) => r.number === round)?.assignedSites ?? [];
    const paths = this.sites.filter((s) => members.includes(s.id)).map((s) => join(s.stateDir, 'models', id, `${round}.f32`));
    for (const started = Date.now(); Date.now() - started < 120_000; await new Promise((r) => setTimeout(r, 250))) {
      for (const path of paths) {
        const bytes = await readFile(path).catch(() => null);
        if (bytes) return bytesToFloat32(bytes, `model ${round} decrypted at a site`);
      }
    }
    throw new Error(`no site of round ${round} of study ${id} decrypted its model within 120 s`);
  }

  private readonly weightCache = new Map<string, Float32Array>();
  private ckks: Promise<{ context: CkksContext; secretKey: Uint8Array }> | undefined;

  private keyHolder(): Promise<{ context: CkksContext; secretKey: Uint8Array }> {
    this.ckks ??= (async () => {
      const first = this.sites[0];
      if (!first || (this.options.transport ?? 'mtls') !== 'mtls') throw new Error('decrypting needs a site kit (mtls transport)');
      const kit = await readSiteKit(join(this.options.workDir, 'kits', 'sites', first.id));
      const secretKey = kit.ckksSecretKey;
      if (!secretKey) throw new Error('a ckks study needs kits with the shared key: start the consortium with sharedKey: true');
      return { context: await CkksContext.fromKey(secretKey), secretKey };
    })();
    return this.ckks;
  }

  /** Polls until the study finishes; calls `onRound` once per newly closed round, in order. */
  async follow(
    id: string,
    onRound: (round: StudyStatusView['rounds'][number], study: StudyStatusView) => Promise<void> | void,
    timeoutMs: number,
  ): Promise<StudyStatusView> {
    const deadline = Date.now() + timeoutMs;
    let reported = 0;
    for (;;) {
      this.assertAlive();
      const study = await this.study(id);
      for (const round of study.rounds) {
        if (round.number > reported && round.status === 'closed') {
          await onRound(round, study);
          reported = round.number;
        }
      }
      if (study.status === 'completed' && reported >= study.totalRounds) return study;
      if (study.status === 'failed') throw new Error(`study ${id} failed: ${study.error}`);
      if (Date.now() > deadline) throw new Error(`study ${id} did not finish within ${timeoutMs} ms (now round ${study.currentRound}); logs in ${join(this.options.workDir, 'logs')}`);
      await sleep(250);
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.sites.map((s) => terminate(s.process)));
    await terminate(this.coordinator);
    const ckks = this.ckks;
    this.ckks = undefined;
    if (ckks) (await ckks.catch(() => undefined))?.context.dispose();
  }

  private async waitForSites(ids: string[]): Promise<void> {
    const deadline = Date.now() + 120_000;
    for (;;) {
      this.assertAlive();
      const sites = await this.request<Array<{ id: string; connected: boolean }>>('GET', '/sites');
      if (ids.every((id) => sites.some((s) => s.id === id && s.connected))) return;
      if (Date.now() > deadline) throw new Error(`sites did not connect within 120 s; logs in ${join(this.options.workDir, 'logs')}`);
      await sleep(200);
    }
  }

  private assertAlive(): void {
    for (const [name, child] of [['coordinator', this.coordinator] as const, ...this.sites.map((s) => [s.id, s.process] as const)]) {
      if (child.exitCode !== null) {
        throw new Error(`${name} exited with code ${child.exitCode}; see ${join(this.options.workDir, 'logs', `${name}.log`)}`);
      }
    }
  }

  /** A REST call with the token of `role` (a researcher's unless said otherwise). */
  async request<T>(method: string, path: string, body?: unknown, role: ApiRole = 'researcher'): Promise<T> {
    const response = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${this.tokens[role]}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? null : JSON.stringify(body),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
    return JSON.parse(text) as T;
  }
}
