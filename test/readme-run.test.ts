import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readDicomFile } from '../site-agent/src/data/index.js';
import { SKIP_PACS, startOrthanc, type RunningOrthanc } from './support/orthanc.js';
import { freePort } from './support/ports.js';

/**
 * Runs the README's shell blocks, command by command, against temporary consortia, so the README cannot drift
 * from the code: a renamed flag, a changed output or a command that no longer works fails here with its README
 * line. Each command matches exactly one rule below, which says in which consortium it runs and what stands in for
 * the README's placeholders (addresses, tokens, ids, hospital paths). The few commands that need root, systemd or
 * another machine are listed with the reason and the test that covers them instead; a new README command without
 * a rule fails the first test.
 *
 * Consortia: "provision" is built by the README's own provisioning commands in a temp folder (coordinator and a
 * site agent started as written); "demo" is `npm run demo`'s consortium left up with --keep --serve (three sites,
 * one completed study, tokens for every role); "pacs" is Debian's Orthanc holding the demo's hospital-a images.
 */

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const binDir = join(root, 'node_modules', '.bin');

/** One command of a README shell block: continuation lines, a heredoc or a for loop joined into one text. */
interface ReadmeCommand {
  line: number;
  text: string;
}

export function readmeShellCommands(markdown: string): ReadmeCommand[] {
  const lines = markdown.split('\n');
  const commands: ReadmeCommand[] = [];
  let inShell = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (/^```(sh|bash)\s*$/.test(line)) {
      inShell = true;
      continue;
    }
    if (line.startsWith('```')) inShell = false;
    if (!inShell || line.trim() === '' || line.trim().startsWith('#')) continue;
    const start = i;
    let text = line;
    const heredoc = /<<'?([A-Z]+)'?/.exec(line)?.[1];
    if (heredoc) {
      while (i + 1 < lines.length && lines[i + 1] !== heredoc) text += `\n${lines[++i]!}`;
      text += `\n${lines[++i]!}`;
    } else if (/^for\s/.test(line)) {
      while (!/\bdone\b/.test(text) && i + 1 < lines.length) text += `\n${lines[++i]!}`;
    } else {
      while ((text.endsWith('\\') || insideQuotes(text)) && i + 1 < lines.length) text = `${text}\n${lines[++i]!}`;
    }
    commands.push({ line: start + 1, text });
  }
  return commands;
}

/** Whether a shell text ends inside a quoted string (a comment, outside quotes, runs to the end of its line). */
function insideQuotes(text: string): boolean {
  let quote: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      if (c === quote) quote = null;
    } else if (c === "'" || c === '"') quote = c;
    else if (c === '#' && (i === 0 || /\s/.test(text[i - 1]!))) {
      const end = text.indexOf('\n', i);
      if (end < 0) return false;
      i = end;
    }
  }
  return quote !== null;
}

type World = 'provision' | 'demo' | 'pacs';

/** What the test knows so far; rules read and fill it. */
interface Context {
  provision: { dir: string; grpcPort: number; httpPort: number; admin?: string };
  demo: { dir: string; httpPort: number; grpcPort: number; tokens: { researcher: string; auditor: string; admin: string }; studyId: string; scratch: string };
  pacs?: { orthanc: RunningOrthanc; dir: string };
  /** The study created with curl, its hash, and the token made over REST. */
  curlStudy?: string;
  curlHash?: string;
  tokenId?: string;
  /** The study created with `federa study create`, its hash; and the running studies the drop/stop commands steer. */
  cliStudy?: string;
  cliHash?: string;
  steered: { cliDrop?: string; cliStop?: string; curlStop?: string };
}

interface Rule {
  /** Matches the command's text (joined, comments kept). */
  match: RegExp;
  /** Why it is not run here, and what checks it instead. */
  skip?: string;
  world?: World;
  /** Placeholders and hospital paths to replace, in order, for this command. */
  replace?: (ctx: Context, command: string) => Array<[string | RegExp, string]>;
  before?: (ctx: Context, command: string) => Promise<void>;
  /** Started and left running (coordinator, site agent) until `ready` says it is up; stopped after the last test. */
  background?: (ctx: Context) => Promise<void>;
  after?: (ctx: Context, stdout: string) => Promise<void> | void;
  expectExit?: number;
  timeoutMs?: number;
}

const must = <T,>(value: T | undefined, what: string): T => {
  if (value === undefined) throw new Error(`${what} is not known yet: a README command before this one did not run`);
  return value;
};

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function api<T>(port: number, token: string, path: string, init: RequestInit = {}): Promise<T> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, { ...init, headers: { authorization: `Bearer ${token}`, ...(init.headers ?? {}) } });
  if (!response.ok) throw new Error(`${init.method ?? 'GET'} ${path}: HTTP ${response.status} ${await response.text()}`);
  return (await response.json()) as T;
}

async function firstFile(dir: string, ext: string): Promise<string> {
  const name = (await readdir(dir)).sort().find((f) => f.endsWith(ext));
  if (!name) throw new Error(`no ${ext} file in ${dir}`);
  return join(dir, name);
}

/** Where a README placeholder names the demo's address, tokens and folders. */
const demoPlaces = (ctx: Context): Array<[string | RegExp, string]> => [
  [/(localhost|127\.0\.0\.1):8080/g, `127.0.0.1:${ctx.demo.httpPort}`],
  ['http://127.0.0.1:PORT', `http://127.0.0.1:${ctx.demo.httpPort}`],
  ['fed_...', ctx.demo.tokens.researcher],
  ['kits/coordinator/ca.pem', join(ctx.demo.dir, 'kits', 'coordinator', 'ca.pem')],
  [/--config site\.yaml/g, `--config ${join(ctx.demo.dir, 'sites', 'hospital-a', 'site.yaml')}`],
];

const provisionPlaces = (ctx: Context): Array<[string | RegExp, string]> => [
  [/\/var\/lib\/federa-coordinator/g, join(ctx.provision.dir, 'coordinator-data')],
  ['/opt/federa/kit', join(ctx.provision.dir, 'kits', 'sites', 'hospital-a')],
  // The kit's certificate names coordinator.example.org; here it answers on loopback, which --server-name covers.
  ['coordinator.example.org:50051', `127.0.0.1:${ctx.provision.grpcPort} --server-name coordinator.example.org`],
  [/\/srv\/images/g, join(ctx.provision.dir, 'data', 'hospital-a')],
  [/\/etc\/federa\//g, `${join(ctx.provision.dir, 'etc', 'federa')}/`],
  [/--config site\.yaml/g, `--config ${join(ctx.provision.dir, 'etc', 'federa', 'site.yaml')}`],
];

const ROOT_ONLY = 'needs root and a real host (a system user, /opt, systemd); deploy/systemd/*.service is checked by systemd-analyze in test/deploy.test.ts';

const RULES: Rule[] = [
  { match: /^npm ci && npm run demo/, skip: '.ci/run runs `npm ci` on a clean clone; the demo consortium below is `npm run demo`\'s own program (node demo/dist/main.js --keep --serve)' },
  { match: /^npm test/, skip: 'the command running this test' },

  // Running the pieces yourself: a consortium provisioned, a coordinator and a site agent started, as written.
  { match: /^cat > consortium\.yaml/, world: 'provision' },
  { match: /^npx federa provision /, world: 'provision' },
  {
    match: /^npx federa token create --role admin/,
    world: 'provision',
    replace: provisionPlaces,
    after: (ctx, stdout) => {
      ctx.provision.admin = must(/fed_[A-Za-z0-9_-]+/.exec(stdout)?.[0], 'the printed admin token');
    },
  },
  {
    match: /^npx federa-coordinator --kit kits\/coordinator/,
    world: 'provision',
    replace: provisionPlaces,
    background: async (ctx) => {
      await until('the coordinator to answer /api/v1/ready', async () => ((await fetch(`http://127.0.0.1:${ctx.provision.httpPort}/api/v1/ready`)).ok ? true : undefined));
    },
  },
  { match: /^npx federa-sim --out data/, world: 'provision' },
  { match: /^npx federa-site init --kit \/opt\/federa\/kit/, world: 'provision', replace: provisionPlaces },
  {
    match: /^npx federa-site start --config \/etc\/federa\/site\.yaml/,
    world: 'provision',
    replace: provisionPlaces,
    background: async (ctx) => {
      const admin = must(ctx.provision.admin, 'the admin token');
      await until('hospital-a to connect', async () => {
        const sites = await api<Array<{ id: string; connected: boolean }>>(ctx.provision.httpPort, admin, '/api/v1/sites');
        return sites.some((s) => s.id === 'hospital-a' && s.connected) ? true : undefined;
      });
    },
  },
  {
    match: /^npx federa-site (doctor|data scan) --config site\.yaml/,
    world: 'provision',
    replace: provisionPlaces,
  },
  {
    match: /^npx federa-site data inspect some\.dcm/,
    world: 'provision',
    before: async (ctx) => {
      const file = await firstFile(join(ctx.provision.dir, 'data', 'hospital-a', 'images'), '.dcm');
      await writeFile(join(ctx.provision.dir, 'some.dcm'), await readFile(file));
    },
  },

  // The REST API with curl, on the demo's coordinator. The status, evaluation and model lines read the demo's own
  // completed study (a new one has no rounds yet); the rest act on the study the first line creates.
  {
    match: /^curl -X POST localhost:8080\/api\/v1\/studies -H/,
    world: 'demo',
    replace: demoPlaces,
    after: (ctx, stdout) => {
      const created = JSON.parse(stdout) as { id: string; specHash: string };
      ctx.curlStudy = created.id;
      ctx.curlHash = created.specHash;
    },
  },
  {
    match: /^curl (-X POST )?-H "authorization: Bearer \$TOKEN" localhost:8080\/api\/v1\/studies\/<id>\/(definition|pause|resume|sites\/hospital-c\/drop)\b/,
    world: 'demo',
    replace: (ctx) => [...demoPlaces(ctx), ['<id>', must(ctx.curlStudy, 'the curl study')]],
  },
  {
    // Stopped: a running study of its own, since dropping one of the demo's three sites from a study that needs
    // three ends it (under multiparty keys at once).
    match: /^curl -X POST -H "authorization: Bearer \$TOKEN" localhost:8080\/api\/v1\/studies\/<id>\/stop\b/,
    world: 'demo',
    before: async (ctx) => {
      ctx.steered.curlStop ??= await startSteerableStudy(ctx);
    },
    replace: (ctx) => [...demoPlaces(ctx), ['<id>', must(ctx.steered.curlStop, 'the study to stop')]],
  },
  {
    // Between reading the definition and starting, each hospital approves it (see "Site policy").
    match: /^curl -X POST -H "authorization: Bearer \$TOKEN" localhost:8080\/api\/v1\/studies\/<id>\/start/,
    world: 'demo',
    before: (ctx) => approveAtDemoSites(ctx, must(ctx.curlHash, 'the curl study\'s hash')),
    replace: (ctx) => [...demoPlaces(ctx), ['<id>', must(ctx.curlStudy, 'the curl study')]],
  },
  {
    match: /^curl -H "authorization: Bearer \$TOKEN" localhost:8080\/api\/v1\/studies\/<id>(\/evaluation|\/models\/3)?\s/,
    world: 'demo',
    replace: (ctx) => [...demoPlaces(ctx), ['<id>', ctx.demo.studyId]],
  },
  { match: /^curl -H "authorization: Bearer \$TOKEN" localhost:8080\/api\/v1\/sites/, world: 'demo', replace: demoPlaces },
  {
    match: /^curl -X POST -H "authorization: Bearer \$ADMIN" -H 'content-type: application\/json' localhost:8080\/api\/v1\/tokens/,
    world: 'demo',
    replace: demoPlaces,
    after: (ctx, stdout) => {
      ctx.tokenId = (JSON.parse(stdout) as { id: string }).id;
    },
  },
  { match: /^curl -X DELETE -H "authorization: Bearer \$ADMIN" localhost:8080\/api\/v1\/tokens\/<id>/, world: 'demo', replace: (ctx) => [...demoPlaces(ctx), ['<id>', must(ctx.tokenId, 'the token made over REST')]] },
  {
    // "offline, coordinator stopped": the provisioned coordinator is stopped first.
    match: /^npx federa token list --data-dir \/var\/lib\/federa-coordinator/,
    world: 'provision',
    replace: provisionPlaces,
    before: async () => stopBackground(/^npx federa-coordinator/),
  },

  // Site policy: what a hospital sees and decides, on the demo's hospital-a, for the study made with curl.
  {
    match: /^npx federa-site (studies|approve|reject) .*--config site\.yaml/,
    world: 'demo',
    replace: (ctx) => [...demoPlaces(ctx), ['3f2a9c01', must(ctx.curlHash, 'the curl study\'s hash').slice(0, 8)]],
  },

  // For hospital IT: a site reading the PACS (Orthanc holding the demo's hospital-a images) for the demo consortium.
  { match: /^sudo useradd /, skip: ROOT_ONLY },
  { match: /^sudo mkdir -p \/opt\/federa /, skip: ROOT_ONLY },
  { match: /^sudo git clone /, skip: 'clones from the hospital\'s own mirror; this test runs in the clone CI made, after its `npm ci` and build' },
  { match: /^cd \/opt\/federa && sudo npm ci && sudo npm run build/, skip: 'the same install .ci/run does on a clean clone before the tests' },
  { match: /^sudo install -o federa -m 0400 (pacs-password\.txt|labels\.csv) /, skip: `${ROOT_ONLY}; the test writes the PACS password and the labels (keyed by SOP Instance UID) itself` },
  { match: /^sudo cp deploy\/systemd\/federa-site\.service/, skip: ROOT_ONLY },
  {
    match: /^sudo cp -r hospital-a-kit \/etc\/federa\/kit/,
    world: 'pacs',
    replace: (ctx) => [
      // Owned by the service's user, who exists only on a host where the block above ran as root.
      [' && sudo chown -R federa: /etc/federa/kit', ''],
      ['hospital-a-kit', join(ctx.demo.dir, 'kits', 'sites', 'hospital-a')],
      [/\/etc\/federa/g, join(must(ctx.pacs, 'the PACS').dir, 'etc', 'federa')],
    ],
  },
  {
    match: /^sudo (-u federa )?npx federa-site (init --kit \/etc\/federa\/kit|doctor --config \/etc\/federa\/site\.yaml|data scan --config \/etc\/federa\/site\.yaml)/,
    world: 'pacs',
    replace: (ctx) => {
      const pacs = must(ctx.pacs, 'the PACS');
      return [
        ['https://pacs.hospital.example/dicom-web', pacs.orthanc.dicomWebUrl],
        ['coordinator.example.org:50051', `127.0.0.1:${ctx.demo.grpcPort} --server-name localhost`],
        // The synthetic images are modality OT, dated 2000-01-01.
        ['--modality CT', '--modality OT'],
        ['--studies-from 20230101', '--studies-from 20000101'],
        [/\/etc\/federa/g, join(pacs.dir, 'etc', 'federa')],
      ];
    },
    timeoutMs: 180_000,
  },

  // For researchers: the federa CLI on the demo's consortium, a study from YAML to its evaluation.
  { match: /^npx federa (login|study validate|study create|study start|study pause|study resume|study metrics|study evaluation|study list|study show|site list)\b/, world: 'demo', replace: researcherPlaces, after: rememberCliStudy },
  {
    match: /^for site in \$DEMO\/sites\/\*\/site\.yaml; do/,
    world: 'demo',
    replace: (ctx) => [['HASH', must(ctx.cliHash, 'the hash `federa study create` printed')]],
  },
  { match: /^npx federa study watch ID/, world: 'demo', replace: researcherPlaces, timeoutMs: 600_000 },
  {
    // Studies of their own to steer (the CLI's has completed by now): one to drop a site from, one to stop, since
    // dropping one of the demo's three sites from a study that needs three ends it (under multiparty keys at once).
    match: /^npx federa study (drop-site|stop) ID/,
    world: 'demo',
    before: async (ctx, command) => {
      const which = command.startsWith('npx federa study stop') ? 'cliStop' : 'cliDrop';
      ctx.steered[which] ??= await startSteerableStudy(ctx);
    },
    replace: (ctx, command) => [[/\bID\b/g, must(ctx.steered[command.startsWith('npx federa study stop') ? 'cliStop' : 'cliDrop'], 'the study to steer')]],
  },

  // Models at a site: hospital-a holds the CLI study's decrypted rounds.
  {
    match: /^npx federa-site (model list|model export|predict) /,
    world: 'demo',
    replace: (ctx) => [
      ...demoPlaces(ctx),
      [/\bID\b/g, must(ctx.cliStudy, 'the CLI study')],
      ['scan1.dcm', join(ctx.demo.dir, 'data', 'holdout', 'images', readdirFirst(join(ctx.demo.dir, 'data', 'holdout', 'images'), '.dcm'))],
      ['scan2.png', join(root, 'docs', 'screenshots', 'dashboard-login.png')],
    ],
  },

  // For auditors: the demo's audit log, its export from the demo run as "last month's", hospital-a's ledger.
  {
    match: /^npx federa (audit export|audit verify|audit reconcile) /,
    world: 'demo',
    replace: (ctx) => [
      ...demoPlaces(ctx),
      ['audit-2026-11.jsonl', join(ctx.demo.dir, 'audit-export.jsonl')],
      ['state/hospital-a/ledger/ledger.jsonl', join(ctx.demo.dir, 'sites', 'hospital-a', 'state', 'ledger', 'ledger.jsonl')],
    ],
  },
  { match: /^npx federa-site ledger (verify|show) --config site\.yaml/, world: 'demo', replace: demoPlaces },
];

function readdirFirst(dir: string, ext: string): string {
  // Synchronous: replacements are computed right before the command runs.
  const name = readdirSync(dir).sort().find((f) => f.endsWith(ext));
  if (!name) throw new Error(`no ${ext} file in ${dir}`);
  return name;
}

function researcherPlaces(ctx: Context): Array<[string | RegExp, string]> {
  // "Run them in the Federa folder": the example is read from there; what the commands write stays in a temp folder.
  return [...demoPlaces(ctx), ['examples/studies/', `${join(root, 'examples', 'studies')}/`], [/\bID\b/g, ctx.cliStudy ?? 'ID']];
}

/** Each demo hospital approves a study by its hash, with the command a hospital's IT runs. */
/** A running study on the demo (the example small-cnn study), approved at every site, once its first round is open. */
async function startSteerableStudy(ctx: Context): Promise<string> {
  const yaml = await readFile(join(root, 'examples', 'studies', 'small-cnn.yaml'), 'utf8');
  const created = await api<{ id: string; specHash: string }>(ctx.demo.httpPort, ctx.demo.tokens.researcher, '/api/v1/studies', { method: 'POST', body: yaml, headers: { 'content-type': 'application/yaml' } });
  await approveAtDemoSites(ctx, created.specHash);
  await api(ctx.demo.httpPort, ctx.demo.tokens.researcher, `/api/v1/studies/${created.id}/start`, { method: 'POST' });
  for (let started = Date.now(); ; await new Promise((r) => setTimeout(r, 250))) {
    const study = await api<{ status: string; rounds: unknown[] }>(ctx.demo.httpPort, ctx.demo.tokens.researcher, `/api/v1/studies/${created.id}`);
    if (study.status !== 'running') throw new Error(`the study to steer is ${study.status}: ${JSON.stringify(study).slice(0, 3000)}`);
    if (study.rounds.length > 0) return created.id;
    if (Date.now() - started > 60_000) throw new Error('the study to steer opened no round within 60 s');
  }
}

async function approveAtDemoSites(ctx: Context, hash: string): Promise<void> {
  for (const site of ['hospital-a', 'hospital-b', 'hospital-c']) {
    const child = spawn(join(binDir, 'federa-site'), ['approve', hash, '--config', join(ctx.demo.dir, 'sites', site, 'site.yaml')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const code = await new Promise<number | null>((done) => child.once('exit', done));
    if (code !== 0) throw new Error(`federa-site approve at ${site} exited with ${code}: ${output}`);
  }
}

function rememberCliStudy(ctx: Context, stdout: string): void {
  const created = /created study (\S+) .*\n\s+hash ([0-9a-f]{64})/.exec(stdout);
  if (created) {
    ctx.cliStudy = created[1];
    ctx.cliHash = created[2];
  }
}

/** Replaces the `npx` the README types with the linked bins of this checkout; curl fails on HTTP errors. */
const PRELUDE = `set -o pipefail
npx() { case "$1" in federa|federa-site|federa-sim|federa-coordinator) local b="$1"; shift; "$FEDERA_BIN/$b" "$@";; *) echo "npx $1: not one of Federa's commands" >&2; return 127;; esac; }
curl() { command curl --silent --show-error --fail-with-body "$@"; }
sudo() { if [ "$1" = "-u" ]; then shift 2; fi; "$@"; }
`;

interface Background {
  rule: Rule;
  text: string;
  child: ChildProcess;
}
const background: Background[] = [];

async function stopBackground(match?: RegExp): Promise<void> {
  for (const b of background.filter((x) => !match || match.test(x.text))) {
    background.splice(background.indexOf(b), 1);
    if (b.child.exitCode !== null || b.child.signalCode !== null) continue;
    const gone = new Promise((r) => b.child.once('exit', r));
    process.kill(-b.child.pid!, 'SIGTERM');
    await Promise.race([gone, new Promise((r) => setTimeout(r, 20_000))]);
    if (b.child.exitCode === null && b.child.signalCode === null) process.kill(-b.child.pid!, 'SIGKILL');
  }
}

function ruleFor(command: ReadmeCommand): Rule[] {
  return RULES.filter((r) => r.match.test(command.text));
}

function substitute(text: string, pairs: Array<[string | RegExp, string]>): string {
  let out = text;
  for (const [from, to] of pairs) out = typeof from === 'string' ? out.split(from).join(to) : out.replace(from, to);
  return out;
}

function tail(text: string): string {
  return text.split('\n').slice(-25).join('\n');
}

const commands = readmeShellCommands(readFileSync(join(root, 'README.md'), 'utf8'));

describe('every README command has one rule, and every rule a command', () => {
  it('matches each command to exactly one rule', () => {
    const problems = commands.flatMap((c) => {
      const n = ruleFor(c).length;
      return n === 1 ? [] : [`README.md:${c.line}: ${n === 0 ? 'no rule says how to run' : `${n} rules match`} \`${c.text.split('\n')[0]}\``];
    });
    expect(problems).toEqual([]);
    const unused = RULES.filter((r) => !commands.some((c) => r.match.test(c.text))).map((r) => String(r.match));
    expect(unused).toEqual([]);
    expect(commands.filter((c) => ruleFor(c)[0]?.skip === undefined).length).toBeGreaterThanOrEqual(50);
  });
});

describe('the README, run against temporary consortia', () => {
  const ctx = { steered: {} } as Context;
  let demo: ChildProcess | undefined;
  let demoExit: Promise<unknown> | undefined;

  beforeAll(async () => {
    const provisionDir = await mkdtemp(join(tmpdir(), 'federa-readme-'));
    ctx.provision = { dir: provisionDir, grpcPort: await freePort(), httpPort: await freePort() };
    // The demo, left up: three sites and one completed study, with a token for each role.
    const port = await freePort();
    demo = spawn(join(binDir, 'node'), [join(root, 'demo', 'dist', 'main.js'), '--serve', '--port', String(port)], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    demoExit = new Promise((r) => demo!.once('exit', r));
    let printed = '';
    demo.stdout!.on('data', (chunk: Buffer) => (printed += chunk.toString()));
    demo.stderr!.on('data', (chunk: Buffer) => (printed += chunk.toString()));
    const guide = await until(
      'the demo to finish its study and print how to reach it',
      async () => {
        if (demo!.exitCode !== null) throw new Error(`the demo exited with ${demo!.exitCode}: ${tail(printed)}`);
        const token = (role: string): string | undefined => new RegExp(`${role} token:\\s+(fed_\\S+)`).exec(printed)?.[1];
        const sites = /for site in (\S+)\/sites\/\*\/site\.yaml/.exec(printed)?.[1];
        const [researcher, auditor, admin] = [token('researcher'), token('auditor'), token('admin')];
        return researcher && auditor && admin && sites ? { researcher, auditor, admin, dir: sites } : undefined;
      },
      300_000,
    ).catch((error: unknown) => {
      throw new Error(`${(error as Error).message}\n${tail(printed)}`);
    });
    const ready = JSON.parse(await readFile(join(guide.dir, 'coordinator.ready.json'), 'utf8')) as { httpPort: number; grpcPort: number };
    const studies = await api<Array<{ id: string; status: string }>>(port, guide.researcher, '/api/v1/studies');
    const done = must(studies.find((s) => s.status === 'completed'), 'the demo\'s completed study');
    ctx.demo = { dir: guide.dir, httpPort: ready.httpPort, grpcPort: ready.grpcPort, tokens: guide, studyId: done.id, scratch: await mkdtemp(join(tmpdir(), 'federa-readme-demo-')) };
    if (!SKIP_PACS) {
      // Orthanc holds the demo's hospital-a images; labels keyed by SOP Instance UID, as a PACS export gives them.
      const orthanc = await startOrthanc();
      const dir = await mkdtemp(join(tmpdir(), 'federa-readme-pacs-'));
      await mkdir(join(dir, 'etc', 'federa'), { recursive: true });
      const siteDir = join(ctx.demo.dir, 'data', 'hospital-a');
      const labels = new Map((await readFile(join(siteDir, 'labels.csv'), 'utf8')).trim().split('\n').slice(1).map((row) => row.split(',') as [string, string]));
      const rows = ['sop_instance_uid,label'];
      const files: string[] = [];
      for (const [file, label] of labels) {
        const path = join(siteDir, file);
        files.push(path);
        rows.push(`${(await readDicomFile(path)).header.sopInstanceUid as string},${label}`);
      }
      await orthanc.upload(files);
      await writeFile(join(dir, 'etc', 'federa', 'labels.csv'), `${rows.join('\n')}\n`);
      await writeFile(join(dir, 'etc', 'federa', 'pacs-password'), `${orthanc.password}\n`, { mode: 0o600 });
      ctx.pacs = { orthanc, dir };
    }
  }, 420_000);

  afterAll(async () => {
    await stopBackground();
    if (demo && demo.exitCode === null) {
      demo.kill('SIGINT');
      await Promise.race([demoExit, new Promise((r) => setTimeout(r, 30_000))]);
      if (demo.exitCode === null) demo.kill('SIGKILL');
    }
    await ctx.pacs?.orthanc.stop();
    for (const dir of [ctx.provision?.dir, ctx.demo?.dir, ctx.demo?.scratch, ctx.pacs?.dir]) if (dir) await rm(dir, { recursive: true, force: true });
  }, 120_000);

  const blocks = new Map<number, ReadmeCommand[]>();
  {
    // A block is a run of commands without a line of prose between them.
    let key = -1;
    let last = -10;
    for (const c of commands) {
      if (c.line - last > 3) key = c.line;
      blocks.set(key, [...(blocks.get(key) ?? []), c]);
      last = c.line + c.text.split('\n').length - 1;
    }
  }

  for (const [line, block] of blocks) {
    const worlds = new Set(block.map((c) => ruleFor(c)[0]?.world));
    const needsPacs = worlds.has('pacs');
    it.skipIf(needsPacs && SKIP_PACS)(`README.md:${line}: ${block[0]!.text.split('\n')[0]!.slice(0, 70)}`, async () => {
      for (const command of block) {
        const rule = ruleFor(command)[0];
        if (!rule) throw new Error(`README.md:${command.line}: no rule`);
        if (rule.skip !== undefined) continue;
        await rule.before?.(ctx, command.text);
        const text = substitute(command.text, rule.replace?.(ctx, command.text) ?? []);
        const cwd = rule.world === 'provision' ? ctx.provision.dir : rule.world === 'pacs' ? must(ctx.pacs, 'the PACS').dir : ctx.demo.scratch;
        const env = {
          ...process.env,
          FEDERA_BIN: binDir,
          FEDERA_LOG_LEVEL: 'warn',
          FEDERA_CONFIG: join(ctx.demo.scratch, 'credentials.json'),
          FEDERA_GRPC_PORT: String(ctx.provision.grpcPort),
          FEDERA_HTTP_PORT: String(ctx.provision.httpPort),
          TOKEN: ctx.demo.tokens.researcher,
          ADMIN: ctx.demo.tokens.admin,
          AUDITOR: ctx.demo.tokens.auditor,
          DEMO: ctx.demo.dir,
        };
        const child = spawn('bash', ['-c', `${PRELUDE}${text}`], { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
        child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
        const where = `README.md:${command.line}: ${text}`;
        if (rule.background) {
          background.push({ rule, text: command.text, child });
          await Promise.race([
            rule.background(ctx),
            new Promise((_, reject) => child.once('exit', (code) => reject(new Error(`${where}\nexited with ${code} before it was up:\n${tail(stdout + stderr)}`)))),
          ]);
          continue;
        }
        const code = await new Promise<number>((done) => {
          const timer = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), rule.timeoutMs ?? 120_000);
          child.once('exit', (c, signal) => {
            clearTimeout(timer);
            done(c ?? (signal ? 128 : 1));
          });
        });
        if (code !== (rule.expectExit ?? 0)) throw new Error(`${where}\nexited with ${code}, expected ${rule.expectExit ?? 0}:\n${tail(stdout)}\n${tail(stderr)}`);
        await rule.after?.(ctx, stdout);
      }
    }, 900_000);
  }
});
