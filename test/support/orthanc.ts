import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';

/**
 * A real PACS for the DICOMweb tests: Debian's Orthanc with its DICOMweb plugin, started in a temp folder on a
 * free loopback port with basic auth on. Without it the PACS tests skip and say how to install it, unless
 * FEDERA_REQUIRE_PACS=1 (CI), which makes them fail instead, so a missing PACS cannot pass as tested.
 */
export const ORTHANC = process.env.FEDERA_ORTHANC ?? '/usr/sbin/Orthanc';
export const ORTHANC_DICOMWEB_PLUGIN = process.env.FEDERA_ORTHANC_DICOMWEB ?? '/usr/share/orthanc/plugins/libOrthancDicomWeb.so';
export const REQUIRE_PACS = process.env.FEDERA_REQUIRE_PACS === '1';
export const HAVE_PACS = existsSync(ORTHANC) && existsSync(ORTHANC_DICOMWEB_PLUGIN);
/** True when the PACS suites should skip (no Orthanc, and not required). */
export const SKIP_PACS = !HAVE_PACS && !REQUIRE_PACS;
if (SKIP_PACS) {
  process.stderr.write(`[pacs] skipping the DICOMweb tests: ${ORTHANC} or ${ORTHANC_DICOMWEB_PLUGIN} is missing (apt-get install orthanc orthanc-dicomweb)\n`);
}

export interface RunningOrthanc {
  /** http://127.0.0.1:PORT */
  baseUrl: string;
  /** DICOMweb root: http://127.0.0.1:PORT/dicom-web */
  dicomWebUrl: string;
  username: string;
  password: string;
  /** Uploads Part 10 files (POST /instances); returns the Orthanc instance ids. */
  upload(files: readonly string[]): Promise<string[]>;
  stop(): Promise<void>;
}

export async function startOrthanc(options: { username?: string; password?: string } = {}): Promise<RunningOrthanc> {
  if (!HAVE_PACS) throw new Error(`FEDERA_REQUIRE_PACS=1 but ${ORTHANC} or its DICOMweb plugin is missing: apt-get install orthanc orthanc-dicomweb`);
  const username = options.username ?? 'federa';
  const password = options.password ?? 'orthanc-test-password';
  const dir = await mkdtemp(join(tmpdir(), 'federa-orthanc-'));
  const port = await freePort();
  const config = {
    Name: 'federa-test',
    HttpPort: port,
    HttpBindAddress: '127.0.0.1',
    RemoteAccessAllowed: false,
    AuthenticationEnabled: true,
    RegisteredUsers: { [username]: password },
    DicomServerEnabled: false,
    StorageDirectory: join(dir, 'db'),
    IndexDirectory: join(dir, 'db'),
    Plugins: [ORTHANC_DICOMWEB_PLUGIN],
    DicomWeb: { Enable: true, Root: '/dicom-web/' },
  };
  const configPath = join(dir, 'orthanc.json');
  await writeFile(configPath, JSON.stringify(config, null, 2));
  const logPath = join(dir, 'orthanc.log');
  const child: ChildProcess = spawn(ORTHANC, [`--logfile=${logPath}`, configPath], { stdio: 'ignore' });
  let exited: string | undefined;
  child.once('exit', (code, signal) => (exited = `exited with ${code ?? signal}`));
  const baseUrl = `http://127.0.0.1:${port}`;
  const authorization = `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited) throw new Error(`Orthanc ${exited} before answering; log: ${await readFile(logPath, 'utf8').catch(() => '(none)')}`);
    try {
      const response = await fetch(`${baseUrl}/system`, { headers: { authorization } });
      if (response.ok) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`Orthanc did not answer on ${baseUrl} within 30 s`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    baseUrl,
    dicomWebUrl: `${baseUrl}/dicom-web`,
    username,
    password,
    async upload(files) {
      const ids: string[] = [];
      for (const file of files) {
        const response = await fetch(`${baseUrl}/instances`, { method: 'POST', headers: { authorization, 'content-type': 'application/dicom' }, body: await readFile(file) });
        const text = await response.text();
        if (!response.ok) throw new Error(`Orthanc refused ${file}: HTTP ${response.status} ${text}`);
        ids.push((JSON.parse(text) as { ID: string }).ID);
      }
      return ids;
    },
    async stop() {
      if (!exited) {
        const gone = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await Promise.race([gone, new Promise((r) => setTimeout(r, 10_000))]);
        if (!exited) child.kill('SIGKILL');
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Requests a test made to the PACS, by kind, and the most QIDO-RS searches it had in flight at once. */
export interface CountingFetch {
  fetch: typeof fetch;
  counts: { qido: number; wado: number; maxQidoInFlight: number };
  /** Answers the next `times` requests with `status` instead of asking the PACS. */
  failNext: (status: number, times: number) => void;
}

/** A fetch for DicomWebClient that counts requests by kind and can fail the next ones with a given status. */
export function countingFetch(): CountingFetch {
  const counts = { qido: 0, wado: 0, maxQidoInFlight: 0 };
  let inFlight = 0;
  let failures: { status: number; left: number } | undefined;
  const wrapped: typeof fetch = async (input, init) => {
    const url = String(input instanceof Request ? input.url : input);
    const wado = /\/instances\/[0-9.]+$/.test(new URL(url).pathname);
    if (wado) counts.wado++;
    else counts.qido++;
    if (failures && failures.left > 0) {
      failures.left--;
      return new Response('busy', { status: failures.status });
    }
    if (wado) return fetch(input, init);
    counts.maxQidoInFlight = Math.max(counts.maxQidoInFlight, ++inFlight);
    try {
      // The body is read here so the search counts as in flight until its answer is complete.
      const response = await fetch(input, init);
      return new Response(await response.arrayBuffer(), { status: response.status, headers: response.headers });
    } finally {
      inFlight--;
    }
  };
  return { fetch: wrapped, counts, failNext: (status, times) => (failures = { status, left: times }) };
}
