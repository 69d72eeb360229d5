import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateConsortiumCkksKeys, provisionConsortium } from '@federa/coordinator';
import { loadSiteConfig } from '@federa/site-agent';

const execFileAsync = promisify(execFile);
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const FEDERA_SITE = join(root, 'site-agent/dist/cli/main.js');

/** Runs federa-site; resolves with the exit code instead of rejecting on a non-zero one. */
async function site(args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [FEDERA_SITE, ...args], { cwd, env: { ...process.env, FEDERA_LOG_LEVEL: 'silent' } });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

/** `federa-site init`: a hospital gets a working, commented site.yaml from its kit in one command. */
describe('federa-site init', () => {
  let dir: string;
  let kit: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'federa-init-'));
    await provisionConsortium({
      config: { consortium: { name: 'init consortium' }, coordinator: { hostnames: ['coordinator.example.org'], ips: [] }, sites: [{ id: 'hospital-a' }] },
      outDir: join(dir, 'kits'),
      generateCkksKeys: generateConsortiumCkksKeys,
    });
    kit = join(dir, 'kits', 'sites', 'hospital-a');
    await mkdir(join(dir, 'images'));
    await writeFile(join(dir, 'images', 'labels.csv'), 'file,label\n');
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('has help of its own', async () => {
    const help = await site(['init', '--help'], dir);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^usage: federa-site\n {2}init --kit DIR --coordinator HOST:PORT/);
    expect(help.stdout).toMatch(/refuses to overwrite a file without --force\n$/);
    expect(help.stdout).not.toMatch(/start --config/);
    expect(help.stdout).toMatch(/--from-labels \| --modality CT \| --study UID\.\.\. \| --series UID\.\.\./);
  });

  it('writes a commented site.yaml with absolute paths that the agent loads as written', async () => {
    // Relative options, from a working directory that is not the config's: the file still holds absolute paths.
    // An --out below a file cannot be written: init says so and what to change.
    await writeFile(join(dir, 'not-a-folder'), '');
    const result = await site(
      ['init', '--kit', 'kits/sites/hospital-a', '--coordinator', '10.0.0.5:50051', '--server-name', 'coordinator.example.org', '--out', 'not-a-folder/site.yaml', '--data-dir', 'images', '--labels', 'images/labels.csv'],
      dir,
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/cannot write .*not-a-folder\/site\.yaml: .*choose a writable --out/);

    // conf/ does not exist yet, as /etc/federa on a fresh host: init creates it.
    const ok = await site(
      ['init', '--kit', 'kits/sites/hospital-a', '--coordinator', '10.0.0.5:50051', '--server-name', 'coordinator.example.org', '--out', 'conf/site.yaml', '--data-dir', 'images', '--labels', 'images/labels.csv'],
      dir,
    );
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    const path = join(dir, 'conf', 'site.yaml');
    expect(ok.stdout).toContain(`wrote ${path} for site hospital-a of consortium "init consortium"`);
    expect(ok.stdout).toContain(`next: federa-site doctor --config ${path}`);

    const text = await readFile(path, 'utf8');
    expect(text).toContain('policy:   # the hospital\'s rules; these are the safe defaults');
    expect(text).toMatch(/ {2}minParticipants: 3 {3}# refuse aggregates of fewer sites/);
    expect(text).toMatch(/ {2}verifySum: true {3}# multiparty: check each sum/);
    expect(text).toMatch(/ {2}autoApprove: false {3}# true trains every study without/);
    const config = await loadSiteConfig(path);
    expect(config).toEqual({
      site: { id: 'hospital-a' },
      coordinator: { address: '10.0.0.5:50051', serverName: 'coordinator.example.org', kit, insecure: false },
      data: { source: { kind: 'folder' }, dir: join(dir, 'images'), layout: 'csv', labels: join(dir, 'images', 'labels.csv'), validationFraction: 0.2 },
      training: { backend: 'auto', threads: 'auto' },
      stateDir: join(dir, 'conf', 'state'),
      policy: { requireEncryption: true, minParticipants: 3, maxRounds: 100, shareMetrics: 'aggregate', minCountPerBin: 5, minStatisticsCount: 10, verifySum: true, autoApprove: false },
    });
  });

  it('refuses to overwrite a site.yaml without --force', async () => {
    const path = join(dir, 'existing.yaml');
    await writeFile(path, '# the hospital\'s own edits\n');
    const refused = await site(['init', '--kit', kit, '--coordinator', 'coordinator.example.org:50051', '--out', path], dir);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`${path} already exists: give --force to overwrite it, or --out another file`);
    expect(await readFile(path, 'utf8')).toBe('# the hospital\'s own edits\n');

    const forced = await site(['init', '--kit', kit, '--coordinator', 'coordinator.example.org:50051', '--out', path, '--force'], dir);
    expect(forced.code).toBe(0);
    // No --data-dir: one folder per class beside the file, and a reminder to set it.
    expect(forced.stdout).toMatch(/data\.dir was not given \(--data-dir\): edit it/);
    const config = await loadSiteConfig(path);
    expect(config.data).toMatchObject({ dir: join(dir, 'data'), layout: 'folders', labels: undefined });
    expect(config.coordinator.serverName).toBeUndefined();
  });

  it('names what is wrong: no kit, a folder that is not a kit, an address without a port', async () => {
    expect(await site(['init', '--coordinator', 'c:1'], dir)).toMatchObject({ code: 2, stderr: expect.stringMatching(/init needs --kit <folder>/) });
    expect(await site(['init', '--kit', kit], dir)).toMatchObject({ code: 2, stderr: expect.stringMatching(/init needs --coordinator <host:port>/) });
    expect(await site(['init', '--kit', join(dir, 'images'), '--coordinator', 'c:1', '--out', join(dir, 'x.yaml')], dir)).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/has no kit\.json; --kit must be the unpacked kit folder/),
    });
    expect(await site(['init', '--kit', kit, '--coordinator', 'coordinator.example.org', '--out', join(dir, 'y.yaml')], dir)).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/coordinator\.address: must be host:port/),
    });
  });
  it('writes a PACS (DICOMweb) source instead of a folder, with the selection and the password file, never the password', async () => {
    const path = join(dir, 'pacs.yaml');
    const labels = join(dir, 'images', 'labels.csv');
    const ok = await site(
      ['init', '--kit', kit, '--coordinator', 'coordinator.example.org:50051', '--out', path, '--pacs', 'https://pacs.example.org/dicom-web', '--labels', labels,
        '--modality', 'CT', '--study', '1.2.3.4', '--study', '1.2.3.5', '--studies-from', '20240101', '--pacs-user', 'federa', '--pacs-password-file', 'pacs-password'],
      dir,
    );
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('data: the PACS at https://pacs.example.org/dicom-web');
    const config = await loadSiteConfig(path);
    expect(config.data.source).toMatchObject({
      kind: 'dicomweb',
      url: 'https://pacs.example.org/dicom-web',
      auth: { basic: { username: 'federa', passwordFile: join(dir, 'pacs-password') } },
      query: { modality: 'CT', studyInstanceUids: ['1.2.3.4', '1.2.3.5'], studyDateFrom: '20240101' },
    });
    expect(config.data.labels).toBe(labels);
    expect(config.data.dir).toBe(join(config.stateDir, 'pacs-cache'));

    const refusals: Array<[string[], RegExp]> = [
      [['--pacs', 'https://p/dicom-web', '--modality', 'CT'], /--pacs needs --labels/],
      [['--pacs', 'https://p/dicom-web', '--labels', labels], /--pacs needs a selection: --from-labels, --modality, --study UID, --series UID/],
      [['--pacs', 'https://p/dicom-web', '--labels', labels, '--from-labels', '--series', '1.2.3'], /--from-labels selects the UIDs in --labels/],
      [['--pacs', 'https://p/dicom-web', '--labels', labels, '--series', '1.2.3,x'], /data\.source\.query\.seriesInstanceUids\.1: must be a DICOM UID/],
      [['--series', '1.2.3'], /--series only go with --pacs/],
      [['--from-labels'], /--from-labels only go with --pacs/],
      [['--pacs', 'https://p/dicom-web', '--labels', labels, '--modality', 'CT', '--data-dir', 'images'], /--pacs and --data-dir exclude each other/],
      [['--pacs', 'https://p/dicom-web', '--labels', labels, '--modality', 'CT', '--pacs-user', 'x'], /--pacs-user and --pacs-password-file go together/],
      [['--modality', 'CT'], /--modality only go with --pacs/],
      [['--pacs', 'ftp://p', '--labels', labels, '--modality', 'CT'], /data\.source\.url: must be an http\(s\) URL/],
    ];

    // Series as a repeated option and a comma list; or the selection taken from the labels CSV, narrowed to CT.
    const bySeries = join(dir, 'pacs-series.yaml');
    const series = await site(
      ['init', '--kit', kit, '--coordinator', 'coordinator.example.org:50051', '--out', bySeries, '--pacs', 'https://pacs.example.org/dicom-web', '--labels', labels,
        '--series', '1.2.3.4.1,1.2.3.4.2', '--series', '1.2.3.5.1', '--study', '1.2.3.4, 1.2.3.5'],
      dir,
    );
    expect(series).toMatchObject({ code: 0, stderr: '' });
    expect((await loadSiteConfig(bySeries)).data.source).toMatchObject({ query: { seriesInstanceUids: ['1.2.3.4.1', '1.2.3.4.2', '1.2.3.5.1'], studyInstanceUids: ['1.2.3.4', '1.2.3.5'] } });
    const fromLabels = join(dir, 'pacs-labels.yaml');
    const labelled = await site(
      ['init', '--kit', kit, '--coordinator', 'coordinator.example.org:50051', '--out', fromLabels, '--pacs', 'https://pacs.example.org/dicom-web', '--labels', labels, '--from-labels', '--modality', 'CT'],
      dir,
    );
    expect(labelled).toMatchObject({ code: 0, stderr: '' });
    expect(labelled.stdout).toContain(`selected and labelled by ${labels}`);
    expect(await readFile(fromLabels, 'utf8')).toMatch(/\n {6}fromLabels: true {3}# one search per UID in the labels CSV/);
    const fromLabelsSource = (await loadSiteConfig(fromLabels)).data.source;
    expect(fromLabelsSource).toMatchObject({ query: { fromLabels: true, modality: 'CT' } });
    expect(fromLabelsSource?.kind === 'dicomweb' ? fromLabelsSource.query : undefined).not.toHaveProperty('studyInstanceUids');

    for (const [extra, message] of refusals) {
      const refused = await site(['init', '--kit', kit, '--coordinator', 'c.example.org:1', '--out', join(dir, 'refused.yaml'), ...extra], dir);
      expect(refused.code, extra.join(' ')).toBe(2);
      expect(refused.stderr, extra.join(' ')).toMatch(message);
    }
  });
});
