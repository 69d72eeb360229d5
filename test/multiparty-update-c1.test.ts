import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { C1PartSum, contributionStatementSchema, federation, readPayloadHeader, sha256Hex, updateC1Part, updateC1Sha256, type ModelSpec } from '@federa/shared';
import type { RunningCoordinator } from '@federa/coordinator';
import { startProvisionedCoordinator } from './support/kits.js';
import { MultipartyMembers, type Download, type Epoch } from './support/multiparty-members.js';
import { rest, studyBody } from './support/raw-site.js';

const spec: ModelSpec = { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 29 };
const MEMBERS = ['site-a', 'site-b', 'site-c'] as const;
// An outsider: certified and registered, but never in the study.
const SITES = [...MEMBERS, 'site-d'] as const;

type AuditRecord = { kind: string; siteId: string | null; studyId: string | null; round: number | null; details: Record<string, unknown> };

/**
 * The c1 parts members check a sum with, over gRPC (mutual TLS) against a real coordinator: an update is accepted
 * only with the c1Sha256 of its own c1 part, and DownloadUpdateC1 serves a listed update's exact part to the members
 * of the round's key epoch while the round waits for key-switching shares, and to nobody else.
 */
describe('multiparty c1 parts: signed with each update, served to the members that check the sum', () => {
  let dir: string;
  let coordinator: RunningCoordinator;
  let members: MultipartyMembers;
  let studyId: string;
  let task: federation.TrainTask;
  let epoch: Epoch;
  const payloads: Record<string, Uint8Array> = {};

  const auditRecords = async (query: string): Promise<AuditRecord[]> => {
    const response = await rest(coordinator, 'GET', `/audit/records?limit=1000&${query}`, undefined, 'auditor');
    expect(response.status).toBe(200);
    return response.body.records as AuditRecord[];
  };
  const partOf = (caller: string, siteId: string, over: Partial<federation.DownloadUpdateC1Request> = {}): Promise<Download> =>
    members.downloadUpdateC1(caller, { studyId, round: 1, siteId, offset: 0, ...over });
  const expectRefused = (download: Download, code: keyof typeof status, details: RegExp): void => {
    expect(status[download.error?.code ?? status.OK]).toBe(code);
    expect(download.error?.details).toMatch(details);
    expect(download.bytes.byteLength).toBe(0);
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'federa-mp-update-c1-'));
    let kits: string;
    ({ kits, coordinator } = await startProvisionedCoordinator(dir, [...SITES]));
    members = await MultipartyMembers.connect(coordinator, kits, SITES);
    const created = await rest(coordinator, 'POST', '/studies', studyBody(spec, { aggregation: 'multiparty', minSites: 2, sites: [...MEMBERS] }));
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    studyId = created.body.id as string;
    expect((await rest(coordinator, 'POST', `/studies/${studyId}/start`)).status).toBe(200);
    const tasks = await Promise.all(MEMBERS.map((s) => members.nextTask(s, studyId, 'train')));
    task = tasks[0]!;
    epoch = await members.completeEpoch(studyId, task.keyEpoch!);
  }, 120_000);

  afterAll(async () => {
    members?.close();
    await coordinator?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses an update whose statement signs another c1Sha256 than its c1 part\'s, naming the field, and audits it', async () => {
    const { ring, params } = members.setup;
    const update = members.encryptedUpdate(spec, 'site-a', task, epoch);
    // The statement signs the c1 part of another update of the same site: the c1 it would be summed with is not the one it sent.
    const other = members.encryptedUpdate(spec, 'site-a', task, epoch);
    const wrong = updateC1Sha256(ring, params, other.payload);
    const refused = await members.upload('site-a', task, update, members.contribution('site-a', task, epoch, update.payload, { c1Sha256: wrong }));
    expect(status[refused.error?.code ?? status.OK]).toBe('INVALID_ARGUMENT');
    expect(refused.error?.details).toBe(
      `multiparty update refused: the statement's c1Sha256 signs c1 part ${wrong}, the update's c1 part hashes to ${updateC1Sha256(ring, params, update.payload)}`,
    );
    const audited = (await auditRecords(`siteId=site-a&kind=site.message-refused&studyId=${studyId}`)).filter((r) => r.details['sha256'] === sha256Hex(update.payload));
    expect(audited).toEqual([expect.objectContaining({ details: expect.objectContaining({ message: 'update', code: 'INVALID_ARGUMENT', reason: refused.error?.details }) })]);
    const view = (await rest(coordinator, 'GET', `/studies/${studyId}`)).body as { rounds: Array<{ reportedSites: string[]; status: string }> };
    expect(view.rounds[0]).toMatchObject({ reportedSites: [], status: 'open' });
  });

  it('serves no c1 part while the round is still open', async () => {
    expectRefused(await partOf('site-a', 'site-a'), 'FAILED_PRECONDITION', new RegExp(`^round 1 of study ${studyId} is not waiting for key-switching shares$`));
  });

  it('takes the honest updates, then serves a member each listed update\'s exact c1 part, which sum to the sum it switches', async () => {
    const { ring, params } = members.setup;
    for (const siteId of MEMBERS) {
      const update = members.encryptedUpdate(spec, siteId, task, epoch);
      payloads[siteId] = update.payload;
      expect((await members.upload(siteId, task, update, members.contribution(siteId, task, epoch, update.payload))).error).toBeUndefined();
    }
    const keySwitch = (await Promise.all(MEMBERS.map((s) => members.nextTask(s, studyId, 'keySwitch'))))[1]!;
    const signed = new Map(keySwitch.contributions.map((c) => {
      const statement = contributionStatementSchema.parse(JSON.parse(c.statementJson));
      return [statement.siteId, statement.c1Sha256] as const;
    }));
    const sum = await members.downloadSum('site-b', { studyId, round: 1, offset: 0 });
    expect(sha256Hex(sum.bytes)).toBe(keySwitch.sumSha256);
    // The task names the sum's size: a member that builds the sum from the parts downloads no sum to learn it.
    expect(keySwitch.sumSizeBytes).toBe(sum.bytes.byteLength);
    const total = new C1PartSum(ring, params, readPayloadHeader(params, sum.bytes));
    for (const siteId of MEMBERS) {
      const part = await partOf('site-b', siteId);
      expect(part.error).toBeUndefined();
      const expected = updateC1Part(ring, params, payloads[siteId]!);
      expect(Buffer.compare(part.bytes, expected)).toBe(0);
      expect(part.header).toEqual({ sha256: sha256Hex(expected), sizeBytes: expected.byteLength });
      expect(signed.get(siteId)).toBe(sha256Hex(expected));
      total.add(part.bytes);
    }
    expect(Buffer.compare(total.encode(), sum.bytes)).toBe(0);
    // A download resumed from an offset gets the rest; one past the end is refused.
    const size = updateC1Part(ring, params, payloads['site-c']!).byteLength;
    const tail = await partOf('site-a', 'site-c', { offset: size - 100 });
    expect(Buffer.compare(tail.bytes, updateC1Part(ring, params, payloads['site-c']!).subarray(size - 100))).toBe(0);
    expectRefused(await partOf('site-a', 'site-c', { offset: size + 1 }), 'OUT_OF_RANGE', new RegExp(`^offset ${size + 1} is past the c1 part's ${size} bytes$`));
  });

  it('refuses a site outside the round\'s key epoch (audited), another round, an update not listed and a malformed site id', async () => {
    expectRefused(await partOf('site-d', 'site-a'), 'PERMISSION_DENIED', new RegExp(`^site site-d is not a member of the key epoch of round 1 of study ${studyId}$`));
    expect(await auditRecords(`siteId=site-d&kind=site.refused&studyId=${studyId}`)).toEqual([
      expect.objectContaining({ round: 1, details: expect.objectContaining({ rpc: 'DownloadUpdateC1', code: 'PERMISSION_DENIED' }) }),
    ]);
    expectRefused(await partOf('site-a', 'site-b', { round: 2 }), 'FAILED_PRECONDITION', new RegExp(`^round 2 of study ${studyId} is not waiting for key-switching shares$`));
    expectRefused(await partOf('site-a', 'site-d'), 'NOT_FOUND', new RegExp(`^round 1 of study ${studyId} lists no update of site site-d$`));
    expectRefused(await partOf('site-a', '../site-b'), 'INVALID_ARGUMENT', /^site_id: "\.\.\/site-b" is not a site id/);
    expectRefused(await partOf('site-a', 'site-b', { studyId: 'no such/study' }), 'INVALID_ARGUMENT', /^study_id: /);
  });
});
