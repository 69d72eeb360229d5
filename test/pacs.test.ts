import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify as toYaml } from 'yaml';
import { generateConsortium, parseSiteConfig, type SiteConfig } from '@federa/site-agent';
import { checkPacsSource, DicomWebClient, prepareSiteDataset, readDicomFile, scanDataset } from '../site-agent/src/data/index.js';
import { countingFetch, SKIP_PACS, startOrthanc, type RunningOrthanc } from './support/orthanc.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TESTDATA = join(ROOT, '../shared/testdata/dicom');
// Native, native and JPEG 2000: the last shows instances come back as stored, not transcoded.
const REAL_FILES = ['CT_small.dcm', 'JPEG2000.dcm', 'MR_small.dcm'];

describe.skipIf(SKIP_PACS)('PACS over DICOMweb (Orthanc)', () => {
  let dir: string;
  let orthanc: RunningOrthanc;
  /** Every uploaded file, named by its SOP Instance UID (as the PACS cache names them), with its study. */
  let folder: string;
  let labelsCsv: string;
  let studies: string[];
  let sops: string[];
  let siteConfig: (source: Record<string, unknown>, name?: string) => Promise<{ config: SiteConfig; path: string }>;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'federa-pacs-'));
    orthanc = await startOrthanc();
    const data = await generateConsortium({ outDir: join(dir, 'sim'), sites: 1, imagesPerSite: 20, holdoutImages: 0, seed: 11 });
    const site = data.sites[0];
    if (!site) throw new Error('no site generated');
    const files = [...site.members.map((m) => ({ path: join(site.dir, m.file), label: m.label as string | undefined })), ...REAL_FILES.map((f) => ({ path: join(TESTDATA, f), label: f === 'MR_small.dcm' ? undefined : 'normal' }))];
    await orthanc.upload(files.map((f) => f.path));
    folder = join(dir, 'folder');
    await mkdir(folder);
    const rows: string[] = ['sop_instance_uid,label'];
    studies = [];
    sops = [];
    for (const file of files) {
      const { header } = await readDicomFile(file.path);
      const sop = header.sopInstanceUid as string;
      sops.push(sop);
      studies.push(header.studyInstanceUid as string);
      await copyFile(file.path, join(folder, `${sop}.dcm`));
      // MR_small stays unlabelled: its rejection must read the same from the PACS as from the folder.
      if (file.label !== undefined) rows.push(`${sop},${file.label}`);
    }
    labelsCsv = join(dir, 'labels.csv');
    await writeFile(labelsCsv, `${rows.join('\n')}\n`);
    await writeFile(join(dir, 'pacs-password'), `${orthanc.password}\n`, { mode: 0o600 });
    await writeFile(join(dir, 'wrong-password'), 'not-the-password\n', { mode: 0o600 });
    siteConfig = async (source, name = 'site.yaml') => {
      const raw = {
        site: { id: 'hospital-a' },
        coordinator: { address: '127.0.0.1:1', insecure: true },
        data: { source, labels: labelsCsv },
        stateDir: join(dir, `state-${name}`),
      };
      const path = join(dir, name);
      await writeFile(path, toYaml(raw));
      return { config: parseSiteConfig(raw, dir, path), path };
    };
  });

  afterAll(async () => {
    await orthanc?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const source = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
    kind: 'dicomweb',
    url: orthanc.dicomWebUrl,
    auth: { basic: { username: orthanc.username, passwordFile: 'pacs-password' } },
    query: { modality: 'OT' },
    ...extra,
  });

  it('finds instances by study UID and by modality (QIDO-RS)', async () => {
    const client = new DicomWebClient({ url: orthanc.dicomWebUrl, authorization: `Basic ${Buffer.from(`${orthanc.username}:${orthanc.password}`).toString('base64')}` });
    const byStudy = await client.searchInstances({ studyInstanceUids: [studies[0] as string, studies[21] as string] });
    expect(byStudy.map((r) => r.sopInstanceUid).sort()).toEqual([sops[0], sops[21]].sort());
    const ct = await client.searchInstances({ modality: 'CT' });
    expect(ct.map((r) => r.sopInstanceUid)).toContain(sops[20]);
    const all = await client.searchInstances({ studyDateFrom: '19000101' });
    expect(all).toHaveLength(sops.length);
  });

  it('syncs each instance once into an owner-only cache, and a second sync fetches nothing', async () => {
    const { config } = await siteConfig(source({ query: { studyInstanceUids: studies } }), 'sync.yaml');
    const first = countingFetch();
    const synced = await prepareSiteDataset(config.data, { client: { fetch: first.fetch } });
    expect(synced.pacs?.fetched).toBe(sops.length);
    expect(first.counts.wado).toBe(sops.length);
    expect(synced.files).toEqual(sops.map((s) => `${s}.dcm`).sort());
    expect((await stat(config.data.dir)).mode & 0o777).toBe(0o700);
    for (const file of await readdir(config.data.dir)) expect((await stat(join(config.data.dir, file))).mode & 0o777).toBe(0o600);

    const second = countingFetch();
    const again = await prepareSiteDataset(config.data, { client: { fetch: second.fetch } });
    expect(again.pacs).toMatchObject({ found: sops.length, fetched: 0, cached: sops.length });
    expect(second.counts.wado).toBe(0);
  });

  it('scans the PACS selection exactly as the same files in a folder, from the CLI too', async () => {
    const { config, path } = await siteConfig(source({ query: { studyInstanceUids: studies } }), 'scan.yaml');
    const synced = await prepareSiteDataset(config.data);
    const fromPacs = await scanDataset({ dir: synced.dir, labelsCsv, files: synced.files });
    const fromFolder = await scanDataset({ dir: folder, labelsCsv });
    expect(fromPacs).toEqual(fromFolder);
    expect(fromPacs.accepted).toBe(sops.length - 1);
    expect(fromPacs.rejectedByReason).toEqual({ 'missing-label': 1 });
    expect(Object.keys(fromPacs.byTransferSyntax).some((ts) => ts.includes('1.2.840.10008.1.2.4.91'))).toBe(true);

    const { stdout } = await promisify(execFile)(process.execPath, [join(ROOT, 'site-agent/dist/cli/main.js'), 'data', 'scan', '--config', path, '--json']);
    expect(JSON.parse(stdout)).toEqual(fromFolder);
  });

  it('names the URL and what to check when the PACS refuses the credentials', async () => {
    const { config } = await siteConfig(source({ auth: { basic: { username: orthanc.username, passwordFile: 'wrong-password' } } }), 'bad.yaml');
    const failure = prepareSiteDataset(config.data);
    await expect(failure).rejects.toThrow(new RegExp(`PACS at ${orthanc.dicomWebUrl}/instances\\S* refused .*HTTP 401.*basic auth as user "federa".*check data\\.source\\.auth`));
    await expect(failure).rejects.not.toThrow(/not-the-password/);
    const check = await checkPacsSource(config.data);
    expect(check).toMatchObject({ ok: false, detail: expect.stringMatching(/HTTP 401/) as unknown });
    const good = await siteConfig(source(), 'doctor.yaml');
    expect(await checkPacsSource(good.config.data)).toMatchObject({ ok: true, detail: expect.stringMatching(/answers DICOMweb searches; \d+ labels keyed by sop_instance_uid/) as unknown });
  });

  it('retries a 503 and then succeeds; a 4xx is not retried', async () => {
    const { config } = await siteConfig(source({ query: { studyInstanceUids: [studies[0]] } }), 'retry.yaml');
    const flaky = countingFetch();
    flaky.failNext(503, 2);
    const synced = await prepareSiteDataset(config.data, { client: { fetch: flaky.fetch, backoffMs: 5 } });
    expect(synced.pacs?.fetched).toBe(1);
    expect(synced.pacs?.requests).toBe(flaky.counts.qido + flaky.counts.wado);
    expect(flaky.counts.qido + flaky.counts.wado).toBe(2 + 3); // two refused QIDO attempts, the QIDO pages and one WADO

    const refused = countingFetch();
    refused.failNext(400, 10);
    await expect(prepareSiteDataset(config.data, { client: { fetch: refused.fetch, backoffMs: 5 } })).rejects.toThrow(/HTTP 400/);
    expect(refused.counts.qido).toBe(1);
  });
});
