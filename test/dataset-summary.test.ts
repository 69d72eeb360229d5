import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { federation, ModelSpec } from '@federa/shared';
import { parseCoordinatorConfig, startCoordinator, type RunningCoordinator } from '@federa/coordinator';
import { RawSite, rest, studyBody, type TaskInbox } from './support/raw-site.js';

const spec: ModelSpec = { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 8 };

/** A site describes its data to the coordinator in counts only; the coordinator keeps the latest per site. */
describe('dataset summaries', () => {
  let dir: string;
  let coordinator: RunningCoordinator;
  let studyId: string;
  let a: RawSite;
  let b: RawSite;
  let tasks: TaskInbox;
  const summary = (overrides: Partial<federation.DatasetSummary> = {}): federation.DatasetSummary => ({
    studyId,
    files: 12,
    accepted: 10,
    byClass: { normal: 6, lesion: 4 },
    byModality: { CT: 7, MR: 3 },
    byTransferSyntax: { '1.2.840.10008.1.2.1': 9, '1.2.840.10008.1.2.4.80': 1 },
    bySize: { '257-512': 10 },
    rejectedByReason: { truncated: 1, 'missing-label': 1 },
    ...overrides,
  });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'federa-datasets-'));
    coordinator = await startCoordinator(parseCoordinatorConfig({ insecure: true, httpPort: 0, grpcPort: 0, dataDir: dir }));
    a = new RawSite(coordinator.grpcPort, 'site-a');
    b = new RawSite(coordinator.grpcPort, 'site-b');
    await a.register();
    await b.register();
    tasks = a.inbox();
    await new Promise((r) => setTimeout(r, 200));
    const created = await rest(coordinator, 'POST', '/studies', studyBody(spec, { minSites: 1, aggregation: 'plaintext' }));
    studyId = created.body.id as string;
    await rest(coordinator, 'POST', `/studies/${studyId}/start`);
    expect((await tasks.next()).kind?.$case).toBe('train');
  });

  afterAll(async () => {
    tasks?.close();
    a?.close();
    b?.close();
    await coordinator?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps the latest summary per site and shows it with the site and in the study', async () => {
    expect(await a.reportDatasetSummary(summary())).toBeNull();
    const latest = summary({ files: 11, accepted: 10, rejectedByReason: { truncated: 1 } });
    expect(await a.reportDatasetSummary(latest)).toBeNull();
    const { studyId: _studyId, ...counts } = latest;
    const sites = (await rest(coordinator, 'GET', '/sites')).body as unknown as Array<{ id: string; dataset: unknown }>;
    expect(sites.find((s) => s.id === 'site-a')?.dataset).toEqual({ studyId, reportedAt: expect.any(String), ...counts });
    expect(sites.find((s) => s.id === 'site-b')?.dataset).toBeNull();
    const study = (await rest(coordinator, 'GET', `/studies/${studyId}`)).body;
    expect(study.sites).toEqual([{ id: 'site-a', connected: true, dropped: false, dataset: { studyId, reportedAt: expect.any(String), ...counts } }]);
  });

  it('refuses summaries from outsiders, for unknown studies, and with anything but counts by known category', async () => {
    const z = new RawSite(coordinator.grpcPort, 'site-z');
    try {
      const cases: Array<[string, RawSite, federation.DatasetSummary, status, RegExp]> = [
        ['site not in the study', b, summary(), status.PERMISSION_DENIED, /site-b takes no part in study/],
        ['unregistered site', z, summary(), status.FAILED_PRECONDITION, /Register first/],
        ['unknown study', a, summary({ studyId: 'nope' }), status.NOT_FOUND, /study nope does not exist/],
        ['a file name as a class', a, summary({ byClass: { normal: 6, 'DOE_JOHN_MRN4711.dcm': 4 } }), status.INVALID_ARGUMENT, /by_class: category 2 of 2 is not one of the study's classes/],
        ['a patient name as a modality', a, summary({ byModality: { 'DOE^JOHN': 10 } }), status.INVALID_ARGUMENT, /by_modality: category 1 of 1 is not a DICOM modality/],
        ['an instance UID as a transfer syntax', a, summary({ byTransferSyntax: { '2.25.1234567': 10 } }), status.INVALID_ARGUMENT, /by_transfer_syntax: category 1 of 1/],
        ['exact dimensions as a size', a, summary({ bySize: { '512x512': 10 } }), status.INVALID_ARGUMENT, /by_size: category 1 of 1/],
        ['a message as a reason', a, summary({ rejectedByReason: { 'images/DOE_JOHN.dcm: truncated': 2 } }), status.INVALID_ARGUMENT, /rejected_by_reason: category 1 of 1/],
        ['counts that do not add up', a, summary({ accepted: 9 }), status.INVALID_ARGUMENT, /by_class: counts 10 images, but accepted is 9/],
      ];
      for (const [name, from, report, code, message] of cases) {
        const error = await from.reportDatasetSummary(report);
        expect([name, status[error?.code ?? 0]]).toEqual([name, status[code]]);
        expect(error?.details, name).toMatch(message);
        expect(error?.details, name).not.toMatch(/DOE|2\.25\.1234567|512x512/);
      }
    } finally {
      z.close();
    }
    // The refused summaries replaced nothing.
    const sites = (await rest(coordinator, 'GET', '/sites')).body as unknown as Array<{ id: string; dataset: { files: number } | null }>;
    expect(sites.find((s) => s.id === 'site-a')?.dataset?.files).toBe(11);
  });
});
