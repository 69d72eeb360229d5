import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  federation,
  float32ToBytes,
  initialWeights,
  parameterCount,
  sha256Hex,
  type ModelSpec,
} from '@federa/shared';
import { openDatabase, parseCoordinatorConfig, startCoordinator, type RunningCoordinator } from '@federa/coordinator';
import { BlobStore } from '../coordinator/src/blobs/index.js';
import { dataChunk as data, fetchModel, headerChunk, plainUpdate, RawSite, rest as restAt, studyBody, trailerChunk as trailer } from './support/raw-site.js';

/**
 * Every way a site can get an upload wrong is refused with a status that says why, and none of them changes
 * what the round will aggregate. Runs the real coordinator in-process against raw gRPC clients.
 */
const spec: ModelSpec = { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 3 };
// Parameters, the weight, and one contribution slot per site of the round's cohort (site-a, site-b).
const vectorLength = parameterCount(spec) + 1 + 2;

describe('the coordinator refuses bad uploads without touching the round', () => {
  let dataDir: string;
  let coordinator: RunningCoordinator;
  let studyId: string;
  let baseSha: string;
  const sites = new Map<string, RawSite>();
  const site = (siteId: string | undefined): RawSite => {
    const key = siteId ?? '(anonymous)';
    let found = sites.get(key);
    if (!found) {
      found = new RawSite(coordinator.grpcPort, siteId);
      sites.set(key, found);
    }
    return found;
  };
  const upload = (siteId: string | undefined, messages: federation.UpdateChunk[]) => site(siteId).upload(messages);
  const header = (overrides: Partial<federation.UpdateHeader> = {}): federation.UpdateChunk =>
    headerChunk({
      studyId,
      round: 1,
      encoding: federation.UpdateEncoding.UPDATE_ENCODING_PLAINTEXT_F32,
      totalBytes: vectorLength * 4,
      vectorLength,
      baseModelSha256: baseSha,
      ...overrides,
    });
  const validPayload = (scale: number, siteId = 'site-a'): Uint8Array => plainUpdate(spec, ['site-a', 'site-b'], siteId, 0.01 * scale, 10);
  const rest = (method: string, path: string, body?: unknown, role: 'admin' | 'researcher' | 'auditor' = 'researcher') =>
    restAt(coordinator, method, path, body, role);

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'federa-refusals-'));
    coordinator = await startCoordinator(
      parseCoordinatorConfig({ insecure: true, httpPort: 0, grpcPort: 0, dataDir }),
    );
    await site('site-a').register();
    await site('site-b').register();
    const firstTasks = Promise.all([site('site-a').firstTask(), site('site-b').firstTask()]);
    const created = await rest('POST', '/studies', studyBody(spec, { rounds: 2, aggregation: 'plaintext' }));
    expect(created.status).toBe(201);
    studyId = created.body.id as string;
    // Both task streams must be attached before the round opens, so both sites are assigned.
    await new Promise((r) => setTimeout(r, 200));
    expect((await rest('POST', `/studies/${studyId}/start`)).status).toBe(200);
    const [task] = await firstTasks;
    expect(task?.kind?.$case).toBe('train');
    baseSha = task?.kind?.$case === 'train' ? (task.kind.value.baseModel?.sha256 ?? '') : '';
  });

  afterAll(async () => {
    for (const s of sites.values()) s.close();
    await coordinator?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('refuses a study definition that names its bad fields', async () => {
    const response = await rest('POST', '/studies', { name: '', model: { ...spec, inputSize: 4 }, classNames: ['x'] });
    expect(response.status).toBe(400);
    const issues = (response.body.issues as string[]).join('\n');
    expect(issues).toMatch(/^name:/m);
    expect(issues).toMatch(/model\.inputSize/);
    expect(issues).toMatch(/^rounds:/m);
    // Text the database cannot store is a 400 naming the field, not a 500 from the database.
    for (const name of ['a\u0000b', 'a\ud800b']) {
      const bad = await rest('POST', '/studies', studyBody(spec, { name }));
      expect(bad.status).toBe(400);
      expect(bad.body.issues).toEqual([expect.stringMatching(/^name: /)]);
    }
    for (const round of ['99999999999999999999', '0x0', '%20', '-1']) {
      expect((await rest('GET', `/studies/${studyId}/models/${round}`)).status).toBe(400);
    }
  });

  it('refuses each malformed, foreign or dishonest upload with a clear status', async () => {
    const good = validPayload(1);
    const nan = new Float32Array(vectorLength).fill(1);
    nan[5] = Number.NaN;
    const nanBytes = float32ToBytes(nan);
    // Site a claiming to be site b in the contribution slots (so an aggregate would name the wrong sites).
    const impostor = validPayload(1, 'site-b');
    const cases: Array<[string, string | undefined, federation.UpdateChunk[], status, RegExp]> = [
      ['no identity', undefined, [header(), data(good), trailer(good)], status.UNAUTHENTICATED, /site identity/],
      ['unregistered site', 'site-z', [header(), data(good), trailer(good)], status.FAILED_PRECONDITION, /Register first/],
      ['no header', 'site-a', [data(good), trailer(good)], status.INVALID_ARGUMENT, /start with an UpdateHeader/],
      ['unknown study', 'site-a', [header({ studyId: 'nope' }), data(good), trailer(good)], status.NOT_FOUND, /does not exist/],
      ['round not open', 'site-a', [header({ round: 2 }), data(good), trailer(good)], status.FAILED_PRECONDITION, /has not been opened/],
      ['wrong length', 'site-a', [header({ vectorLength: 7, totalBytes: 28 }), data(good), trailer(good)], status.INVALID_ARGUMENT, /vector length 7/],
      ['wrong encoding', 'site-a', [header({ encoding: federation.UpdateEncoding.UPDATE_ENCODING_CKKS }), data(good), trailer(good)], status.INVALID_ARGUMENT, /takes UPDATE_ENCODING_PLAINTEXT_F32/],
      ['stale base model', 'site-a', [header({ baseModelSha256: '0'.repeat(64) }), data(good), trailer(good)], status.FAILED_PRECONDITION, /computed against model/],
      ['malformed base state hash', 'site-a', [header({ baseStateSha256: 'xyz' }), data(good), trailer(good)], status.INVALID_ARGUMENT, /base_state_sha256: "xyz" is not a SHA-256/],
      ['truncated stream', 'site-a', [header(), data(good.subarray(0, 100))], status.INVALID_ARGUMENT, /without its trailer/],
      ['short stream', 'site-a', [header(), data(good.subarray(0, 100)), trailer(good.subarray(0, 100))], status.INVALID_ARGUMENT, /carried 100 bytes/],
      ['corrupted chunk', 'site-a', [header(), data(validPayload(2)), trailer(good)], status.DATA_LOSS, /hash to/],
      ['non-finite value', 'site-a', [header(), data(nanBytes), trailer(nanBytes)], status.INVALID_ARGUMENT, /value 5 is not a finite/],
      ['another site\'s contribution slot', 'site-a', [header(), data(impostor), trailer(impostor)], status.INVALID_ARGUMENT, /contribution slots .*expected exactly the sender site-a/],
      ['data after trailer', 'site-a', [header(), data(good), trailer(good), data(good)], status.INVALID_ARGUMENT, /more than|after its trailer/],
    ];
    for (const [name, siteId, messages, code, message] of cases) {
      const { error } = await upload(siteId, messages);
      expect(error, name).toBeDefined();
      expect([name, status[error?.code ?? 0]]).toEqual([name, status[code]]);
      expect(error?.details, name).toMatch(message);
    }
    const round = await rest('GET', `/studies/${studyId}`);
    const rounds = round.body.rounds as Array<{ reportedSites: string[]; status: string }>;
    expect(rounds[0]?.reportedSites).toEqual([]);
    expect(rounds[0]?.status).toBe('open');
    // Refused bytes are not kept: the blob store holds none of them.
    const blobs = new BlobStore(join(dataDir, 'blobs'));
    for (const refused of [nanBytes, impostor, validPayload(2)]) expect(await blobs.has(sha256Hex(refused))).toBe(false);
  });

  it('takes one upload per site, all from the same base state, and refuses duplicates and late arrivals', async () => {
    const a = validPayload(1);
    const b = validPayload(3, 'site-b');
    const sameBase = 'a'.repeat(64);
    const otherBase = 'b'.repeat(64);
    // Site b's header passes while the round has no base state yet; site a's update, accepted meanwhile, fixes it,
    // and site b's, trained from another model, is refused as its trailer arrives, before it reaches the sum.
    let accepted: Awaited<ReturnType<typeof upload>> | undefined;
    const conflicting = await site('site-b').upload([header({ baseStateSha256: otherBase }), data(b), trailer(b)], async () => {
      await new Promise((r) => setTimeout(r, 300));
      accepted = await upload('site-a', [header({ baseStateSha256: sameBase }), data(a), trailer(a)]);
    });
    expect(accepted?.receipt?.sha256).toBe(sha256Hex(a));
    expect(status[conflicting.error?.code ?? 0]).toBe('FAILED_PRECONDITION');
    expect(conflicting.error?.details).toMatch(
      new RegExp(`round 1 of study ${studyId} was trained from a global model whose state hashes to ${otherBase}, but the round's other updates were trained from ${sameBase}`),
    );
    expect(conflicting.error?.details).toMatch(/differs from the other sites'.*delete its model cache for the study/);
    // Now refused at its header, before any byte travels; both refusals are audited with why.
    const early = await upload('site-b', [header({ baseStateSha256: otherBase, sha256: sha256Hex(b) }), data(b), trailer(b)]);
    expect(status[early.error?.code ?? 0]).toBe('FAILED_PRECONDITION');
    const audited = (await rest('GET', '/audit/records?siteId=site-b&kind=site.message-refused', undefined, 'auditor')).body.records as Array<{ round: number; details: Record<string, unknown> }>;
    const baseRefusals = audited.filter((r) => /differs from the other sites'/.test(String(r.details['reason'])));
    expect(baseRefusals).toHaveLength(2);
    for (const r of baseRefusals) expect(r).toMatchObject({ round: 1, details: { message: 'update', sha256: sha256Hex(b), code: 'FAILED_PRECONDITION' } });
    const again = await upload('site-a', [header({ baseStateSha256: sameBase }), data(a), trailer(a)]);
    expect(status[again.error?.code ?? 0]).toBe('ALREADY_EXISTS');
    const status1 = (await rest('GET', `/studies/${studyId}`)).body.rounds as Array<{ baseStateSha256: string | null; reportedSites: string[] }>;
    expect(status1[0]).toMatchObject({ baseStateSha256: sameBase, reportedSites: ['site-a'] });

    // An update that names no base state (an agent from before the check) is still taken.
    expect((await upload('site-b', [header(), data(b), trailer(b)])).receipt).toBeDefined();
    // The round closes once both assigned sites reported; a retry for it is now late.
    await expect.poll(async () => ((await rest('GET', `/studies/${studyId}`)).body.rounds as Array<{ status: string }>)[0]?.status).toBe('closed');
    const late = await upload('site-b', [header(), data(b), trailer(b)]);
    expect(status[late.error?.code ?? 0]).toBe('FAILED_PRECONDITION');
    expect(late.error?.details).toMatch(/late uploads are refused/);
    // Refused at its header, an upload that declared its SHA-256 is audited under it, so the site's ledger entry
    // for it reconciles as refused rather than missing.
    const declared = sha256Hex(validPayload(4, 'site-b'));
    const lateDeclared = await upload('site-b', [header({ sha256: declared }), data(validPayload(4, 'site-b')), trailer(validPayload(4, 'site-b'))]);
    expect(status[lateDeclared.error?.code ?? 0]).toBe('FAILED_PRECONDITION');
    const refusedRecords = (await rest('GET', '/audit/records?siteId=site-b&kind=site.message-refused', undefined, 'auditor')).body.records as Array<{ details: Record<string, unknown> }>;
    expect(refusedRecords.find((r) => r.details['sha256'] === declared)).toMatchObject({
      details: { message: 'update', sha256: declared, bytes: vectorLength * 4, code: 'FAILED_PRECONDITION', declaredByHeader: true },
    });

    // Only the two accepted updates were aggregated: base + (10*0.01 + 10*0.03) / 20 = base + 0.02.
    const model = await fetchModel(coordinator, studyId, 1);
    const base = initialWeights(spec);
    const maxError = base.reduce((m, w, i) => Math.max(m, Math.abs((model[i] as number) - (w + 0.02))), 0);
    expect(maxError).toBeLessThan(1e-6);
  });

  it('keeps a huge string a site sends to a bounded length, in the database, the log and the audit record', async () => {
    const huge = 'v'.repeat(7 * 1024 * 1024);
    await site('site-huge').register(huge);
    const sites = (await rest('GET', '/sites')).body as unknown as Array<{ id: string; agentVersion: string }>;
    expect(sites.find((s) => s.id === 'site-huge')?.agentVersion.length).toBeLessThanOrEqual(70);
    const records = (await rest('GET', '/audit/records?siteId=site-huge&kind=site.registered', undefined, 'auditor')).body.records as Array<{ details: { agentVersion: string } }>;
    expect(records[0]?.details.agentVersion.length).toBeLessThanOrEqual(70);
  });

  it('lets a site download only the models of studies it takes part in', async () => {
    const own = await site('site-a').download(studyId, 0);
    expect(own.error).toBeUndefined();
    expect(own.bytes).toBe(own.header?.sizeBytes);
    await site('site-c').register();
    const foreign = await site('site-c').download(studyId, 0);
    expect(status[foreign.error?.code ?? 0]).toBe('PERMISSION_DENIED');
    expect(foreign.error?.details).toMatch(/takes no part in study/);
    expect(foreign.bytes).toBe(0);
    // The refusal is in the audit log, not only the coordinator's log, before the site learns of it.
    const refused = (await rest('GET', `/audit/records?siteId=site-c&kind=site.refused&studyId=${studyId}`, undefined, 'auditor')).body.records as Array<Record<string, unknown>>;
    expect(refused).toEqual([
      expect.objectContaining({
        actor: 'site:site-c',
        studyId,
        round: 0,
        details: { rpc: 'DownloadModel', studyId, round: 0, code: 'PERMISSION_DENIED', reason: expect.stringMatching(/takes no part in study/) },
      }),
    ]);
    // The site's own model was downloaded, not refused.
    expect((await rest('GET', '/audit/records?siteId=site-a&kind=site.refused', undefined, 'auditor')).body.records).toEqual([]);
  });

  it('refuses metrics for rounds the site is not in, and out-of-range values', async () => {
    const report = (siteId: string, r: Partial<federation.MetricsReport>) =>
      site(siteId).reportMetrics({
        studyId,
        round: 1,
        kind: federation.MetricKind.METRIC_KIND_TRAIN,
        loss: 0.5,
        accuracy: 0.7,
        seconds: 1,
        backend: 'x',
        ...r,
      });
    expect(await report('site-a', {})).toBeNull();
    await site('site-c').register();
    expect(status[(await report('site-c', {}))?.code ?? 0]).toBe('PERMISSION_DENIED');
    expect((await report('site-a', { accuracy: 1.5 }))?.details).toMatch(/within \[0, 1\]/);
    expect((await report('site-a', { loss: Number.NaN }))?.details).toMatch(/loss is not a finite/);
    // This study has no differential privacy: a site claiming to have spent some is refused, not shown.
    expect((await report('site-a', { privacyEpsilon: 1, privacyDelta: 1e-5 }))?.details).toMatch(/study .* has no differential privacy, so there is no spend to report/);
    // Ids and rounds no coordinator issued are refused at the door, and cannot spoil the audit log.
    expect((await report('site-a', { studyId: 'x'.repeat(300) }))?.details).toMatch(/study_id: .* is not a study id/);
    expect((await report('site-a', { studyId: 'a\u0000b' }))?.details).toMatch(/study_id/);
    expect((await report('site-a', { round: 4_294_967_295 }))?.details).toMatch(/round: 4294967295 is outside/);
    const verified = await rest('GET', '/audit/verify', undefined, 'auditor');
    expect(verified.body).toMatchObject({ ok: true, firstBad: null });
    expect((await rest('GET', `/studies/${encodeURIComponent('a\u0000b')}`)).status).toBe(404);
  });

  it('records the refusals nowhere: the database holds exactly the accepted receipts', async () => {
    await coordinator.close();
    const db = await openDatabase({ dataDir });
    try {
      const receipts = await db.prisma.updateReceipt.findMany({ where: { round: { studyId, number: 1 } } });
      expect(receipts.map((r) => r.siteId).sort()).toEqual(['site-a', 'site-b']);
      // The round's base state is stored with it: a restarted coordinator holds later updates to it too.
      expect((await db.prisma.round.findUniqueOrThrow({ where: { studyId_number: { studyId, number: 1 } } })).baseStateSha256).toBe('a'.repeat(64));
    } finally {
      await db.close();
    }
  });
});
