import { execFile, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, cp, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from './support/ports.js';

/**
 * Builds the coordinator and site-agent images from deploy/docker with Debian's podman, on a base made from Debian
 * packages alone (debootstrap, then deploy/docker/debian-build.Dockerfile for the build stage), and starts them:
 * the coordinator answers its health and readiness checks and its image's HEALTHCHECK, runs as uid 10001 on a
 * read-only root, and a site container from the site image passes `doctor` against it and connects.
 *
 * It skips, saying why, only where containers cannot start: no podman, no debootstrap or not root to make the base,
 * or a runtime that cannot start a container here. FEDERA_REQUIRE_CONTAINERS=1 turns the skip into a failure.
 * Images and layers stay in podman's store, so a second run rebuilds only what changed.
 */

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const REQUIRE = process.env.FEDERA_REQUIRE_CONTAINERS === '1';
const BASE = 'localhost/federa-test-debian:bookworm';
const BUILD = 'localhost/federa-test-build:bookworm';
const COORDINATOR = 'localhost/federa-coordinator:test';
const SITE = 'localhost/federa-site:test';

function sh(command: string): { code: number; out: string } {
  const result = spawnSync('bash', ['-c', command], { encoding: 'utf8' });
  return { code: result.status ?? 1, out: `${result.stdout}${result.stderr}` };
}

/**
 * How podman can start a container here, or why it cannot. Some sandboxes refuse crun's cgroup setup or raising a
 * resource limit; runc with limits at the host's own hard limits works there.
 */
function containerRuntime(): { global: string[]; limits: string[] } | string {
  if (sh('command -v podman').code !== 0) return 'podman is not installed (apt-get install podman runc debootstrap)';
  if (process.getuid?.() !== 0) return 'not root: the test builds a Debian base with debootstrap and runs rootful podman';
  const hard = (flag: string, cap: number): number => Math.min(Number(sh(`ulimit -H${flag}`).out.trim()) || cap, cap);
  const limits = ['--ulimit', `nofile=${hard('n', 65536)}:${hard('n', 65536)}`, '--ulimit', `nproc=${hard('u', 8192)}:${hard('u', 8192)}`];
  const candidates = [
    { global: [], limits: [] },
    { global: [], limits },
    { global: ['--runtime', 'runc'], limits },
  ];
  if (sh(`podman image exists ${BASE}`).code !== 0) {
    if (sh('command -v debootstrap').code !== 0) return 'debootstrap is not installed, so no Debian base image can be made (apt-get install debootstrap)';
    return { global: [], limits: [] };
  }
  const tried: string[] = [];
  for (const c of candidates) {
    const probe = sh(`podman ${c.global.join(' ')} run --rm ${c.limits.join(' ')} ${BASE} true`);
    if (probe.code === 0) return c;
    tried.push(`${[...c.global, ...c.limits].join(' ') || 'defaults'}: ${probe.out.trim().split('\n').at(-1)}`);
  }
  return `no container starts here (${tried.join('; ')})`;
}

function run(args: string[], options: { timeoutMs?: number; input?: string } = {}): Promise<{ code: number; out: string }> {
  return new Promise((done) => {
    const child = execFile(args[0]!, args.slice(1), { timeout: options.timeoutMs ?? 900_000, maxBuffer: 64 * 1024 * 1024, cwd: root }, (error, stdout, stderr) =>
      done({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, out: `${stdout}${stderr}` }),
    );
    if (options.input !== undefined) child.stdin!.end(options.input);
  });
}

async function must(args: string[], what: string, timeoutMs?: number): Promise<string> {
  const result = await run(args, { timeoutMs });
  if (result.code !== 0) throw new Error(`${what} failed (exit ${result.code}): ${args.join(' ')}\n${result.out.split('\n').slice(-40).join('\n')}`);
  return result.out;
}

let runtime = containerRuntime();
// The base may be missing: make it first (debootstrap), then probe how containers start.
const skipReason = typeof runtime === 'string' ? runtime : null;
if (skipReason && !REQUIRE) process.stderr.write(`[containers] skipping the image build-and-start test: ${skipReason}\n`);

describe.skipIf(skipReason !== null && !REQUIRE)('container images built from Debian packages, started with podman', () => {
  let work: string;
  let podman: string[];
  let limits: string[];
  const containers: string[] = [];

  beforeAll(async () => {
    if (typeof runtime === 'string') throw new Error(`FEDERA_REQUIRE_CONTAINERS=1 but ${runtime}`);
    work = await mkdtemp(join(tmpdir(), 'federa-images-'));
    if (sh(`podman image exists ${BASE}`).code !== 0) {
      const rootfs = join(work, 'rootfs');
      await must(['debootstrap', '--variant=minbase', 'bookworm', rootfs, 'http://deb.debian.org/debian'], 'debootstrap of Debian bookworm', 900_000);
      const imported = sh(`tar -C ${rootfs} -c . | podman import - ${BASE}`);
      if (imported.code !== 0) throw new Error(`podman import failed: ${imported.out}`);
      await rm(rootfs, { recursive: true, force: true });
      runtime = containerRuntime();
      if (typeof runtime === 'string') throw new Error(runtime);
    }
    podman = ['podman', ...runtime.global];
    limits = runtime.limits;
    process.stderr.write(`[containers] podman starts containers here with ${[...runtime.global, ...runtime.limits].join(' ') || 'its defaults'}\n`);
    // The build context as a release archive has it: the repository's files, none of its build output.
    const context = join(work, 'context');
    const files = sh(`cd ${root} && git ls-files -co --exclude-standard`).out.trim().split('\n');
    for (const file of files) if (existsSync(join(root, file))) await cp(join(root, file), join(context, file), { recursive: true });
    const caBundle = [process.env.NODE_EXTRA_CA_CERTS, '/etc/ssl/certs/ca-certificates.crt'].find((f) => f && existsSync(f));
    const build = (file: string, tag: string, args: string[], dir = context): Promise<string> =>
      must(
        [...podman, 'build', '--network', 'host', '--format', 'docker', ...limits, ...(caBundle ? ['--secret', `id=npm-ca,src=${caBundle}`] : []), '-f', file, ...args, '-t', tag, dir],
        `building ${tag}`,
        1_800_000,
      );
    await build(join(context, 'deploy', 'docker', 'debian-build.Dockerfile'), BUILD, ['--build-arg', `BASE_IMAGE=${BASE}`], join(context, 'deploy', 'docker'));
    const bases = ['--build-arg', `BUILD_IMAGE=${BUILD}`, '--build-arg', `RUNTIME_IMAGE=${BASE}`];
    await build(join(context, 'deploy', 'docker', 'coordinator.Dockerfile'), COORDINATOR, bases);
    await build(join(context, 'deploy', 'docker', 'site-agent.Dockerfile'), SITE, bases);
  }, 3_600_000);

  afterAll(async () => {
    for (const name of containers) await run([...podman, 'rm', '--force', '--time', '5', name]);
    if (work) await rm(work, { recursive: true, force: true });
  }, 120_000);

  it('runs the coordinator as uid 10001 on a read-only root, healthy and ready, and a site agent that passes doctor and connects', async () => {
    // A consortium from the image's own CLI, kits owned by the image's user as a hospital would mount them.
    const kits = join(work, 'kits');
    await mkdir(kits);
    await writeFile(join(work, 'consortium.yaml'), 'consortium: { name: image test }\ncoordinator: { hostnames: [localhost], ips: [127.0.0.1] }\nsites: [{ id: hospital-a }]\n');
    const [grpcPort, httpPort] = [await freePort(), await freePort()];
    /** One `podman run`: the images' own hardening (read-only root, a tmpfs /tmp) unless a setup step runs as root. */
    const podmanRun = (
      image: string,
      options: { volumes: string[]; env?: string[]; detachAs?: string; setupAsRoot?: boolean; entrypoint?: string },
      args: string[],
    ): string[] => [
      ...podman,
      'run',
      ...(options.detachAs ? ['--detach', '--name', options.detachAs] : ['--rm']),
      '--network',
      'host',
      ...(options.setupAsRoot ? ['--user', '0:0'] : ['--read-only', '--tmpfs', '/tmp']),
      ...limits,
      ...(options.env ?? []).flatMap((e) => ['-e', e]),
      ...options.volumes.flatMap((v) => ['-v', v]),
      ...(options.entrypoint ? ['--entrypoint', `/opt/federa/node_modules/.bin/${options.entrypoint}`] : []),
      image,
      ...args,
    ];
    /** Polls until `probe` says yes, or fails with the container's last log lines. */
    const until = async (container: string, what: string, probe: () => Promise<boolean>): Promise<void> => {
      const deadline = Date.now() + 120_000;
      while (!(await probe().catch(() => false))) {
        if (Date.now() > deadline) throw new Error(`${what} within 120 s:\n${(await run([...podman, 'logs', '--tail', '40', container])).out}`);
        await new Promise((r) => setTimeout(r, 500));
      }
    };
    await must(podmanRun(COORDINATOR, { volumes: [`${work}:/setup`], setupAsRoot: true, entrypoint: 'federa' }, ['provision', '/setup/consortium.yaml', '--out', '/setup/kits']), 'provisioning in the image');
    await must(['chown', '-R', '10001:10001', kits], 'handing the kits to uid 10001');
    const data = join(work, 'coordinator-data');
    await mkdir(data, { mode: 0o700 });
    await must(['chown', '10001:10001', data], 'handing the data folder to uid 10001');
    const volumes = [`${join(kits, 'coordinator')}:/etc/federa/kits/coordinator:ro`, `${data}:/var/lib/federa-coordinator`];
    const tokenOut = await must(
      podmanRun(COORDINATOR, { volumes, entrypoint: 'federa' }, ['token', 'create', '--role', 'admin', '--name', 'image test', '--data-dir', '/var/lib/federa-coordinator']),
      'creating the first admin token in the coordinator image',
    );
    const admin = /fed_[A-Za-z0-9_-]+/.exec(tokenOut)?.[0];
    expect(admin, tokenOut).toBeDefined();

    const name = `federa-coordinator-test-${process.pid}`;
    containers.push(name);
    const coordinatorArgs = ['--kit', '/etc/federa/kits/coordinator', '--host', '127.0.0.1', '--grpc-port', String(grpcPort), '--http-port', String(httpPort), '--data-dir', '/var/lib/federa-coordinator'];
    await must(
      podmanRun(COORDINATOR, { volumes, env: [`FEDERA_HEALTHCHECK_URL=http://127.0.0.1:${httpPort}/api/v1/health`], detachAs: name }, coordinatorArgs),
      'starting the coordinator container',
    );
    const url = `http://127.0.0.1:${httpPort}`;
    await until(name, 'the coordinator container was not ready', async () => (await fetch(`${url}/api/v1/ready`)).ok);
    expect((await fetch(`${url}/api/v1/health`)).status).toBe(200);
    expect((await run([...podman, 'healthcheck', 'run', name])).code).toBe(0);
    expect((await must([...podman, 'exec', name, 'id', '-u'], 'id in the container')).trim()).toBe('10001');
    const write = await run([...podman, 'exec', name, 'sh', '-c', 'touch /opt/federa/x']);
    expect(write.code, write.out).not.toBe(0);
    expect(write.out).toMatch(/Read-only file system/);

    // A site container: its kit and site.yaml read-only, synthetic images read-only, state on its own folder.
    const siteDir = join(work, 'site');
    await mkdir(join(siteDir, 'state'), { recursive: true });
    await must(
      podmanRun(SITE, { volumes: [`${siteDir}:/site`], setupAsRoot: true, entrypoint: 'federa-sim' }, ['--out', '/site/data', '--sites', '1', '--images', '24', '--holdout', '0', '--seed', '3']),
      'synthetic data in the site image',
    );
    const siteYaml = [
      'site: { id: hospital-a }',
      `coordinator: { address: "127.0.0.1:${grpcPort}", serverName: localhost, kit: /etc/federa/kit }`,
      'data: { dir: /srv/images/hospital-a, labels: /srv/images/hospital-a/labels.csv }',
      'stateDir: /var/lib/federa-site',
      '',
    ].join('\n');
    await writeFile(join(siteDir, 'site.yaml'), siteYaml);
    await must(['chown', '-R', '10001:10001', siteDir, join(kits, 'sites', 'hospital-a')], 'handing the site files to uid 10001');
    await chmod(join(siteDir, 'state'), 0o700);
    const site = {
      volumes: [`${join(kits, 'sites', 'hospital-a')}:/etc/federa/kit:ro`, `${join(siteDir, 'site.yaml')}:/etc/federa/site.yaml:ro`, `${join(siteDir, 'data')}:/srv/images:ro`, `${join(siteDir, 'state')}:/var/lib/federa-site`],
      env: ['FEDERA_HEALTHCHECK_URL=none'],
    };
    const doctor = await run(podmanRun(SITE, site, ['doctor', '--config', '/etc/federa/site.yaml']));
    expect(doctor.code, doctor.out).toBe(0);
    expect(doctor.out).toMatch(/coordinator/i);

    const siteName = `federa-site-test-${process.pid}`;
    containers.push(siteName);
    await must(podmanRun(SITE, { ...site, detachAs: siteName }, ['start', '--config', '/etc/federa/site.yaml']), 'starting the site container');
    await until(siteName, 'the site container did not connect', async () => {
      const sites = (await (await fetch(`${url}/api/v1/sites`, { headers: { authorization: `Bearer ${admin!}` } })).json()) as Array<{ id: string; connected: boolean }>;
      return sites.some((s) => s.id === 'hospital-a' && s.connected);
    });
    expect((await must([...podman, 'exec', siteName, 'id', '-u'], 'id in the site container')).trim()).toBe('10001');
    // What the agent wrote is on the state volume, owner-only.
    const ledger = join(siteDir, 'state', 'ledger', 'ledger.jsonl');
    expect((await readFile(ledger, 'utf8')).split('\n').filter(Boolean).length).toBeGreaterThan(1);
    expect((await stat(ledger)).mode & 0o077).toBe(0);
  }, 600_000);
});
