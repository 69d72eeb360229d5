import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CkksContext,
  contributionTagKey,
  parameterCount,
  readSiteKit,
  studyDefinitionSchema,
  tagProblems,
  untagVector,
} from '@federa/shared';
import { generateConsortiumCkksKeys, provisionConsortium } from '@federa/coordinator';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const COORDINATOR_MAIN = join(root, 'coordinator/dist/main.js');
const FEDERA_CLI = join(root, 'coordinator/dist/cli/federa.js');
const SIM_MAIN = join(root, 'site-agent/dist/sim/main.js');

/** A small model: the faults are the subject, not the arithmetic. */
export const CHAOS_MODEL = { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 3 } as const;

/** A real process of the consortium, with its output kept for waiting on log lines and for failure reports. */
export class Proc {
  private readonly lines: string[] = [];
  private readonly waiters: Array<{ pattern: RegExp; resolve: (line: string) => void }> = [];
  readonly exited: Promise<number | null>;

  constructor(
    readonly name: string,
    private readonly child: ChildProcess,
  ) {
    const take = (chunk: Buffer): void => {
      for (const line of chunk.toString().split('\n')) {
        if (line === '') continue;
        this.lines.push(line);
        if (this.lines.length > 4000) this.lines.shift();
        for (const waiter of [...this.waiters]) {
          if (waiter.pattern.test(line)) {
            this.waiters.splice(this.waiters.indexOf(waiter), 1);
            waiter.resolve(line);
          }
        }
      }
    };
    child.stdout?.on('data', take);
    child.stderr?.on('data', take);
    this.exited = new Promise((resolveExit) => child.on('exit', (code) => resolveExit(code)));
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** Resolves with the first line (seen so far or to come) matching `pattern`. */
  waitFor(pattern: RegExp, timeoutMs = 60_000): Promise<string> {
    const seen = this.lines.find((line) => pattern.test(line));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolveLine, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no line matching ${pattern} within ${timeoutMs} ms; last output:\n${this.tail()}`)), timeoutMs);
      this.waiters.push({
        pattern,
        resolve: (line) => {
          clearTimeout(timer);
          resolveLine(line);
        },
      });
    });
  }

  tail(n = 30): string {
    return this.lines.slice(-n).join('\n');
  }

  /** SIGKILL: no shutdown hook runs, as in a power cut or the OOM killer. */
  async kill9(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 15_000);
    await this.exited;
    clearTimeout(timer);
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolvePort(address.port) : reject(new Error('no port'))));
    });
  });
}

function run(args: string[]): Promise<string> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('exit', (code) => (code === 0 ? resolveRun(out) : reject(new Error(`${args.join(' ')} exited ${code}: ${err.slice(-2000)}`))));
  });
}

export interface ConsortiumOptions {
  /** PostgreSQL instead of the embedded database (a schema of its own). */
  databaseUrl?: string;
  /** Coordinator flags for every start (timeouts made short for the suite). */
  coordinatorArgs?: string[];
}

interface RoundRow {
  number: number;
  status: string;
  assignedSites: string[];
  reportedSites: string[];
  failures: Array<{ siteId: string; reason: string; message: string }>;
}
export interface StudyRow {
  id: string;
  status: string;
  error: string | null;
  rounds: RoundRow[];
}

/**
 * A provisioned consortium on this machine, run as real processes: the coordinator from its kit (mutual TLS, CKKS,
 * on fixed ports so it can be killed and started again in place), and each site as its own simulated-site process
 * (`federa-sim sites`) that keeps every update it sends. Tokens are made offline before the first start.
 */
export class ChaosConsortium {
  coordinator: Proc | undefined;
  readonly sites = new Map<string, Proc>();
  private researcher = '';
  private auditor = '';

  private constructor(
    readonly dir: string,
    readonly siteIds: string[],
    readonly grpcPort: number,
    readonly httpPort: number,
    private readonly options: ConsortiumOptions,
  ) {}

  get kits(): string {
    return join(this.dir, 'kits');
  }

  get dataDir(): string {
    return join(this.dir, 'coordinator');
  }

  get keptUpdates(): string {
    return join(this.dir, 'sent');
  }

  static async create(siteIds: string[], options: ConsortiumOptions = {}): Promise<ChaosConsortium> {
    const dir = await mkdtemp(join(tmpdir(), 'federa-chaos-'));
    const consortium = new ChaosConsortium(dir, siteIds, await freePort(), await freePort(), options);
    await provisionConsortium({
      config: { consortium: { name: 'chaos' }, coordinator: { hostnames: ['localhost'], ips: ['127.0.0.1'] }, sites: siteIds.map((id) => ({ id })) },
      outDir: consortium.kits,
      generateCkksKeys: generateConsortiumCkksKeys,
    });
    const token = async (role: string) =>
      (JSON.parse(await run([FEDERA_CLI, 'token', 'create', '--role', role, '--name', `chaos ${role}`, '--data-dir', consortium.dataDir, '--json', ...consortium.databaseArgs()])) as { token: string }).token;
    consortium.researcher = await token('researcher');
    consortium.auditor = await token('auditor');
    return consortium;
  }

  private databaseArgs(): string[] {
    return this.options.databaseUrl ? ['--database-url', this.options.databaseUrl] : [];
  }

  /** Starts the coordinator (again) on the consortium's ports; with `failpoints`, it stalls there. */
  async startCoordinator(failpoints?: string): Promise<Proc> {
    const ready = join(this.dir, `ready-${Date.now()}.json`);
    const child = spawn(
      process.execPath,
      [
        COORDINATOR_MAIN,
        '--kit', join(this.kits, 'coordinator'),
        '--data-dir', this.dataDir,
        '--grpc-port', String(this.grpcPort),
        '--http-port', String(this.httpPort),
        '--ready-file', ready,
        ...this.databaseArgs(),
        ...(this.options.coordinatorArgs ?? []),
      ],
      { env: { ...process.env, FEDERA_LOG_LEVEL: 'info', FEDERA_FAILPOINTS: failpoints ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const proc = new Proc('coordinator', child);
    this.coordinator = proc;
    const deadline = Date.now() + 90_000;
    for (;;) {
      if (await readFile(ready, 'utf8').then(() => true, () => false)) return proc;
      if (child.exitCode !== null) throw new Error(`the coordinator exited (${child.exitCode}) while starting:\n${proc.tail()}`);
      if (Date.now() > deadline) throw new Error(`the coordinator did not start within 90 s:\n${proc.tail()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** Starts one site's process (again); `address` routes it through a proxy. */
  async startSite(siteId: string, options: { failpoints?: string; address?: string } = {}): Promise<Proc> {
    // A kits folder that holds only this site, so one process runs exactly it.
    const own = join(this.dir, 'site-kits', siteId);
    await mkdir(join(own, 'sites'), { recursive: true });
    await symlink(join(this.kits, 'sites', siteId), join(own, 'sites', siteId)).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw error;
    });
    const child = spawn(
      process.execPath,
      [
        SIM_MAIN, 'sites',
        '--count', '1',
        '--kits', own,
        '--coordinator', options.address ?? `127.0.0.1:${this.grpcPort}`,
        '--server-name', 'localhost',
        '--threads', '1',
        '--json',
        '--keep-updates', this.keptUpdates,
      ],
      { env: { ...process.env, FEDERA_LOG_LEVEL: 'info', FEDERA_FAILPOINTS: options.failpoints ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const proc = new Proc(siteId, child);
    this.sites.set(siteId, proc);
    await proc.waitFor(/"event":"connected"/, 60_000);
    return proc;
  }

  async api<T = unknown>(method: string, path: string, body?: unknown, as: 'researcher' | 'auditor' = 'researcher'): Promise<T> {
    const response = await fetch(`http://127.0.0.1:${this.httpPort}/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${as === 'researcher' ? this.researcher : this.auditor}`, 'content-type': 'application/json' },
      body: body === undefined ? null : JSON.stringify(body),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text.slice(0, 500)}`);
    return JSON.parse(text) as T;
  }

  /** Waits until every site of the consortium holds its task stream at the coordinator. */
  async allConnected(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const sites = await this.api<Array<{ id: string; connected: boolean }>>('GET', '/sites').catch(() => []);
      if (this.siteIds.every((id) => sites.some((s) => s.id === id && s.connected))) return;
      if (Date.now() > deadline) throw new Error(`not every site connected within ${timeoutMs / 1000} s: ${JSON.stringify(sites)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /** Creates and starts an encrypted study over the consortium's sites, once all of them are connected. */
  async startStudy(overrides: Record<string, unknown> = {}): Promise<string> {
    await this.allConnected();
    const created = await this.api<{ id: string }>('POST', '/studies', {
      name: 'chaos study',
      model: CHAOS_MODEL,
      classNames: ['normal', 'lesion'],
      rounds: 2,
      minSites: 2,
      localEpochs: 1,
      batchSize: 4,
      learningRate: 0.01,
      roundTimeoutSeconds: 120,
      sites: this.siteIds,
      ...overrides,
    });
    // A coordinator stalled at a failpoint while starting the study never answers; its kill ends the request.
    const started = this.api('POST', `/studies/${created.id}/start`).catch(() => undefined);
    await Promise.race([started, this.coordinator!.waitFor(/"failpoint reached"/, 600_000).catch(() => undefined)]);
    return created.id;
  }

  study(id: string): Promise<StudyRow> {
    return this.api<StudyRow>('GET', `/studies/${id}`);
  }

  /** Waits until the study is completed, failed or cancelled (the coordinator may be restarting meanwhile). */
  async finished(id: string, timeoutMs = 180_000): Promise<StudyRow> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const row = await this.study(id).catch(() => undefined);
      if (row && ['completed', 'failed', 'cancelled'].includes(row.status)) return row;
      if (Date.now() > deadline) {
        throw new Error(`study ${id} still ${row?.status ?? 'unreachable'} after ${timeoutMs / 1000} s; coordinator:\n${this.coordinator?.tail() ?? ''}`);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  /**
   * Checks every closed round of the study: the updates the coordinator accepted (its audit log) are each exactly
   * bytes a site sent (kept by the sites), no site twice; and the published encrypted sum decrypts to the sum of
   * those updates, carrying exactly their contribution tags. Returns the contributors per round.
   */
  async verifyFedAvg(studyId: string): Promise<Array<{ round: number; contributors: string[] }>> {
    const study = await this.study(studyId);
    const definition = studyDefinitionSchema.parse((await this.api<{ definition: unknown }>('GET', `/studies/${studyId}/definition`)).definition);
    const { records } = await this.api<{ records: Array<{ kind: string; round: number | null; siteId: string | null; details: { sha256?: string } }> }>(
      'GET',
      `/audit/records?studyId=${studyId}&kind=update.received&limit=1000`,
      undefined,
      'auditor',
    );
    const key = (await readSiteKit(join(this.kits, 'sites', this.siteIds[0]!))).ckksSecretKey;
    const ckks = await CkksContext.fromKey(key);
    const sent = await this.sentUpdates();
    const result: Array<{ round: number; contributors: string[] }> = [];
    try {
      for (const round of study.rounds.filter((r) => r.status === 'closed')) {
        const accepted = records.filter((r) => r.round === round.number);
        const contributors = accepted.map((r) => r.siteId ?? '?').sort();
        if (new Set(contributors).size !== contributors.length) throw new Error(`round ${round.number}: a site was counted twice (${contributors.join(', ')})`);
        if (contributors.join() !== [...round.reportedSites].sort().join()) {
          throw new Error(`round ${round.number}: the audit log accepted ${contributors.join(', ')}, the study reports ${round.reportedSites.join(', ')}`);
        }
        const payloadLength = parameterCount(definition.model) + 1 + round.assignedSites.length;
        const expected = new Float64Array(payloadLength);
        for (const record of accepted) {
          const bytes = sent.get(`${record.siteId}/${studyId}-${round.number}-${record.details.sha256}`);
          if (!bytes) throw new Error(`round ${round.number}: the coordinator accepted ${record.details.sha256} from ${record.siteId}, which that site never sent`);
          const values = untagVector(ckks.decryptVector(bytes, key), payloadLength, ckks.valuesPerCiphertext);
          for (let i = 0; i < payloadLength; i++) expected[i]! += values[i]!;
        }
        const published = await this.download(studyId, round.number);
        const tagged = ckks.decryptVector(published, key);
        const problems = tagProblems(tagged, ckks.valuesPerCiphertext, contributionTagKey(key), { studyId, round: round.number }, contributors);
        if (problems.length > 0) throw new Error(`round ${round.number}: the published sum's tags are wrong: ${problems.join('; ')}`);
        const sum = untagVector(tagged, payloadLength, ckks.valuesPerCiphertext);
        let worst = 0;
        for (let i = 0; i < payloadLength; i++) worst = Math.max(worst, Math.abs(sum[i]! - expected[i]!));
        if (worst > 1e-6) throw new Error(`round ${round.number}: the published sum differs from the accepted updates' sum by ${worst}`);
        result.push({ round: round.number, contributors });
      }
    } finally {
      ckks.dispose();
    }
    return result;
  }

  private async download(studyId: string, round: number): Promise<Uint8Array> {
    const response = await fetch(`http://127.0.0.1:${this.httpPort}/api/v1/studies/${studyId}/models/${round}`, {
      headers: { authorization: `Bearer ${this.researcher}` },
    });
    if (!response.ok) throw new Error(`model ${round}: ${response.status}`);
    return new Uint8Array(await response.arrayBuffer());
  }

  /** Every update any site sent: `<site>/<study>-<round>-<sha256>` to its bytes. */
  private async sentUpdates(): Promise<Map<string, Uint8Array>> {
    const sent = new Map<string, Uint8Array>();
    for (const site of await readdir(this.keptUpdates).catch(() => [])) {
      for (const file of await readdir(join(this.keptUpdates, site))) {
        sent.set(`${site}/${file.replace(/\.bin$/, '')}`, new Uint8Array(await readFile(join(this.keptUpdates, site, file))));
      }
    }
    return sent;
  }

  async close(): Promise<void> {
    for (const site of this.sites.values()) await site.stop();
    await this.coordinator?.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}
