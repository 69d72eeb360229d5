import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSiteConfig, type SiteConfig } from '@federa/site-agent';
import { checkPacsSource, DicomWebClient, prepareSiteDataset, scanDataset, type InstanceRef } from '../site-agent/src/data/index.js';
import { writeDicomPart10, type SopClass } from '../site-agent/src/sim/index.js';
import { countingFetch, SKIP_PACS, startOrthanc, type RunningOrthanc } from './support/orthanc.js';

/**
 * Which PACS instances a site selects: by series UID, date range and modality, labels keyed by series and study
 * UID, and the selection driven by the labels CSV. The instances are written here so their studies, series,
 * modalities and dates differ (the simulator's all share one date and one modality per site).
 */
const STUDY = { a: '2.25.7001', b: '2.25.7002', c: '2.25.7003' } as const;
const SERIES = { a1: '2.25.7001.1', a2: '2.25.7001.2', b1: '2.25.7002.1', c1: '2.25.7003.1' } as const;
/** A series UID no instance in the PACS has. */
const ABSENT = '2.25.7999.1';
const INSTANCES = [
  { sop: '2.25.7001.1.1', study: STUDY.a, series: SERIES.a1, modality: 'CT', date: '20100615' },
  { sop: '2.25.7001.1.2', study: STUDY.a, series: SERIES.a1, modality: 'CT', date: '20100615' },
  { sop: '2.25.7001.2.1', study: STUDY.a, series: SERIES.a2, modality: 'MR', date: '20100615' },
  { sop: '2.25.7002.1.1', study: STUDY.b, series: SERIES.b1, modality: 'CT', date: '20150301' },
  { sop: '2.25.7003.1.1', study: STUDY.c, series: SERIES.c1, modality: 'OT', date: '20200101' },
] as const;
type Instance = (typeof INSTANCES)[number];
const sopsOf = (pick: (i: Instance) => boolean): string[] => INSTANCES.filter(pick).map((i) => i.sop).sort();
const sopsIn = (refs: InstanceRef[]): string[] => refs.map((r) => r.sopInstanceUid).sort();
const filesOf = (sops: string[]): string[] => sops.map((s) => `${s}.dcm`).sort();

function instanceBytes(instance: Instance, index: number): Uint8Array {
  const sopClass: SopClass = instance.modality === 'CT' ? 'ct' : instance.modality === 'MR' ? 'mr' : 'secondary-capture';
  const pixels = Uint16Array.from({ length: 16 * 16 }, (_, i) => (i * 37 + index * 101) % 4096);
  return writeDicomPart10({
    sopClass,
    transferSyntax: 'explicit-vr-little-endian',
    sopInstanceUid: instance.sop,
    studyInstanceUid: instance.study,
    seriesInstanceUid: instance.series,
    patientName: `SIMULATED^SELECTION^${instance.study.slice(-1)}`,
    patientId: `SIM-SELECTION-${instance.study.slice(-1)}`,
    studyDate: instance.date,
    studyId: `SEL${index}`,
    seriesNumber: Number(instance.series.slice(-1)),
    instanceNumber: Number(instance.sop.slice(-1)),
    modality: instance.modality,
    institutionName: 'Federa Test Hospital',
    rows: 16,
    columns: 16,
    photometricInterpretation: 'MONOCHROME2',
    bitsStored: 12,
    pixelRepresentation: 0,
    rescaleSlope: 1,
    rescaleIntercept: 0,
    windowCenter: 2048,
    windowWidth: 4096,
    pixels,
  });
}

describe.skipIf(SKIP_PACS)('PACS selection over DICOMweb (Orthanc)', () => {
  let dir: string;
  let orthanc: RunningOrthanc;
  let client: DicomWebClient;
  let configs = 0;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'federa-pacs-selection-'));
    orthanc = await startOrthanc();
    await mkdir(join(dir, 'dicom'));
    const paths: string[] = [];
    for (const [index, instance] of INSTANCES.entries()) {
      const path = join(dir, 'dicom', `${instance.sop}.dcm`);
      await writeFile(path, instanceBytes(instance, index));
      paths.push(path);
    }
    await orthanc.upload(paths);
    await writeFile(join(dir, 'pacs-password'), `${orthanc.password}\n`, { mode: 0o600 });
    client = new DicomWebClient({ url: orthanc.dicomWebUrl, authorization: `Basic ${Buffer.from(`${orthanc.username}:${orthanc.password}`).toString('base64')}` });
  });

  afterAll(async () => {
    await orthanc?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** A labels CSV in the test folder: its key column and rows of [UID, label]. */
  const labels = async (name: string, key: string, rows: Array<[string, string]>): Promise<string> => {
    const path = join(dir, name);
    await writeFile(path, `${key},label\n${rows.map((r) => r.join(',')).join('\n')}\n`);
    return path;
  };

  /** A site config on the test PACS with this query and labels, each in a state folder of its own. */
  const siteConfig = (query: Record<string, unknown>, labelsCsv: string, extra: Record<string, unknown> = {}): SiteConfig =>
    parseSiteConfig(
      {
        site: { id: 'hospital-a' },
        coordinator: { address: '127.0.0.1:1', insecure: true },
        data: {
          source: { kind: 'dicomweb', url: orthanc.dicomWebUrl, auth: { basic: { username: orthanc.username, passwordFile: 'pacs-password' } }, query, ...extra },
          labels: labelsCsv,
        },
        stateDir: join(dir, `state-${++configs}`),
      },
      dir,
    );

  it('finds instances by series UID, and by SOP Instance UID (QIDO-RS)', async () => {
    expect(sopsIn(await client.searchInstances({ seriesInstanceUids: [SERIES.a1] }))).toEqual(sopsOf((i) => i.series === SERIES.a1));
    expect(sopsIn(await client.searchInstances({ seriesInstanceUids: [SERIES.a2, SERIES.c1] }))).toEqual(sopsOf((i) => i.series === SERIES.a2 || i.series === SERIES.c1));
    expect(await client.searchInstances({ seriesInstanceUids: [ABSENT] })).toEqual([]);
    expect(sopsIn(await client.searchByUid('sop_instance_uid', '2.25.7002.1.1'))).toEqual(['2.25.7002.1.1']);
    expect(sopsIn(await client.searchByUid('study_instance_uid', STUDY.a))).toEqual(sopsOf((i) => i.study === STUDY.a));
  });

  it('keeps both ends of a study date range and excludes studies outside it', async () => {
    // The ends are the dates of studies A and B themselves: both are in, C (2020) is out.
    const inclusive = await client.searchInstances({ studyDateFrom: '20100615', studyDateTo: '20150301' });
    expect(sopsIn(inclusive)).toEqual(sopsOf((i) => i.study !== STUDY.c));
    const middle = await client.searchInstances({ studyDateFrom: '20110101', studyDateTo: '20191231' });
    expect(sopsIn(middle)).toEqual(sopsOf((i) => i.study === STUDY.b));
    expect(await client.searchInstances({ studyDateFrom: '20210101', studyDateTo: '20211231' })).toEqual([]);
  });

  it('excludes other modalities, alone and with a date range', async () => {
    expect(sopsIn(await client.searchInstances({ modality: 'CT' }))).toEqual(sopsOf((i) => i.modality === 'CT'));
    expect(sopsIn(await client.searchInstances({ modality: 'MR' }))).toEqual(sopsOf((i) => i.modality === 'MR'));
    expect(sopsIn(await client.searchInstances({ modality: 'CT', studyDateFrom: '20120101' }))).toEqual(sopsOf((i) => i.study === STUDY.b));
  });

  it('labels every instance of a labelled series; an unlabelled series is rejected as missing-label', async () => {
    const csv = await labels('by-series.csv', 'series_instance_uid', [[SERIES.a1, 'normal'], [SERIES.c1, 'lesion']]);
    const config = siteConfig({ studyInstanceUids: [STUDY.a, STUDY.c] }, csv);
    const synced = await prepareSiteDataset(config.data);
    expect(synced.files).toEqual(filesOf(sopsOf((i) => i.study === STUDY.a || i.study === STUDY.c)));
    const report = await scanDataset({ dir: synced.dir, labelsCsv: csv, files: synced.files });
    expect(report).toMatchObject({ labelledBy: 'series_instance_uid', accepted: 3, byClass: { normal: 2, lesion: 1 }, rejectedByReason: { 'missing-label': 1 } });
    expect(report.rejected).toEqual([expect.objectContaining({ file: '2.25.7001.2.1.dcm', reason: 'missing-label' })]);
  });

  it('labels every instance of a labelled study', async () => {
    const csv = await labels('by-study.csv', 'study_instance_uid', [[STUDY.a, 'normal'], [STUDY.b, 'lesion']]);
    const synced = await prepareSiteDataset(siteConfig({ modality: 'CT' }, csv).data);
    const report = await scanDataset({ dir: synced.dir, labelsCsv: csv, files: synced.files });
    expect(report).toMatchObject({ labelledBy: 'study_instance_uid', files: 3, accepted: 3, byClass: { normal: 2, lesion: 1 }, rejected: [] });
  });

  it('fromLabels retrieves only the labelled series, a few searches at a time, and reports a UID the PACS lacks', async () => {
    const csv = await labels('from-series.csv', 'series_instance_uid', [[SERIES.a1, 'normal'], [SERIES.c1, 'lesion'], [ABSENT, 'lesion'], [SERIES.b1, 'normal']]);
    const config = siteConfig({ fromLabels: true }, csv, { concurrency: 2 });
    const counting = countingFetch();
    const synced = await prepareSiteDataset(config.data, { client: { fetch: counting.fetch } });
    const labelled = sopsOf((i) => i.series !== SERIES.a2);
    expect(synced.files).toEqual(filesOf(labelled));
    expect(synced.pacs).toMatchObject({ found: 4, fetched: 4 });
    // The unlabelled series (A2, in a labelled study) was never retrieved: the cache holds the labelled ones only.
    expect(counting.counts.wado).toBe(4);
    expect((await readdir(config.data.dir)).sort()).toEqual(filesOf(labelled));
    expect(counting.counts.maxQidoInFlight).toBe(2);
    expect(synced.pacs?.notInPacs).toEqual([
      { where: 'from-series.csv:4', keyedBy: 'series_instance_uid', uid: ABSENT, message: expect.stringMatching(/from-series\.csv line 4: the PACS at http:\S+ has no instance with Series Instance UID \(0020,000E\) 2\.25\.7999\.1$/) as unknown },
    ]);

    // The scan reports that row with the other label rows no image answered to; the rest is used.
    const report = await scanDataset({ dir: synced.dir, labelsCsv: csv, files: synced.files });
    expect(report).toMatchObject({ accepted: 4, byClass: { normal: 3, lesion: 1 }, rejectedByReason: { 'missing-file': 1 } });
    expect(report.rejected[0]).toMatchObject({ file: 'from-series.csv:4', message: expect.stringContaining(`Series Instance UID (0020,000E) ${ABSENT}`) as unknown });

    const check = await checkPacsSource(config.data);
    expect(check).toMatchObject({ ok: true, warning: true });
    expect(check.detail).toMatch(/4 labels keyed by series_instance_uid, selecting 4 instances; 1 labelled UIDs are not in the PACS:\n {2}.*from-series\.csv line 4: .*2\.25\.7999\.1/);

    const again = countingFetch();
    expect((await prepareSiteDataset(config.data, { client: { fetch: again.fetch } })).pacs).toMatchObject({ fetched: 0, cached: 4 });
    expect(again.counts.wado).toBe(0);
  });

  it('fromLabels by SOP Instance UID, and by study narrowed by modality', async () => {
    const bySop = await labels('from-sop.csv', 'sop_instance_uid', [['2.25.7001.2.1', 'normal'], ['2.25.7003.1.1', 'lesion']]);
    const sopConfig = siteConfig({ fromLabels: true }, bySop);
    const sops = await prepareSiteDataset(sopConfig.data);
    expect(sops.files).toEqual(filesOf(['2.25.7001.2.1', '2.25.7003.1.1']));
    expect((await readdir(sopConfig.data.dir)).sort()).toEqual(sops.files);
    expect(await checkPacsSource(sopConfig.data)).toMatchObject({ ok: true, detail: expect.stringMatching(/2 labels keyed by sop_instance_uid, selecting 2 instances$/) as unknown });

    // Study A's MR series is not CT, and study C has no CT at all: it is reported, with the filter that left it out.
    const byStudy = await labels('from-study.csv', 'study_instance_uid', [[STUDY.a, 'normal'], [STUDY.c, 'lesion']]);
    const studies = await prepareSiteDataset(siteConfig({ fromLabels: true, modality: 'CT' }, byStudy).data);
    expect(studies.files).toEqual(filesOf(sopsOf((i) => i.series === SERIES.a1)));
    expect(studies.pacs?.notInPacs.map((n) => n.message)).toEqual([expect.stringMatching(/line 3: .* Study Instance UID \(0020,000D\) 2\.25\.7003 \(with modality CT\)$/)]);
  });
});
