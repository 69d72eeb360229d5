import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { stringify as toYaml } from 'yaml';

/**
 * The processes of a local consortium, started the way their operators start them: the CLIs and the coordinator's
 * and site agent's entry points, each with its log file.
 */
export type ApiRole = 'admin' | 'researcher' | 'auditor';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const COORDINATOR_MAIN = join(repoRoot, 'coordinator/dist/main.js');
export const FEDERA_MAIN = join(repoRoot, 'coordinator/dist/cli/federa.js');
export const SITE_MAIN = join(repoRoot, 'site-agent/dist/cli/main.js');

/** `federa token create --role admin`: the offline way to the first admin token. */
export async function offlineAdminToken(dataDir: string, databaseUrl: string | undefined, logPath: string): Promise<string> {
  const args = [FEDERA_MAIN, 'token', 'create', '--role', 'admin', '--name', 'consortium admin', '--data-dir', dataDir, '--json'];
  if (databaseUrl) args.push('--database-url', databaseUrl);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
  const log = createWriteStream(logPath);
  child.stderr.pipe(log);
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  if (code !== 0) throw new Error(`federa token create failed with code ${code}; see ${logPath}`);
  return (JSON.parse(stdout) as { token: string }).token;
}

export async function issueToken(httpPort: number, adminToken: string, role: ApiRole, name: string): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${httpPort}/api/v1/tokens`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name, role, expiresInDays: 1 }),
  });
  if (!response.ok) throw new Error(`POST /tokens (${role}): ${response.status} ${await response.text()}`);
  return ((await response.json()) as { token: string }).token;
}

/** What a consortium operator does first: `federa provision` writes a kit per participant. */
export async function provisionKits(workDir: string, kitsDir: string, siteIds: string[], logPath: string, sharedKey = false): Promise<void> {
  const config = join(workDir, 'consortium.yaml');
  await writeFile(
    config,
    toYaml({
      consortium: { name: 'local demo consortium' },
      coordinator: { hostnames: ['localhost'], ips: ['127.0.0.1'] },
      sites: siteIds.map((id) => ({ id })),
    }),
  );
  const child = launch('provision', [FEDERA_MAIN, 'provision', config, '--out', kitsDir, ...(sharedKey ? ['--shared-key'] : [])], logPath);
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  if (code !== 0) {
    const tail = (await readFile(logPath, 'utf8').catch(() => '')).split('\n').slice(-15).join('\n');
    throw new Error(`federa provision failed with code ${code}:\n${tail}`);
  }
}

export function launch(name: string, args: string[], logPath: string, env: NodeJS.ProcessEnv = {}): ChildProcess {
  const log = createWriteStream(logPath);
  const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  child.on('error', (error) => log.write(`failed to start ${name}: ${error.message}\n`));
  return child;
}

export async function waitForReadyFile(path: string, child: ChildProcess, logPath: string): Promise<{ httpPort: number; grpcPort: number }> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) {
      const tail = (await readFile(logPath, 'utf8').catch(() => '')).split('\n').slice(-15).join('\n');
      throw new Error(`coordinator exited with code ${child.exitCode} before it was ready:\n${tail}`);
    }
    try {
      return JSON.parse(await readFile(path, 'utf8')) as { httpPort: number; grpcPort: number };
    } catch {
      if (Date.now() > deadline) throw new Error(`coordinator was not ready within 60 s; see ${logPath}`);
      await sleep(100);
    }
  }
}

export async function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}
