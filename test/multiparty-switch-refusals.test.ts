import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { federation, modelKeyOf, SeededStream, shareForSum, type ModelSpec } from '@federa/shared';
import { revokeSite, type RunningCoordinator } from '@federa/coordinator';
import { startProvisionedCoordinator } from './support/kits.js';
import { MultipartyMembers, reply, type Epoch, type Reply } from './support/multiparty-members.js';
import { rest, studyBody } from './support/raw-site.js';

const spec: ModelSpec = { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 23 };
const SITES = ['site-a', 'site-b', 'site-c'] as const;
type SiteId = (typeof SITES)[number];

type AuditRecord = { kind: string; siteId: string | null; studyId: string | null; round: number | null; details: Record<string, unknown> };
type RefusalView = { siteId: string; round: number; task: string; reason: string; message: string; studyHash: string };
type RoundView = { number: number; status: string; assignedSites: string[]; refusals: RefusalView[] };

/**
 * A member of a multiparty round refusing its key epoch or its key-switch task (over gRPC, mutual TLS): the refusal
 * is acknowledged, shows in the study's status with the site's reason and message, is in the audit log as a site
 * refusal, and the round does not wait for its deadline (15 minutes here): it runs again under a new epoch without
 * the site, or fails when fewer than minSites would be left.
 */
describe('a multiparty member refusing its key epoch or key-switch task', () => {
  let dir: string;
  let coordinator: RunningCoordinator;
  let members: MultipartyMembers;

  const reportRefusal = (siteId: SiteId, refusal: federation.Refusal) => reply<federation.RefusalAck>((cb) => members.client[siteId]!.reportRefusal(refusal, cb));

  const auditRecords = async (query: string): Promise<AuditRecord[]> => {
    const response = await rest(coordinator, 'GET', `/audit/records?limit=1000&${query}`, undefined, 'auditor');
    expect(response.status).toBe(200);
    return response.body.records as AuditRecord[];
  };
  const study = async (studyId: string) => {
    const response = await rest(coordinator, 'GET', `/studies/${studyId}`);
    expect(response.status).toBe(200);
    return response.body as { status: string; rounds: RoundView[]; refusals: RefusalView[] };
  };

  const nextTask = <K extends 'train' | 'keySwitch' | 'studyClosed'>(siteId: SiteId, studyId: string, kind: K, timeoutMs = 20_000) => members.nextTask(siteId, studyId, kind, timeoutMs);
  const completeEpoch = (studyId: string, ref: federation.KeyEpochRef): Promise<Epoch> => members.completeEpoch(studyId, ref);

  /** A member's honest update for the task: encrypted under the epoch's collective key, with its signed statement. */
  const upload = async (siteId: SiteId, task: federation.TrainTask, epoch: Epoch, options: { resumable?: boolean } = {}): Promise<void> => {
    const update = members.encryptedUpdate(spec, siteId, task, epoch);
    const receipt = await members.upload(siteId, task, update, members.contribution(siteId, task, epoch, update.payload), options);
    expect(receipt.error).toBeUndefined();
  };

  const downloadSum = async (siteId: SiteId, studyId: string, round: number): Promise<Uint8Array> => {
    const sum = await members.downloadSum(siteId, { studyId, round, offset: 0 });
    if (sum.error) throw sum.error;
    return sum.bytes;
  };

  const expectRefusedCall = (result: Reply<unknown>, code: keyof typeof status, details: RegExp): void => {
    expect(result.response).toBeUndefined();
    expect(status[result.error?.code ?? status.OK]).toBe(code);
    expect(result.error?.details).toMatch(details);
  };

  let kits: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'federa-mp-switch-refusals-'));
    ({ kits, coordinator } = await startProvisionedCoordinator(dir, [...SITES]));
    members = await MultipartyMembers.connect(coordinator, kits, SITES);
  }, 120_000);

  afterAll(async () => {
    members?.close();
    await coordinator?.close();
    await rm(dir, { recursive: true, force: true });
  });

  describe('key-switch tasks', () => {
    let studyId: string;
    let round1: federation.TrainTask;
    let keySwitch: federation.KeySwitchTask;

    it('runs round 1 to its key-switch task under epoch 1 of the three sites', async () => {
      const created = await rest(coordinator, 'POST', '/studies', studyBody(spec, { aggregation: 'multiparty', minSites: 2, sites: [...SITES] }));
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      studyId = created.body.id as string;
      expect((await rest(coordinator, 'POST', `/studies/${studyId}/start`)).status).toBe(200);
      const tasks = await Promise.all(SITES.map((s) => nextTask(s, studyId, 'train')));
      round1 = tasks[0]!;
      expect(round1.keyEpoch).toEqual({ number: 1, members: [...SITES], parameters: members.setup.fingerprint });
      const epoch = await completeEpoch(studyId, round1.keyEpoch!);
      for (const siteId of SITES) await upload(siteId, round1, epoch);
      const switches = await Promise.all(SITES.map((s) => nextTask(s, studyId, 'keySwitch')));
      keySwitch = switches[0]!;
      expect(keySwitch).toMatchObject({ round: 1, epoch: 1, cohort: [...SITES] });
      // Site a sends its share: it may no longer refuse the task.
      const { ring, params } = members.setup;
      const share = shareForSum(ring, params, epoch.secrets['site-a']!, modelKeyOf(ring, epoch.modelSeed), await downloadSum('site-a', studyId, 1), new SeededStream(randomBytes(32), 'federa/multiparty/smudging'));
      const sent = await reply<federation.KeyEpochAck>((cb) => members.client['site-a']!.submitKeySwitchShare({ studyId, round: 1, epoch: 1, sumSha256: keySwitch.sumSha256, share: Buffer.from(share) }, cb));
      expect(sent.error).toBeUndefined();
    });

    it('refuses garbage: a reason no key-switch task is refused for, a share-request refusal of a train task, a member whose share stands', async () => {
      const base = { studyId, round: 1, message: 'no', studyHash: keySwitch.studyHash };
      expectRefusedCall(
        await reportRefusal('site-b', { ...base, task: federation.TaskKind.TASK_KIND_KEY_SWITCH, reason: federation.RefusalReason.REFUSAL_REASON_METRICS_WITHHELD }),
        'INVALID_ARGUMENT',
        /^a key-switch task is refused for .*, not REFUSAL_REASON_METRICS_WITHHELD$/,
      );
      expectRefusedCall(
        await reportRefusal('site-b', { ...base, task: federation.TaskKind.TASK_KIND_TRAIN, reason: federation.RefusalReason.REFUSAL_REASON_SHARE_REQUEST_INVALID }),
        'INVALID_ARGUMENT',
        /^REFUSAL_REASON_SHARE_REQUEST_INVALID refuses a key-switch task, not a train task$/,
      );
      expectRefusedCall(
        await reportRefusal('site-b', { ...base, task: federation.TaskKind.TASK_KIND_EVALUATE, reason: federation.RefusalReason.REFUSAL_REASON_KEY_EPOCH_INVALID }),
        'INVALID_ARGUMENT',
        /^REFUSAL_REASON_KEY_EPOCH_INVALID refuses a train or key-switch task, not an evaluate task$/,
      );
      expectRefusedCall(
        await reportRefusal('site-b', { ...base, round: 7, task: federation.TaskKind.TASK_KIND_KEY_SWITCH, reason: federation.RefusalReason.REFUSAL_REASON_SHARE_REQUEST_INVALID }),
        'PERMISSION_DENIED',
        new RegExp(`^site site-b is not a participant of round 7 of study ${studyId}$`),
      );
      expectRefusedCall(
        await reportRefusal('site-a', { ...base, task: federation.TaskKind.TASK_KIND_KEY_SWITCH, reason: federation.RefusalReason.REFUSAL_REASON_SHARE_REQUEST_INVALID }),
        'FAILED_PRECONDITION',
        new RegExp(`^site site-a already sent its key-switching share for round 1 of study ${studyId}; the share stands$`),
      );
      // None of them is a refusal the study shows, and the round still waits for b's and c's shares.
      const view = await study(studyId);
      expect(view.refusals).toEqual([]);
      expect(view.rounds[0]).toMatchObject({ status: 'switching', assignedSites: [...SITES] });
    });

    it('takes a SHARE_REQUEST_INVALID refusal, shows and audits it, and runs the round again at once without the site', async () => {
      const message = 'this site will not help decrypt round 1: the sum holds updates of site-x, who are not members of epoch 1';
      const refused = await reportRefusal('site-c', {
        studyId,
        round: 1,
        task: federation.TaskKind.TASK_KIND_KEY_SWITCH,
        reason: federation.RefusalReason.REFUSAL_REASON_SHARE_REQUEST_INVALID,
        message,
        studyHash: keySwitch.studyHash,
      });
      expect(refused.error).toBeUndefined();
      expect(refused.response).toEqual({});

      // Well before the 15-minute deadline: sites a and b are asked to train round 1 again, under a new epoch of the two.
      const again = await Promise.all((['site-a', 'site-b'] as const).map((s) => nextTask(s, studyId, 'train', 15_000)));
      for (const task of again) expect(task).toMatchObject({ round: 1, cohort: ['site-a', 'site-b'], keyEpoch: { number: 2, members: ['site-a', 'site-b'] } });

      const view = await study(studyId);
      const shown = { siteId: 'site-c', round: 1, task: 'key-switch', reason: 'share-request-invalid', message, studyHash: keySwitch.studyHash };
      expect(view.refusals).toEqual([expect.objectContaining(shown)]);
      expect(view.rounds[0]).toMatchObject({ status: 'open', assignedSites: ['site-a', 'site-b'], refusals: [expect.objectContaining(shown)] });

      expect(await auditRecords(`siteId=site-c&kind=site.refusal&studyId=${studyId}`)).toEqual([
        expect.objectContaining({
          round: 1,
          details: expect.objectContaining({ message: 'refusal', task: 'TASK_KIND_KEY_SWITCH', reason: 'REFUSAL_REASON_SHARE_REQUEST_INVALID', reasonMessage: message }),
        }),
      ]);
      expect(await auditRecords(`siteId=site-c&kind=site.message-refused&studyId=${studyId}`)).toEqual([]);
      const closed = (await auditRecords(`kind=key.epoch-closed&studyId=${studyId}`)).map((r) => r.details);
      expect(closed).toEqual([expect.objectContaining({ epoch: 1, reason: expect.stringMatching(/^lost site-c: site-c refused the key-switch task of key epoch 1 \(share-request-invalid\)$/) })]);
      const redone = (await auditRecords(`kind=round.redone&studyId=${studyId}`)).map((r) => r.details);
      expect(redone).toEqual([expect.objectContaining({ lost: ['site-c'], epoch: 2, cohort: ['site-a', 'site-b'] })]);

      // The site left the round: a second refusal from it is not a member's.
      expectRefusedCall(
        await reportRefusal('site-c', { studyId, round: 1, task: federation.TaskKind.TASK_KIND_KEY_SWITCH, reason: federation.RefusalReason.REFUSAL_REASON_SHARE_REQUEST_INVALID, message, studyHash: keySwitch.studyHash }),
        'PERMISSION_DENIED',
        /is not a participant of round 1/,
      );
      // Nor does the round, open again, take a key-switch refusal from a member.
      expectRefusedCall(
        await reportRefusal('site-a', { studyId, round: 1, task: federation.TaskKind.TASK_KIND_KEY_SWITCH, reason: federation.RefusalReason.REFUSAL_REASON_SHARE_REQUEST_INVALID, message, studyHash: keySwitch.studyHash }),
        'FAILED_PRECONDITION',
        new RegExp(`^round 1 of study ${studyId} is open, not waiting for key-switching shares$`),
      );
      round1 = again[0]!;
    });

    it('takes an AGGREGATE_TOO_FEW_CONTRIBUTIONS refusal and fails the round at once when fewer than minSites would be left', async () => {
      const epoch = await completeEpoch(studyId, round1.keyEpoch!);
      for (const siteId of ['site-a', 'site-b'] as const) await upload(siteId, round1, epoch);
      const task = await nextTask('site-b', studyId, 'keySwitch');
      expect(task).toMatchObject({ round: 1, epoch: 2, cohort: ['site-a', 'site-b'] });
      const message = "this site will not help decrypt round 1: the sum holds 2 site(s)' updates; this site's policy needs at least 3 (minParticipants)";
      const refused = await reportRefusal('site-b', {
        studyId,
        round: 1,
        task: federation.TaskKind.TASK_KIND_KEY_SWITCH,
        reason: federation.RefusalReason.REFUSAL_REASON_AGGREGATE_TOO_FEW_CONTRIBUTIONS,
        message,
        studyHash: task.studyHash,
      });
      expect(refused.error).toBeUndefined();

      const closed = await nextTask('site-a', studyId, 'studyClosed', 15_000);
      expect(closed.outcome).toBe(federation.StudyOutcome.STUDY_OUTCOME_FAILED);
      expect(closed.message).toMatch(/^round 1 lost site-b \(site-b refused the key-switch task of key epoch 2 \(aggregate-too-few-contributions\)\); 1 site\(s\) are left, the study needs 2/);
      const view = await study(studyId);
      expect(view.status).toBe('failed');
      expect(view.rounds[0]?.status).toBe('failed');
      expect(view.refusals).toContainEqual(expect.objectContaining({ siteId: 'site-b', round: 1, task: 'key-switch', reason: 'aggregate-too-few-contributions', message }));
      expect(await auditRecords(`siteId=site-b&kind=site.refusal&studyId=${studyId}`)).toEqual([
        expect.objectContaining({ details: expect.objectContaining({ task: 'TASK_KIND_KEY_SWITCH', reason: 'REFUSAL_REASON_AGGREGATE_TOO_FEW_CONTRIBUTIONS', reasonMessage: message }) }),
      ]);
      expect((await auditRecords(`kind=round.failed&studyId=${studyId}`)).map((r) => r.details['reason'])).toEqual([closed.message]);
    });
  });

  describe('key epochs', () => {
    it('takes a KEY_EPOCH_INVALID refusal of a train task and runs the round again at once under an epoch without the site', async () => {
      const created = await rest(coordinator, 'POST', '/studies', studyBody(spec, { aggregation: 'multiparty', minSites: 2, sites: [...SITES] }));
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      const studyId = created.body.id as string;
      expect((await rest(coordinator, 'POST', `/studies/${studyId}/start`)).status).toBe(200);
      const tasks = await Promise.all(SITES.map((s) => nextTask(s, studyId, 'train')));
      const first = tasks[0]!;
      expect(first.keyEpoch).toMatchObject({ number: 1, members: [...SITES] });

      const message = 'the collective key of epoch 1 does not check out: it is not the sum of the members\' signed shares';
      const refused = await reportRefusal('site-b', {
        studyId,
        round: 1,
        task: federation.TaskKind.TASK_KIND_TRAIN,
        reason: federation.RefusalReason.REFUSAL_REASON_KEY_EPOCH_INVALID,
        message,
        studyHash: first.studyHash,
      });
      expect(refused.error).toBeUndefined();

      const again = await Promise.all((['site-a', 'site-c'] as const).map((s) => nextTask(s, studyId, 'train', 15_000)));
      for (const task of again) expect(task).toMatchObject({ round: 1, cohort: ['site-a', 'site-c'], keyEpoch: { number: 2, members: ['site-a', 'site-c'] } });
      const view = await study(studyId);
      expect(view.refusals).toEqual([expect.objectContaining({ siteId: 'site-b', round: 1, task: 'train', reason: 'key-epoch-invalid', message })]);
      expect(view.rounds[0]).toMatchObject({ status: 'open', assignedSites: ['site-a', 'site-c'] });
      expect(await auditRecords(`siteId=site-b&kind=site.refusal&studyId=${studyId}`)).toEqual([
        expect.objectContaining({ details: expect.objectContaining({ task: 'TASK_KIND_TRAIN', reason: 'REFUSAL_REASON_KEY_EPOCH_INVALID', reasonMessage: message }) }),
      ]);
      expect((await auditRecords(`kind=key.epoch-closed&studyId=${studyId}`)).map((r) => r.details['reason'])).toEqual(['lost site-b: site-b refused key epoch 1 (key-epoch-invalid)']);
      expect((await rest(coordinator, 'POST', `/studies/${studyId}/stop`, { reason: 'test over' })).status).toBe(200);
    });

    it('refuses a key-switch refusal of a round that runs under no key epoch', async () => {
      const created = await rest(coordinator, 'POST', '/studies', studyBody(spec, { aggregation: 'plaintext', minSites: 2, sites: [...SITES] }));
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      const studyId = created.body.id as string;
      expect((await rest(coordinator, 'POST', `/studies/${studyId}/start`)).status).toBe(200);
      const task = await nextTask('site-a', studyId, 'train');
      expectRefusedCall(
        await reportRefusal('site-a', { studyId, round: 1, task: federation.TaskKind.TASK_KIND_KEY_SWITCH, reason: federation.RefusalReason.REFUSAL_REASON_SHARE_REQUEST_INVALID, message: 'no', studyHash: task.studyHash }),
        'FAILED_PRECONDITION',
        new RegExp(`^round 1 of study ${studyId} runs under no key epoch`),
      );
      expect((await study(studyId)).refusals).toEqual([]);
      expect((await rest(coordinator, 'POST', `/studies/${studyId}/stop`, { reason: 'test over' })).status).toBe(200);
    });
  });

  describe('a member that cannot compute its key-switching share', () => {
    it('takes its SITE_ERROR round failure and runs the round again at once without it; a member whose share stands cannot fail', async () => {
      const created = await rest(coordinator, 'POST', '/studies', studyBody(spec, { aggregation: 'multiparty', minSites: 2, sites: [...SITES] }));
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      const studyId = created.body.id as string;
      expect((await rest(coordinator, 'POST', `/studies/${studyId}/start`)).status).toBe(200);
      const tasks = await Promise.all(SITES.map((s) => nextTask(s, studyId, 'train')));
      const epoch = await completeEpoch(studyId, tasks[0]!.keyEpoch!);
      for (const [i, siteId] of SITES.entries()) await upload(siteId, tasks[i]!, epoch);
      const keySwitch = (await Promise.all(SITES.map((s) => nextTask(s, studyId, 'keySwitch'))))[0]!;
      const { ring, params } = members.setup;
      const share = shareForSum(ring, params, epoch.secrets['site-a']!, modelKeyOf(ring, epoch.modelSeed), await downloadSum('site-a', studyId, 1), new SeededStream(randomBytes(32), 'federa/multiparty/smudging'));
      expect((await reply<federation.KeyEpochAck>((cb) => members.client['site-a']!.submitKeySwitchShare({ studyId, round: 1, epoch: 1, sumSha256: keySwitch.sumSha256, share: Buffer.from(share) }, cb))).error).toBeUndefined();

      const failure = (siteId: SiteId) =>
        reply<federation.RoundFailureAck>((cb) =>
          members.client[siteId]!.reportRoundFailure(
            { studyId, round: 1, reason: federation.FailureReason.FAILURE_REASON_SITE_ERROR, message: 'the site could not compute its key-switching share (Error); its log says why' },
            cb,
          ),
        );
      expectRefusedCall(await failure('site-a'), 'FAILED_PRECONDITION', new RegExp(`^site site-a already sent its key-switching share for round 1 of study ${studyId}; the share stands$`));
      expect((await study(studyId)).rounds[0]).toMatchObject({ status: 'switching', assignedSites: [...SITES] });

      expect((await failure('site-b')).error).toBeUndefined();
      // Well before the switch's 15-minute deadline: a and c train round 1 again under an epoch of the two.
      const again = await Promise.all((['site-a', 'site-c'] as const).map((s) => nextTask(s, studyId, 'train', 15_000)));
      for (const task of again) expect(task).toMatchObject({ round: 1, cohort: ['site-a', 'site-c'], keyEpoch: { number: 2, members: ['site-a', 'site-c'] } });
      const [redone] = await auditRecords(`studyId=${studyId}&kind=round.redone`);
      expect(redone!.details).toMatchObject({ lost: ['site-b'], reason: 'site-b failed the key-switch task of key epoch 1 (site-error)', epoch: 2, cohort: ['site-a', 'site-c'] });
      // The failure is in the audit log as the site's message; it is not a policy refusal.
      expect(await auditRecords(`siteId=site-b&kind=site.refusal&studyId=${studyId}`)).toEqual([
        expect.objectContaining({ round: 1, details: expect.objectContaining({ failure: 'FAILURE_REASON_SITE_ERROR' }) }),
      ]);
      expect((await study(studyId)).refusals).toEqual([]);
      expect((await rest(coordinator, 'POST', `/studies/${studyId}/stop`, { reason: 'test over' })).status).toBe(200);
    });
  });

  // Last: it revokes site-b for good.
  describe('a member lost while the round\'s sum is being made', () => {
    it('runs the round again without a site revoked while its round aggregates, instead of waiting for its share until the deadline', async () => {
      const created = await rest(coordinator, 'POST', '/studies', studyBody(spec, { aggregation: 'multiparty', minSites: 2, sites: [...SITES] }));
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      const studyId = created.body.id as string;
      expect((await rest(coordinator, 'POST', `/studies/${studyId}/start`)).status).toBe(200);
      const tasks = {} as Record<SiteId, federation.TrainTask>;
      for (const siteId of SITES) tasks[siteId] = await nextTask(siteId, studyId, 'train');
      const epoch = await completeEpoch(studyId, tasks['site-a'].keyEpoch!);
      await upload('site-a', tasks['site-a'], epoch);
      await upload('site-b', tasks['site-b'], epoch);
      // The blob store's working folder becomes unusable (a file where it was). site-c's update still lands: it is
      // sent as a resumable upload (its SHA-256 declared), assembled apart from that folder. The sum cannot be
      // stored, so the round stays aggregating, retrying, until the folder is back.
      const tmp = join(dir, 'coordinator', 'blobs', 'tmp');
      await rm(tmp, { recursive: true, force: true });
      await writeFile(tmp, 'in the way');
      await upload('site-c', tasks['site-c'], epoch, { resumable: true });
      await expect.poll(async () => (await rest(coordinator, 'GET', `/studies/${studyId}`)).body.error as string | null, { timeout: 20_000 }).toMatch(/aggregating round 1 failed/);
      expect((await study(studyId)).rounds[0]?.status).toBe('aggregating');

      await revokeSite({ outDir: kits, siteId: 'site-b', reason: 'left while its round was summed' });
      await expect.poll(async () => (await auditRecords('kind=site.revoked&siteId=site-b')).length, { timeout: 15_000 }).toBe(1);
      // Still aggregating well after the revocation was taken in: the next retry fails too.
      await expect.poll(async () => (await rest(coordinator, 'GET', `/studies/${studyId}`)).body.error as string | null, { timeout: 20_000 }).toMatch(/retrying in 10 s/);
      await rm(tmp);
      // Once the sum is stored the round is redone for the revocation at once, not at the switching deadline for a
      // share site-b can never send.
      await expect.poll(async () => (await auditRecords(`studyId=${studyId}&kind=round.redone`)).length, { timeout: 30_000 }).toBe(1);
      const [redone] = await auditRecords(`studyId=${studyId}&kind=round.redone`);
      expect(redone!.details).toMatchObject({ lost: ['site-b'], reason: expect.stringMatching(/certificate of site site-b was revoked/), epoch: 2, cohort: ['site-a', 'site-c'] });
      expect((await study(studyId)).rounds[0]).toMatchObject({ status: 'open', assignedSites: ['site-a', 'site-c'] });
      expect((await rest(coordinator, 'POST', `/studies/${studyId}/stop`, { reason: 'test over' })).status).toBe(200);
    });
  });
});
