// Offline checks of the packaging and deployment files in deploy/: Dockerfiles, their build-context filters,
// the container health probe, the Compose consortium, the Helm chart (rendered by a small renderer for the
// Go-template subset the chart keeps to) and the systemd units. No container engine, registry or cluster is
// needed; `systemd-analyze verify` runs where it is installed.
import { execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join, posix, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, parseAllDocuments, stringify as stringifyYaml } from 'yaml';
import { loadSiteConfig } from '@federa/site-agent';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const deploy = join(root, 'deploy');
const bundledNode = join(root, 'node_modules', '.bin', 'node');
const run = promisify(execFile);

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? walk(join(dir, entry.name)) : [join(dir, entry.name)],
  );
}
const read = (path: string): string => readFileSync(path, 'utf8');
const rel = (path: string): string => posix.normalize(path.replace(root + '/', ''));

// ---------------------------------------------------------------------------------------------------------------
// Dockerfiles

interface Instruction {
  keyword: string;
  args: string;
}

/** Instructions of a Dockerfile: comments dropped, backslash continuations joined. */
function parseDockerfile(text: string): Instruction[] {
  const instructions: Instruction[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (pending === '' && (line === '' || line.startsWith('#'))) continue;
    if (pending !== '' && line.startsWith('#')) continue; // comment lines inside a continuation
    if (line.endsWith('\\')) {
      pending += line.slice(0, -1) + ' ';
      continue;
    }
    const full = (pending + line).trim();
    pending = '';
    const match = /^(\w+)\s+([\s\S]*)$/.exec(full);
    if (!match) throw new Error(`not an instruction: ${full}`);
    instructions.push({ keyword: match[1]!.toUpperCase(), args: match[2]! });
  }
  return instructions;
}

/** COPY/ADD sources and destination (JSON or shell form), flags separated. */
function copyArgs(args: string): { flags: string[]; sources: string[]; dest: string } {
  const words = args.trim().startsWith('[') ? (JSON.parse(args) as string[]) : args.trim().split(/\s+/);
  const flags = words.filter((w) => w.startsWith('--'));
  const rest = words.filter((w) => !w.startsWith('--'));
  return { flags, sources: rest.slice(0, -1), dest: rest.at(-1)! };
}

/** The runtime stage: instructions after the last FROM. */
function lastStage(instructions: Instruction[]): Instruction[] {
  const from = instructions.map((i) => i.keyword).lastIndexOf('FROM');
  return instructions.slice(from);
}

/**
 * Docker's .dockerignore semantics, enough for our files: patterns in order, `!` re-includes, a pattern that
 * matches a parent folder matches everything under it, the last matching pattern decides.
 */
function dockerignore(text: string): (path: string) => boolean {
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pattern = posix.normalize((negate ? l.slice(1) : l).replace(/^\/+/, ''));
      const source = pattern
        .split('/')
        .map((part) => (part === '**' ? '.*' : part.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')))
        .join('/')
        .replace(/\.\*\//g, '(?:.*/)?');
      return { negate, regex: new RegExp(`^${source}$`) };
    });
  return (path: string) => {
    const parts = posix.normalize(path).split('/');
    const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
    let excluded = false;
    for (const rule of rules) if (prefixes.some((p) => rule.regex.test(p))) excluded = !rule.negate;
    return excluded;
  };
}

const dockerfiles = ['coordinator', 'site-agent', 'site-agent-gpu'].map((name) => ({
  name,
  path: join(deploy, 'docker', `${name}.Dockerfile`),
}));

describe('Dockerfiles', () => {
  const ignoreFiles = dockerfiles.map((d) => `${d.path}.dockerignore`);

  it('each has a BuildKit <Dockerfile>.dockerignore, and they are identical', () => {
    for (const file of ignoreFiles) expect(existsSync(file), rel(file)).toBe(true);
    const texts = ignoreFiles.map(read);
    expect(new Set(texts).size).toBe(1);
  });

  it('the build context filter keeps sources and drops secrets, builds and stale build info', () => {
    const excluded = dockerignore(read(ignoreFiles[0]!));
    for (const kept of ['package.json', 'package-lock.json', 'tsconfig.json', 'coordinator/src/main.ts', 'coordinator/prisma/schema.prisma', 'shared/bin/launch.js', 'site-agent/package.json', 'demo/tsconfig.json', 'deploy/docker/healthcheck.mjs']) {
      expect(excluded(kept), kept).toBe(false);
    }
    for (const dropped of ['.git/config', 'node_modules/yaml/package.json', 'coordinator/dist/main.js', 'shared/tsconfig.tsbuildinfo', 'kits/ca/ca-key.pem', 'deploy/compose/kits/ca/ckks-secret.key', 'coordinator/src/persistence/generated/client.ts', '.federa/coordinator/db', 'README.md', 'test/deploy.test.ts', 'deploy/compose/data/hospital-a/labels.csv']) {
      expect(excluded(dropped), dropped).toBe(true);
    }
  });

  for (const { name, path } of dockerfiles) {
    describe(name, () => {
      const instructions = parseDockerfile(read(path));
      const runtime = lastStage(instructions);
      const excluded = dockerignore(read(`${path}.dockerignore`));

      it('is multi-stage, builds with npm ci and npm run build and drops dev dependencies', () => {
        expect(instructions.filter((i) => i.keyword === 'FROM').length).toBeGreaterThanOrEqual(2);
        const runs = instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args).join('\n');
        expect(runs).toMatch(/npm ci\b/);
        expect(runs).toMatch(/npm run build\b/);
        expect(runs).toMatch(/npm prune --omit=dev|npm ci --omit=dev/);
      });

      it('COPYs only paths that exist in the build context and that its .dockerignore lets through', () => {
        const copies = instructions.filter((i) => i.keyword === 'COPY' || i.keyword === 'ADD').map((i) => copyArgs(i.args));
        const fromContext = copies.filter((c) => !c.flags.some((f) => f.startsWith('--from')));
        expect(fromContext.length).toBeGreaterThan(0);
        for (const { sources } of fromContext) {
          for (const source of sources) {
            expect(existsSync(join(root, source)), `${source} exists`).toBe(true);
            expect(excluded(source), `${source} passes the .dockerignore`).toBe(false);
          }
        }
        // The runtime stage takes the built tree from the build stage.
        expect(lastStage(instructions).some((i) => i.keyword === 'COPY' && /--from=build\b/.test(i.args))).toBe(true);
      });

      it('the runtime stage runs as a non-root numeric USER, with a VOLUME for its state', () => {
        const user = runtime.filter((i) => i.keyword === 'USER').at(-1);
        expect(user?.args).toBe('10001:10001');
        const volume = runtime.find((i) => i.keyword === 'VOLUME');
        const stateDir = name === 'coordinator' ? '/var/lib/federa-coordinator' : '/var/lib/federa-site';
        expect(JSON.parse(volume!.args)).toEqual([stateDir]);
        const env = runtime.filter((i) => i.keyword === 'ENV').map((i) => i.args).join(' ');
        expect(env).toContain(`HOME=${stateDir}`);
        expect(env).toMatch(/PATH=\/opt\/federa\/node_modules\/\.bin:/);
      });

      it('runs on a Debian slim base (CUDA for the GPU variant) without a Node.js image', () => {
        const from = runtime[0]!.args;
        const arg = /^\$\{(\w+)\}/.exec(from)?.[1];
        const value = instructions.find((i) => i.keyword === 'ARG' && i.args.startsWith(`${arg}=`))?.args.split('=')[1];
        if (name === 'site-agent-gpu') expect(value).toMatch(/^nvidia\/cuda:.*cudnn.*runtime-ubuntu/);
        else expect(value).toBe('debian:bookworm-slim');
      });

      it('declares a HEALTHCHECK run by the bundled node on a script the image contains', () => {
        const health = runtime.find((i) => i.keyword === 'HEALTHCHECK');
        expect(health).toBeDefined();
        const command = JSON.parse(health!.args.slice(health!.args.indexOf('CMD') + 3).trim()) as string[];
        expect(command[0]).toBe('/opt/federa/node_modules/.bin/node');
        const copiedScript = runtime
          .filter((i) => i.keyword === 'COPY')
          .map((i) => copyArgs(i.args))
          .some((c) => c.dest === command[1] && c.sources.every((s) => existsSync(join(root, s))));
        expect(copiedScript, `${command[1]} is copied into the image`).toBe(true);
        const env = runtime.filter((i) => i.keyword === 'ENV').map((i) => i.args).join(' ');
        expect(env).toContain(name === 'coordinator' ? 'FEDERA_HEALTHCHECK_URL=http://127.0.0.1:8080/api/v1/health' : 'FEDERA_HEALTHCHECK_URL=http://127.0.0.1:9464/health');
      });

      it('has an ENTRYPOINT on a linked bin that the build creates, with default CMD flags', () => {
        const entrypoint = JSON.parse(runtime.find((i) => i.keyword === 'ENTRYPOINT')!.args) as string[];
        const bin = entrypoint.find((w) => w.startsWith('/opt/federa/node_modules/.bin/'));
        expect(bin).toBe(name === 'coordinator' ? '/opt/federa/node_modules/.bin/federa-coordinator' : '/opt/federa/node_modules/.bin/federa-site');
        expect(existsSync(join(root, bin!.replace('/opt/federa/', ''))), `${bin} is linked in this checkout`).toBe(true);
        expect(statSync(join(root, 'node_modules', '.bin', 'node')).isFile()).toBe(true);
        const cmd = JSON.parse(runtime.find((i) => i.keyword === 'CMD')!.args) as string[];
        if (name === 'coordinator') {
          expect(cmd).toEqual(expect.arrayContaining(['--kit', '/etc/federa/kits/coordinator', '--data-dir', '/var/lib/federa-coordinator']));
        } else {
          expect(cmd).toEqual(['start', '--config', '/etc/federa/site.yaml']);
        }
      });
    });
  }

  it('the default CMD flags are ones federa-coordinator --help documents', async () => {
    const runtime = lastStage(parseDockerfile(read(dockerfiles[0]!.path)));
    const cmd = JSON.parse(runtime.find((i) => i.keyword === 'CMD')!.args) as string[];
    const { stdout } = await run(bundledNode, [join(root, 'node_modules', '.bin', 'federa-coordinator'), '--help']);
    for (const flag of cmd.filter((w) => w.startsWith('--'))) expect(stdout).toContain(`${flag} `);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The health probe the images run

describe('deploy/docker/healthcheck.mjs', () => {
  let server: Server;
  let base = '';
  beforeAll(async () => {
    server = createServer((req, res) => {
      res.statusCode = req.url === '/api/v1/health' ? 200 : 503;
      res.end('{}');
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((done) => server.close(() => done())));

  const probe = (args: string[], env: Record<string, string> = {}): Promise<number> =>
    new Promise((done) => {
      const child = spawn(bundledNode, [join(deploy, 'docker', 'healthcheck.mjs'), ...args], {
        env: { PATH: process.env.PATH ?? '', ...env },
        stdio: 'ignore',
      });
      child.on('exit', (code) => done(code ?? -1));
    });

  it('exits 0 on a 2xx answer, 1 on anything else, and 0 when turned off with none', async () => {
    expect(await probe([`${base}/api/v1/health`])).toBe(0);
    expect(await probe([], { FEDERA_HEALTHCHECK_URL: `${base}/api/v1/health` })).toBe(0);
    expect(await probe([`${base}/api/v1/ready`])).toBe(1);
    expect(await probe([], { FEDERA_HEALTHCHECK_URL: 'http://127.0.0.1:1/health' })).toBe(1);
    expect(await probe([])).toBe(1);
    expect(await probe([], { FEDERA_HEALTHCHECK_URL: 'none' })).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Every YAML file in deploy/ parses (Helm templates are rendered first, below)

describe('YAML files', () => {
  const yamlFiles = walk(deploy).filter((f) => /\.ya?ml$/.test(f) && !f.includes('/templates/'));
  it('parse', () => {
    expect(yamlFiles.length).toBeGreaterThanOrEqual(7);
    for (const file of yamlFiles) {
      const docs = parseAllDocuments(read(file), { merge: true });
      for (const doc of docs) expect(doc.errors, rel(file)).toEqual([]);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Compose

interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile: string };
  read_only?: boolean;
  tmpfs?: string[];
  cap_drop?: string[];
  user?: string;
  profiles?: string[];
  healthcheck?: { test?: string[]; disable?: boolean };
  depends_on?: Record<string, { condition: string }>;
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  entrypoint?: string[];
  stop_grace_period?: string;
}

describe('deploy/compose', () => {
  const dir = join(deploy, 'compose');
  const compose = parseYaml(read(join(dir, 'compose.yaml')), { merge: true }) as {
    services: Record<string, ComposeService>;
    volumes: Record<string, unknown>;
  };
  const services = compose.services;
  const sites = ['hospital-a', 'hospital-b', 'hospital-c'];
  const consortium = parseYaml(read(join(dir, 'consortium.yaml'))) as {
    coordinator: { hostnames: string[] };
    sites: { id: string }[];
  };

  it('has PostgreSQL, the coordinator, three sites, and the setup and federa one-shots', () => {
    expect(Object.keys(services).sort()).toEqual(['coordinator', 'federa', 'hospital-a', 'hospital-b', 'hospital-c', 'postgres', 'setup']);
    expect(services.setup!.profiles).toEqual(['setup']);
    expect(services.federa!.profiles).toEqual(['tools']);
  });

  it('runs every long-running Federa container hardened, with a healthcheck on the bundled node', () => {
    for (const name of ['coordinator', ...sites]) {
      const s = services[name]!;
      expect(s.read_only, name).toBe(true);
      expect(s.tmpfs, name).toContain('/tmp');
      expect(s.cap_drop, name).toEqual(['ALL']);
      expect(s.user, name).toBe('10001:10001');
      expect(s.healthcheck?.test?.slice(0, 2), name).toEqual(['CMD', '/opt/federa/node_modules/.bin/node']);
    }
    expect(services.coordinator!.healthcheck!.test!.at(-1)).toBe('http://127.0.0.1:8080/api/v1/health');
    for (const site of sites) expect(services[site]!.healthcheck!.test!.at(-1)).toBe('http://127.0.0.1:9464/health');
    expect(services.postgres!.read_only).toBe(true);
    expect(services.postgres!.healthcheck?.test?.join(' ')).toContain('pg_isready');
  });

  it('wires the coordinator to PostgreSQL, publishes REST on loopback only, and starts sites after it is healthy', () => {
    const c = services.coordinator!;
    expect(c.depends_on).toEqual({ postgres: { condition: 'service_healthy' } });
    expect(c.environment!.DATABASE_URL).toMatch(/^postgresql:\/\/federa:.*@postgres:5432\/federa$/);
    expect(c.ports).toContain('127.0.0.1:8080:8080');
    for (const port of c.ports!) expect(port.startsWith('127.0.0.1:'), port).toBe(true);
    expect(c.build).toEqual({ context: '../..', dockerfile: 'deploy/docker/coordinator.Dockerfile' });
    expect(services['hospital-a']!.build).toEqual({ context: '../..', dockerfile: 'deploy/docker/site-agent.Dockerfile' });
    for (const site of sites) {
      expect(services[site]!.depends_on).toEqual({ coordinator: { condition: 'service_healthy' } });
      expect(services[site]!.stop_grace_period).toBe('120s');
    }
  });

  it('mounts files that exist, or that setup writes (kits/, data/), read-only where they are inputs', () => {
    const generated = new Set(['kits/coordinator', ...sites.flatMap((s) => [`kits/sites/${s}`, `data/${s}`]), 'kits', 'data']);
    for (const [name, s] of Object.entries(services)) {
      for (const volume of s.volumes ?? []) {
        const [source, target, mode] = volume.split(':');
        if (!source!.startsWith('.')) {
          expect(compose.volumes, `${name}: named volume ${source}`).toHaveProperty(source!);
          continue;
        }
        const path = posix.normalize(source!);
        if (!generated.has(path)) expect(existsSync(join(dir, path)), `${name}: ${source}`).toBe(true);
        if (name !== 'setup') expect(mode, `${name}: ${volume} is read-only`).toBe('ro');
        expect(target).toMatch(/^\//);
      }
    }
  });

  it('gives each site its own kit, site.yaml, images and state volume', async () => {
    expect(consortium.sites.map((s) => s.id)).toEqual(sites);
    expect(consortium.coordinator.hostnames).toContain('coordinator');
    for (const site of sites) {
      const volumes = services[site]!.volumes!;
      expect(volumes).toEqual([
        `./kits/sites/${site}:/etc/federa/kit:ro`,
        `./sites/${site}.yaml:/etc/federa/site.yaml:ro`,
        `./data/${site}:/srv/images:ro`,
        `${site}-state:/var/lib/federa-site`,
      ]);
      // The agent's own loader accepts the file, and its paths are where compose mounts things.
      const config = await loadSiteConfig(join(dir, 'sites', `${site}.yaml`));
      expect(config.site.id).toBe(site);
      expect(config.coordinator.address).toBe('coordinator:50051');
      expect(config.coordinator.kit).toBe('/etc/federa/kit');
      expect(config.data.dir).toBe('/srv/images');
      expect(config.stateDir).toBe('/var/lib/federa-site');
      expect(config.status?.port).toBe(9464);
    }
  });

  it('setup provisions from consortium.yaml and its shell script parses', async () => {
    const setup = services.setup!;
    expect(setup.entrypoint).toEqual(['/bin/sh', '/setup/setup.sh']);
    const script = read(join(dir, 'setup.sh'));
    expect(script).toContain('federa provision /setup/consortium.yaml --out /setup/kits');
    expect(script).toContain('federa-sim --out /setup/data --sites 3');
    await run('sh', ['-n', join(dir, 'setup.sh')]);
    expect(read(join(dir, '.gitignore'))).toMatch(/^kits\/$/m);
  });

  it('the federa tool runs the linked federa bin', () => {
    expect(services.federa!.entrypoint).toEqual(['/usr/bin/tini', '--', '/opt/federa/node_modules/.bin/federa']);
    expect(existsSync(join(root, 'node_modules', '.bin', 'federa'))).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Helm: a renderer for the Go-template subset the chart uses

type Values = Record<string, unknown>;
interface Context {
  Values: Values;
  Release: { Name: string; Namespace: string; Service: string };
  Chart: { Name: string; Version: string; AppVersion: string };
}

type Node =
  | { kind: 'text'; text: string }
  | { kind: 'expr'; expr: string }
  | { kind: 'if'; cond: string; then: Node[]; else: Node[] }
  | { kind: 'define'; name: string; body: Node[] };

/** Splits text and actions, applying `{{-` and `-}}` whitespace trimming; drops comments. */
function tokenize(source: string): ({ text: string } | { action: string })[] {
  const tokens: ({ text: string } | { action: string })[] = [];
  const re = /\{\{(-?)\s*([\s\S]*?)\s*(-?)\}\}/g;
  let last = 0;
  let trimNext = false;
  for (let m = re.exec(source); m; m = re.exec(source)) {
    let text = source.slice(last, m.index);
    if (trimNext) text = text.replace(/^\s+/, '');
    if (m[1] === '-') text = text.replace(/\s+$/, '');
    tokens.push({ text });
    if (!/^\/\*[\s\S]*\*\/$/.test(m[2]!)) tokens.push({ action: m[2]! });
    trimNext = m[3] === '-';
    last = re.lastIndex;
  }
  let tail = source.slice(last);
  if (trimNext) tail = tail.replace(/^\s+/, '');
  tokens.push({ text: tail });
  return tokens;
}

function parseTemplate(source: string): Node[] {
  const tokens = tokenize(source);
  let i = 0;
  const block = (terminators: string[]): { nodes: Node[]; end: string } => {
    const nodes: Node[] = [];
    while (i < tokens.length) {
      const token = tokens[i++]!;
      if ('text' in token) {
        if (token.text) nodes.push({ kind: 'text', text: token.text });
        continue;
      }
      const action = token.action;
      if (terminators.includes(action)) return { nodes, end: action };
      let m: RegExpExecArray | null;
      if ((m = /^if\s+(.+)$/.exec(action))) {
        const then = block(['else', 'end']);
        const otherwise = then.end === 'else' ? block(['end']).nodes : [];
        nodes.push({ kind: 'if', cond: m[1]!, then: then.nodes, else: otherwise });
      } else if ((m = /^define\s+"([^"]+)"$/.exec(action))) {
        nodes.push({ kind: 'define', name: m[1]!, body: block(['end']).nodes });
      } else if (/^(else|end|range|with|block|template)\b/.test(action)) {
        throw new Error(`unsupported or unbalanced action {{ ${action} }}`);
      } else {
        nodes.push({ kind: 'expr', expr: action });
      }
    }
    if (terminators.length) throw new Error(`missing {{ ${terminators.join(' or ')} }}`);
    return { nodes, end: '' };
  };
  return block([]).nodes;
}

function lookup(ctx: Context, path: string): unknown {
  if (path === '.') return ctx;
  if (!path.startsWith('.')) throw new Error(`unsupported value ${path}`);
  let value: unknown = ctx;
  for (const key of path.slice(1).split('.')) {
    if (value === null || typeof value !== 'object' || !(key in value)) throw new Error(`${path}: no ${key}`);
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

const truthy = (v: unknown): boolean =>
  !(v === undefined || v === null || v === false || v === 0 || v === '' || (Array.isArray(v) && v.length === 0) || (typeof v === 'object' && !Array.isArray(v) && Object.keys(v as object).length === 0));

const indent = (text: string, n: number): string => text.split('\n').map((l) => ' '.repeat(n) + l).join('\n');

function evaluate(expr: string, ctx: Context, defines: Map<string, Node[]>): unknown {
  const [head, ...pipes] = expr.split('|').map((s) => s.trim());
  let value: unknown;
  let m: RegExpExecArray | null;
  if ((m = /^include\s+"([^"]+)"\s+\.$/.exec(head!))) {
    const body = defines.get(m[1]!);
    if (!body) throw new Error(`no define ${m[1]}`);
    value = renderNodes(body, ctx, defines);
  } else if ((m = /^toYaml\s+(\S+)$/.exec(head!))) {
    value = stringifyYaml(lookup(ctx, m[1]!)).replace(/\n$/, '');
  } else if ((m = /^not\s+(\S+)$/.exec(head!))) {
    value = !truthy(lookup(ctx, m[1]!));
  } else {
    value = lookup(ctx, head!);
  }
  for (const pipe of pipes) {
    const [fn, arg] = pipe.split(/\s+/);
    if (fn === 'nindent') value = '\n' + indent(String(value), Number(arg));
    else if (fn === 'indent') value = indent(String(value), Number(arg));
    else if (fn === 'quote') value = JSON.stringify(String(value));
    else throw new Error(`unsupported function ${fn}`);
  }
  return value;
}

function renderNodes(nodes: Node[], ctx: Context, defines: Map<string, Node[]>): string {
  let out = '';
  for (const node of nodes) {
    if (node.kind === 'text') out += node.text;
    else if (node.kind === 'expr') {
      const value = evaluate(node.expr, ctx, defines);
      if (value !== null && typeof value === 'object') throw new Error(`{{ ${node.expr} }} is an object: use toYaml`);
      out += String(value);
    } else if (node.kind === 'if') out += renderNodes(truthy(evaluate(node.cond, ctx, defines)) ? node.then : node.else, ctx, defines);
    else defines.set(node.name, node.body);
  }
  return out;
}

function deepMerge(base: Values, override: Values): Values {
  const out: Values = structuredClone(base);
  for (const [k, v] of Object.entries(override)) {
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && out[k] && typeof out[k] === 'object' ? deepMerge(out[k] as Values, v as Values) : v;
  }
  return out;
}

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> | null };
  spec: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
}

const chartDir = join(deploy, 'helm', 'federa-coordinator');

/**
 * Renders the chart like `helm template RELEASE chart --set ...` for our subset: objects, NOTES.txt, and the
 * rendered text of every template (what would reach the cluster, for the no-secret checks).
 */
function renderChart(overrides: Values = {}): { objects: K8sObject[]; notes: string; texts: string[] } {
  const chart = parseYaml(read(join(chartDir, 'Chart.yaml'))) as { name: string; version: string; appVersion: string };
  const ctx: Context = {
    Values: deepMerge(parseYaml(read(join(chartDir, 'values.yaml'))) as Values, overrides),
    Release: { Name: 'fed', Namespace: 'federa', Service: 'Helm' },
    Chart: { Name: chart.name, Version: chart.version, AppVersion: chart.appVersion },
  };
  const defines = new Map<string, Node[]>();
  const templates = readdirSync(join(chartDir, 'templates')).sort();
  for (const file of templates.filter((f) => f.endsWith('.tpl'))) renderNodes(parseTemplate(read(join(chartDir, 'templates', file))), ctx, defines);
  const objects: K8sObject[] = [];
  const texts: string[] = [];
  for (const file of templates.filter((f) => f.endsWith('.yaml'))) {
    const text = renderNodes(parseTemplate(read(join(chartDir, 'templates', file))), ctx, defines);
    texts.push(text);
    for (const doc of parseAllDocuments(text)) {
      if (doc.errors.length) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}\n${text}`);
      const object = doc.toJS() as K8sObject | null;
      if (object) objects.push(object);
    }
  }
  const notes = renderNodes(parseTemplate(read(join(chartDir, 'templates', 'NOTES.txt'))), ctx, defines);
  return { objects, notes, texts };
}

describe('deploy/helm/federa-coordinator', () => {
  const byKind = (objects: K8sObject[], kind: string): K8sObject[] => objects.filter((o) => o.kind === kind);

  it('renders with the default values into a Deployment, two Services, a PVC and PostgreSQL (StatefulSet and Service)', () => {
    const { objects } = renderChart();
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual([
      'Deployment/fed-federa-coordinator',
      'PersistentVolumeClaim/fed-federa-coordinator-data',
      'Service/fed-federa-coordinator-grpc',
      'Service/fed-federa-coordinator-http',
      'Service/fed-federa-coordinator-postgresql',
      'StatefulSet/fed-federa-coordinator-postgresql',
    ]);
    for (const o of objects) expect(o.metadata.labels?.['app.kubernetes.io/instance']).toBe('fed');
    // No Secret or ConfigMap: the operator creates every secret, so the chart can hold none.
    expect(objects.filter((o) => o.kind === 'Secret' || o.kind === 'ConfigMap')).toEqual([]);
  });

  it('renders without PostgreSQL when postgresql.enabled=false (the embedded database, as chart 0.1.0 did)', () => {
    const { objects } = renderChart({ postgresql: { enabled: false } });
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual([
      'Deployment/fed-federa-coordinator',
      'PersistentVolumeClaim/fed-federa-coordinator-data',
      'Service/fed-federa-coordinator-grpc',
      'Service/fed-federa-coordinator-http',
    ]);
    const pod = byKind(objects, 'Deployment')[0]!.spec.template.spec;
    expect((pod.containers[0].env as { name: string }[]).map((e) => e.name)).toEqual(['FEDERA_LOG_LEVEL', 'FEDERA_TRUST_PROXY']);
    expect(pod.initContainers).toBeUndefined();
  });

  it('runs the coordinator non-root, read-only, without capabilities, probed on the right paths and ports', () => {
    const [deployment] = byKind(renderChart().objects, 'Deployment');
    const pod = deployment!.spec.template.spec;
    expect(deployment!.spec.selector.matchLabels).toEqual(
      Object.fromEntries(Object.entries(deployment!.spec.template.metadata.labels as Record<string, string>)),
    );
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 10001, fsGroup: 10001 });
    const [container] = pod.containers;
    expect(container.securityContext).toMatchObject({
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    });
    const ports = Object.fromEntries((container.ports as { name: string; containerPort: number }[]).map((p) => [p.name, p.containerPort]));
    expect(ports).toEqual({ grpc: 50051, http: 8080 });
    expect(container.livenessProbe.httpGet).toEqual({ path: '/api/v1/health', port: 'http' });
    expect(container.readinessProbe.httpGet).toEqual({ path: '/api/v1/ready', port: 'http' });
    expect(container.startupProbe.httpGet).toEqual({ path: '/api/v1/health', port: 'http' });
    expect(container.resources.requests).toEqual({ cpu: '500m', memory: '1Gi' });
    expect(container.args).toEqual(['--kit', '/etc/federa/kits/coordinator', '--host', '0.0.0.0', '--http-host', '0.0.0.0', '--data-dir', '/var/lib/federa-coordinator']);
    expect(container.image).toBe('registry.example.org/federa/federa-coordinator:0.1.0');
    // By default the in-chart PostgreSQL: its password first (for $(POSTGRES_PASSWORD)), then the URL, then values.env.
    expect((container.env as { name: string }[]).map((e) => e.name)).toEqual(['POSTGRES_PASSWORD', 'DATABASE_URL', 'FEDERA_LOG_LEVEL', 'FEDERA_TRUST_PROXY']);
  });

  it('mounts the kit Secret read-only, the data PVC and an in-memory /tmp', () => {
    const [deployment] = byKind(renderChart().objects, 'Deployment');
    const pod = deployment!.spec.template.spec;
    const mounts = Object.fromEntries((pod.containers[0].volumeMounts as { name: string }[]).map((m) => [m.name, m]));
    expect(mounts.kit).toEqual({ name: 'kit', mountPath: '/etc/federa/kits/coordinator', readOnly: true });
    expect(mounts.data).toEqual({ name: 'data', mountPath: '/var/lib/federa-coordinator' });
    expect(mounts.tmp).toEqual({ name: 'tmp', mountPath: '/tmp' });
    const volumes = Object.fromEntries((pod.volumes as { name: string }[]).map((v) => [v.name, v]));
    expect(volumes.kit).toEqual({ name: 'kit', secret: { secretName: 'federa-coordinator-kit', defaultMode: 0o440 } });
    expect(volumes.data).toEqual({ name: 'data', persistentVolumeClaim: { claimName: 'fed-federa-coordinator-data' } });
    expect(volumes.tmp).toEqual({ name: 'tmp', emptyDir: { medium: 'Memory', sizeLimit: '256Mi' } });
  });

  it('exposes REST as ClusterIP and gRPC as a configurable LoadBalancer or NodePort', () => {
    const services = byKind(renderChart().objects, 'Service');
    const http = services.find((s) => s.metadata.name.endsWith('-http'))!;
    const grpc = services.find((s) => s.metadata.name.endsWith('-grpc'))!;
    expect(http.spec).toMatchObject({ type: 'ClusterIP', ports: [{ name: 'http', port: 8080, targetPort: 'http', protocol: 'TCP' }] });
    expect(grpc.spec).toMatchObject({ type: 'LoadBalancer', ports: [{ name: 'grpc', port: 50051, targetPort: 'grpc', protocol: 'TCP' }] });
    expect(grpc.spec.loadBalancerSourceRanges).toBeUndefined();
    const nodePort = byKind(renderChart({ service: { grpc: { type: 'NodePort', nodePort: 30051, loadBalancerSourceRanges: ['192.0.2.0/24'] } } }).objects, 'Service').find((s) =>
      s.metadata.name.endsWith('-grpc'),
    )!;
    expect(nodePort.spec).toMatchObject({ type: 'NodePort', loadBalancerSourceRanges: ['192.0.2.0/24'], ports: [{ nodePort: 30051 }] });
  });

  it('takes DATABASE_URL from an existing Secret, drops the PVC when persistence is off, and adds a ServiceMonitor', () => {
    const { objects } = renderChart({
      database: { existingSecret: 'federa-database' },
      persistence: { enabled: false },
      metrics: { serviceMonitor: { enabled: true, labels: { release: 'prometheus' } } },
    });
    expect(byKind(objects, 'PersistentVolumeClaim')).toEqual([]);
    const pod = byKind(objects, 'Deployment')[0]!.spec.template.spec;
    expect(pod.containers[0].env[0]).toEqual({ name: 'DATABASE_URL', valueFrom: { secretKeyRef: { name: 'federa-database', key: 'url' } } });
    expect((pod.volumes as { name: string }[]).find((v) => v.name === 'data')).toEqual({ name: 'data', emptyDir: {} });
    const [monitor] = byKind(objects, 'ServiceMonitor');
    expect(monitor!.metadata.labels).toMatchObject({ release: 'prometheus', 'app.kubernetes.io/name': 'federa-coordinator' });
    expect(monitor!.spec.endpoints).toEqual([
      { port: 'http', path: '/metrics', interval: '60s', authorization: { type: 'Bearer', credentials: { name: 'federa-metrics-token', key: 'token' } } },
    ]);
  });

  type EnvVar = { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } };
  const podOf = (objects: K8sObject[], kind: 'Deployment' | 'StatefulSet') => byKind(objects, kind)[0]!.spec.template;
  /** Kubernetes' $(VAR) expansion: a reference to a variable defined earlier in the list is replaced, others stay. */
  const expandEnv = (env: EnvVar[], given: Record<string, string>): Record<string, string> => {
    const out: Record<string, string> = {};
    for (const e of env) {
      const raw = e.value ?? given[e.name] ?? '';
      out[e.name] = raw.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (ref, name: string) => (name in out ? out[name]! : ref));
    }
    return out;
  };

  it('PostgreSQL: a StatefulSet of one with its own claim, behind a headless Service that only it matches', () => {
    const { objects } = renderChart();
    const [statefulSet] = byKind(objects, 'StatefulSet');
    const service = byKind(objects, 'Service').find((s) => s.metadata.name === 'fed-federa-coordinator-postgresql')!;
    expect(service.spec).toMatchObject({ type: 'ClusterIP', clusterIP: 'None', ports: [{ name: 'postgresql', port: 5432, targetPort: 'postgresql', protocol: 'TCP' }] });
    expect(statefulSet!.spec.serviceName).toBe(service.metadata.name);
    expect(statefulSet!.spec.replicas).toBe(1);
    const pod = podOf(objects, 'StatefulSet');
    expect(statefulSet!.spec.selector.matchLabels).toEqual(pod.metadata.labels);
    expect(service.spec.selector).toEqual(pod.metadata.labels);
    // The coordinator's and the database's selectors never pick each other's pods (Services route by them).
    const coordinatorPod = podOf(objects, 'Deployment');
    const matches = (selector: Record<string, string>, labels: Record<string, string>): boolean => Object.entries(selector).every(([k, v]) => labels[k] === v);
    for (const s of byKind(objects, 'Service')) {
      const forDatabase = s === service;
      expect(matches(s.spec.selector, pod.metadata.labels), s.metadata.name).toBe(forDatabase);
      expect(matches(s.spec.selector, coordinatorPod.metadata.labels), s.metadata.name).toBe(!forDatabase);
    }
    expect(matches(byKind(objects, 'Deployment')[0]!.spec.selector.matchLabels, pod.metadata.labels)).toBe(false);
    expect(matches(statefulSet!.spec.selector.matchLabels, coordinatorPod.metadata.labels)).toBe(false);
    expect(statefulSet!.spec.volumeClaimTemplates).toEqual([
      { metadata: { name: 'data', labels: pod.metadata.labels }, spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '20Gi' } } } },
    ]);
    const withClass = byKind(renderChart({ postgresql: { persistence: { storageClassName: 'fast-ssd', size: '50Gi' } } }).objects, 'StatefulSet')[0]!;
    expect(withClass.spec.volumeClaimTemplates[0].spec).toMatchObject({ storageClassName: 'fast-ssd', resources: { requests: { storage: '50Gi' } } });
  });

  it('PostgreSQL: non-root (uid 999), read-only root with emptyDirs, probed by pg_isready, with resources', () => {
    const pod = podOf(renderChart().objects, 'StatefulSet').spec;
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 999, runAsGroup: 999, fsGroup: 999, seccompProfile: { type: 'RuntimeDefault' } });
    expect(pod.automountServiceAccountToken).toBe(false);
    const [container] = pod.containers;
    expect(container.image).toBe('registry.example.org/federa/postgres:17-bookworm');
    expect(container.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 999,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { drop: ['ALL'] },
    });
    const mounts = Object.fromEntries((container.volumeMounts as { name: string; mountPath: string }[]).map((m) => [m.mountPath, m.name]));
    expect(mounts).toEqual({ '/var/lib/postgresql/data': 'data', '/var/run/postgresql': 'run', '/tmp': 'tmp', '/dev/shm': 'shm' });
    const volumes = Object.fromEntries((pod.volumes as { name: string }[]).map((v) => [v.name, v]));
    for (const name of ['run', 'tmp', 'shm']) expect(volumes[name], name).toMatchObject({ emptyDir: { medium: 'Memory' } });
    expect(volumes.data).toBeUndefined(); // the claim template provides it
    const env = Object.fromEntries((container.env as EnvVar[]).map((e) => [e.name, e]));
    expect(env.POSTGRES_PASSWORD).toEqual({ name: 'POSTGRES_PASSWORD', valueFrom: { secretKeyRef: { name: 'federa-postgresql', key: 'password' } } });
    expect(env.POSTGRES_USER?.value).toBe('federa');
    expect(env.POSTGRES_DB?.value).toBe('federa');
    expect(env.PGDATA?.value).toMatch(/^\/var\/lib\/postgresql\/data\/[^/]+$/); // below the mount point (lost+found)
    const isReady = ['pg_isready', '-h', '127.0.0.1', '-p', '5432', '-U', 'federa', '-d', 'federa'];
    for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe']) expect(container[probe].exec.command, probe).toEqual(isReady);
    expect(container.livenessProbe).toMatchObject({ periodSeconds: 15, timeoutSeconds: 5, failureThreshold: 4 });
    expect(container.ports).toEqual([{ name: 'postgresql', containerPort: 5432, protocol: 'TCP' }]);
    expect(container.resources).toEqual({ requests: { cpu: '250m', memory: '512Mi' }, limits: { cpu: '2', memory: '2Gi' } });
  });

  it('the coordinator composes DATABASE_URL from the Service name, user, database and the password Secret', () => {
    const { objects } = renderChart({ postgresql: { username: 'fl', database: 'consortium', auth: { existingSecret: 'pg-auth', secretKey: 'pw' } } });
    const pod = podOf(objects, 'Deployment').spec;
    const env = pod.containers[0].env as EnvVar[];
    const password = env.findIndex((e) => e.name === 'POSTGRES_PASSWORD');
    const url = env.findIndex((e) => e.name === 'DATABASE_URL');
    expect(env[password]).toEqual({ name: 'POSTGRES_PASSWORD', valueFrom: { secretKeyRef: { name: 'pg-auth', key: 'pw' } } });
    // $(VAR) expands only variables defined before it.
    expect(password).toBeGreaterThanOrEqual(0);
    expect(password).toBeLessThan(url);
    expect(env[url]!.valueFrom).toBeUndefined();
    // What the container sees once Kubernetes expands it, with a password as the NOTES make it (hex).
    const secret = 'a3f9'.repeat(16);
    const parsed = new URL(expandEnv(env, { POSTGRES_PASSWORD: secret }).DATABASE_URL!);
    expect(parsed.protocol).toBe('postgresql:');
    expect([parsed.username, parsed.password, parsed.hostname, parsed.port, parsed.pathname]).toEqual(['fl', secret, 'fed-federa-coordinator-postgresql', '5432', '/consortium']);
    expect(parsed.searchParams.get('sslmode')).toBe('disable');
    expect(byKind(objects, 'Service').find((s) => s.metadata.name === parsed.hostname)?.spec.ports[0].port).toBe(5432);
    // It waits for the database with pg_isready, as the database's non-root user.
    const [wait] = pod.initContainers;
    expect(wait.image).toBe('registry.example.org/federa/postgres:17-bookworm');
    expect(wait.command.join(' ')).toContain('pg_isready -q -t 5 -h fed-federa-coordinator-postgresql -p 5432');
    expect(wait.securityContext).toMatchObject({ runAsNonRoot: true, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    expect(wait.resources.limits).toBeDefined();
  });

  it('database.existingSecret wins over postgresql.enabled: no in-chart database, the URL from that Secret', () => {
    const { objects, notes } = renderChart({ database: { existingSecret: 'federa-database' }, postgresql: { enabled: true } });
    expect(byKind(objects, 'StatefulSet')).toEqual([]);
    expect(objects.map((o) => o.metadata.name)).not.toContain('fed-federa-coordinator-postgresql');
    const pod = podOf(objects, 'Deployment').spec;
    expect(pod.initContainers).toBeUndefined();
    const env = pod.containers[0].env as EnvVar[];
    expect(env.filter((e) => e.name === 'DATABASE_URL')).toEqual([{ name: 'DATABASE_URL', valueFrom: { secretKeyRef: { name: 'federa-database', key: 'url' } } }]);
    expect(env.map((e) => e.name)).not.toContain('POSTGRES_PASSWORD');
    expect(notes).toContain('an existing PostgreSQL, its URL in the Secret federa-database');
    expect(notes).not.toContain('federa-postgresql');
  });

  /** Literal credentials in rendered text: a URL with a password, or a secret-looking env var with a value. */
  const credentialsIn = (text: string): string[] => {
    const found: string[] = [];
    for (const m of text.matchAll(/postgres(?:ql)?:\/\/[^:@\s/'"]+:([^@\s'"]*)@/g)) if (m[1] !== '$(POSTGRES_PASSWORD)' && m[1] !== '...') found.push(m[0]); // '...': a placeholder in a comment
    for (const doc of parseAllDocuments(text)) {
      const visit = (node: unknown): void => {
        if (Array.isArray(node)) node.forEach(visit);
        else if (node && typeof node === 'object') {
          const o = node as Record<string, unknown>;
          if (typeof o.name === 'string' && /PASSWORD|SECRET|TOKEN|KEY/i.test(o.name) && 'value' in o) found.push(`${o.name}=${String(o.value)}`);
          for (const [k, v] of Object.entries(o)) {
            if (/^(password|passwd|token)$/i.test(k) && typeof v === 'string' && v !== '') found.push(`${k}: ${v}`);
            visit(v);
          }
        }
      };
      visit(doc.toJS());
    }
    return found;
  };

  it('no password or token is in the values or in any rendered manifest, whichever database is chosen', () => {
    // The check itself finds what it looks for.
    expect(credentialsIn('url: postgresql://federa:hunter2@db:5432/federa')).toHaveLength(1);
    expect(credentialsIn('env:\n  - name: POSTGRES_PASSWORD\n    value: hunter2\n')).toHaveLength(1);
    expect(credentialsIn('stringData:\n  password: hunter2\n')).toHaveLength(1);
    expect(credentialsIn('value: "postgresql://federa:$(POSTGRES_PASSWORD)@db:5432/federa"')).toEqual([]);
    expect(credentialsIn(read(join(chartDir, 'values.yaml')))).toEqual([]);
    for (const overrides of [{}, { postgresql: { enabled: false } }, { database: { existingSecret: 'federa-database' } }, { metrics: { serviceMonitor: { enabled: true } } }] as Values[]) {
      const { texts, notes } = renderChart(overrides);
      for (const text of texts) expect(credentialsIn(text), JSON.stringify(overrides)).toEqual([]);
      expect(notes).not.toMatch(/postgres(?:ql)?:\/\/[^:@\s/]+:[^@\s$]+@/);
    }
  });

  it('NOTES.txt renders and documents the kit Secret, the database password Secret and the first admin token', () => {
    const { notes } = renderChart();
    expect(notes).not.toContain('{{');
    expect(notes).toContain('create secret generic federa-coordinator-kit --from-file=kits/coordinator/');
    expect(notes).toContain('create secret generic federa-postgresql --from-literal=password="$(openssl rand -hex 32)"');
    expect(notes).toContain('federa token create --role admin');
    expect(notes).toContain('exec deploy/fed-federa-coordinator');
  });

  it('NOTES.txt: with the embedded database, the admin token is made offline with --data-dir on the stopped coordinator\'s claim', () => {
    const { notes } = renderChart({ postgresql: { enabled: false } });
    expect(notes).not.toContain('exec deploy/');
    expect(notes).not.toContain('federa-postgresql');
    expect(notes).toContain('scale deploy/fed-federa-coordinator --replicas=0');
    const overrides = /--overrides='([^']+)'/.exec(notes)?.[1];
    const pod = JSON.parse(overrides!) as { spec: { containers: { command: string[]; volumeMounts: { mountPath: string }[] }[]; volumes: { persistentVolumeClaim: { claimName: string } }[] } };
    const [container] = pod.spec.containers;
    expect(container!.command.slice(0, 3)).toEqual(['/opt/federa/node_modules/.bin/federa', 'token', 'create']);
    expect(container!.command.slice(container!.command.indexOf('--data-dir'))).toEqual(['--data-dir', '/var/lib/federa-coordinator']);
    expect(container!.volumeMounts[0]!.mountPath).toBe('/var/lib/federa-coordinator');
    expect(pod.spec.volumes[0]!.persistentVolumeClaim.claimName).toBe('fed-federa-coordinator-data');
    expect(renderChart({ postgresql: { enabled: false }, persistence: { enabled: false } }).notes).toContain('no admin token can be made offline');
  });

  it('the token commands in NOTES.txt use only flags that `federa token create --help` documents', async () => {
    const { stdout } = await run(bundledNode, [join(root, 'node_modules', '.bin', 'federa'), 'token', 'create', '--help']);
    const flags = new Set<string>();
    for (const overrides of [{}, { postgresql: { enabled: false } }] as Values[]) {
      const { notes } = renderChart(overrides);
      const text = notes.replace(/\\\n\s*/g, ' ').replace(/","/g, ' ');
      for (const m of text.matchAll(/federa["\s]+token\s+create\s+([^\n]*)/g)) for (const f of m[1]!.match(/--[a-z-]+/g) ?? []) flags.add(f);
    }
    expect([...flags].sort()).toEqual(['--data-dir', '--name', '--role']);
    // The sentence naming the offline flags, too.
    expect(renderChart().notes).toContain('(--database-url, or DATABASE_URL from the environment; --data-dir for the embedded one)');
    for (const flag of [...flags, '--database-url']) expect(stdout).toContain(`${flag} <`);
  });

  it('the renderer refuses what the chart does not use (so an unsupported construct cannot slip through)', () => {
    const ctx: Context = { Values: { a: 'x' }, Release: { Name: 'r', Namespace: 'n', Service: 'Helm' }, Chart: { Name: 'c', Version: '1', AppVersion: '1' } };
    for (const source of ['{{ default "y" .Values.a }}', '{{ .Values.a | b64enc }}', '{{ if .Values.a }}1{{ else if .Values.a }}2{{ end }}', '{{ range .Values.a }}{{ end }}', '{{ printf "%s" .Values.a }}', '{{ .Values.b }}', '{{ if .Values.a }}']) {
      expect(() => renderNodes(parseTemplate(source), ctx, new Map()), source).toThrow();
    }
    expect(renderNodes(parseTemplate('{{ if not .Values.a }}1{{ else }}{{ .Values.a | quote }}{{ end }}'), ctx, new Map())).toBe('"x"');
  });
});

// ---------------------------------------------------------------------------------------------------------------
// systemd units

function parseUnit(text: string): Map<string, string[]> {
  const entries = new Map<string, string[]>();
  let section = '';
  for (const line of text.split('\n').map((l) => l.trim())) {
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(\w+)\]$/.exec(line);
    if (header) {
      section = header[1]!;
      continue;
    }
    const eq = line.indexOf('=');
    const key = `${section}.${line.slice(0, eq)}`;
    entries.set(key, [...(entries.get(key) ?? []), line.slice(eq + 1)]);
  }
  return entries;
}

describe('deploy/systemd', () => {
  const readme = read(join(root, 'README.md'));
  const units = {
    coordinator: { file: join(deploy, 'systemd', 'federa-coordinator.service'), bin: 'federa-coordinator', state: 'federa-coordinator' },
    site: { file: join(deploy, 'systemd', 'federa-site.service'), bin: 'federa-site', state: 'federa-site' },
  };

  for (const [name, unit] of Object.entries(units)) {
    it(`${name}: ExecStart is the linked bin, and it writes only to /var/lib/${unit.state}`, () => {
      const entries = parseUnit(read(unit.file));
      const exec = entries.get('Service.ExecStart')![0]!.split(/\s+/);
      expect(exec[0]).toBe(`/opt/federa/node_modules/.bin/${unit.bin}`);
      expect(existsSync(join(root, 'node_modules', '.bin', unit.bin))).toBe(true);
      expect(entries.get('Service.StateDirectory')).toEqual([unit.state]);
      expect(entries.get('Service.ReadWritePaths')).toEqual([`/var/lib/${unit.state}`]);
      expect(entries.get('Service.ProtectSystem')).toEqual(['strict']);
      expect(entries.get('Service.User')).toEqual(['federa']);
      // The README's systemd steps name the site's folder; its coordinator examples use --data-dir /var/lib/federa
      // (not the unit's /var/lib/federa-coordinator), so for the coordinator the images and the chart are the reference.
      if (name === 'site') expect(readme).toContain(`/var/lib/${unit.state}`);
      else {
        expect(read(join(deploy, 'docker', 'coordinator.Dockerfile'))).toContain('VOLUME ["/var/lib/federa-coordinator"]');
        expect(read(join(chartDir, 'templates', 'deployment.yaml'))).toContain('mountPath: /var/lib/federa-coordinator');
      }
      if (name === 'coordinator') {
        expect(exec.slice(exec.indexOf('--data-dir'), exec.indexOf('--data-dir') + 2)).toEqual(['--data-dir', '/var/lib/federa-coordinator']);
        expect(exec.slice(exec.indexOf('--kit'), exec.indexOf('--kit') + 2)).toEqual(['--kit', '/etc/federa/kits/coordinator']);
        expect(exec.slice(exec.indexOf('--http-host'), exec.indexOf('--http-host') + 2)).toEqual(['--http-host', '127.0.0.1']);
      } else {
        expect(exec.slice(1)).toEqual(['start', '--config', '/etc/federa/site.yaml']);
        expect(readme).toContain('/etc/federa/site.yaml');
        expect(entries.get('Service.WorkingDirectory')).toEqual(['/var/lib/federa-site']);
      }
    });
  }

  const analyze = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((p) => existsSync(p));
  it.skipIf(!analyze)('systemd-analyze verify finds nothing but the absent /opt/federa install', async () => {
    for (const unit of Object.values(units)) {
      let stderr = '';
      try {
        ({ stderr } = await run(analyze!, ['verify', '--man=no', unit.file], { env: { ...process.env, SYSTEMD_LOG_LEVEL: 'warning' } }));
      } catch (error) {
        stderr = (error as { stderr?: string }).stderr ?? String(error);
      }
      const complaints = stderr
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l !== '')
        // The binaries exist only once Federa is installed under /opt/federa.
        .filter((l) => !/\/opt\/federa\/node_modules\/\.bin\/federa[\w-]*/.test(l) || !/(is not executable|No such file or directory)/.test(l))
        // Not about our unit: the container has no running systemd, so verify may complain about its own manager.
        .filter((l) => !/Failed to (connect|initialize|setup|set up)|System has not been booted|not running|Unit .*\.(target|socket|slice) not found/i.test(l))
        .filter((l) => !/^\S+\.service: Command .* is not executable/.test(l) || !l.includes('/opt/federa/'));
      expect(complaints, rel(unit.file)).toEqual([]);
    }
  });
});
