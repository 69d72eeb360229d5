import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bytesToFloat32,
  decodeCiphertexts,
  decryptVector,
  keyShare,
  commonPolynomial,
  modelKeyOf,
  multipartySetup,
  readSiteKit,
  SeededStream,
  untagVector,
} from '@federa/shared';
import { openDatabase, revokeSite } from '@federa/coordinator';
import { LocalConsortium, type StudyStatusView } from '../demo/src/consortium.js';
import { isolatedSchema, postgresReachable } from './postgres.js';

const ROUNDS = 3;
const withPostgres = await postgresReachable();

interface EpochFile {
  secretSeed: string;
  modelSeed?: string;
}

/**
 * Multiparty aggregation end to end: three real site processes, each with its own secret key share, and a coordinator
 * that sums what it cannot read and publishes a sum only the round's sites can decrypt. One site is dropped during the
 * study: the round in progress runs again under a new key epoch without it, and nothing published after that opens
 * with what the dropped site and the coordinator hold together.
 */
describe.each([
  { database: 'pglite' as const, leaves: 'dropped' as const },
  ...(withPostgres ? [{ database: 'postgresql' as const, leaves: 'dropped' as const }] : []),
  { database: 'pglite' as const, leaves: 'revoked' as const },
  { database: 'pglite' as const, leaves: 'disconnected' as const },
])('multiparty keys in a 3-site consortium over gRPC ($database, a site $leaves)', ({ database, leaves }) => {
  let workDir: string;
  let consortium: LocalConsortium;
  let study: StudyStatusView;
  let schema: Awaited<ReturnType<typeof isolatedSchema>> | undefined;
  let dropped: string;

  const siteDir = (siteId: string) => consortium.sites.find((s) => s.id === siteId)!.stateDir;
  const epochFile = async (siteId: string, epoch: number): Promise<EpochFile> =>
    JSON.parse(await readFile(join(siteDir(siteId), 'multiparty', 'epochs', study.id, `${epoch}.json`), 'utf8')) as EpochFile;
  /**
   * The model a site decrypted for a round. The last round's is decrypted for its evaluation, which is not a gate: the
   * study can complete a moment before a site has written it, so it is waited for (on a loaded machine, seconds).
   */
  const siteModel = async (siteId: string, round: number, waitMs = 30_000): Promise<Float32Array> => {
    const path = join(siteDir(siteId), 'models', study.id, `${round}.f32`);
    const deadline = Date.now() + waitMs;
    for (;;) {
      try {
        return bytesToFloat32(await readFile(path));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || Date.now() > deadline) throw error;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  };
  const blob = (sha256: string) => readFile(join(workDir, 'coordinator', 'blobs', 'sha256', sha256.slice(0, 2), sha256));

  beforeAll(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'federa-multiparty-'));
    schema = database === 'postgresql' ? await isolatedSchema('federa_mp') : undefined;
    consortium = await LocalConsortium.start({
      workDir,
      sites: 3,
      imagesPerSite: 30,
      holdoutImages: 6,
      seed: 17,
      // Two sites keep training after one is dropped: each site's policy accepts a sum of two.
      policy: { minParticipants: 2 },
      // A site that loses its connection is given 2 s to come back before its round runs again without it.
      ...(leaves === 'disconnected' ? { env: { FEDERA_RECONNECT_GRACE_SECONDS: '2' } } : {}),
      ...(schema ? { databaseUrl: schema.url } : {}),
    });
    const created = await consortium.createStudy({
      name: 'multiparty e2e',
      model: { architecture: 'small-cnn', inputSize: 32, channels: 1, classes: 2, seed: 5 },
      classNames: ['normal', 'lesion'],
      rounds: ROUNDS,
      minSites: 2,
      localSteps: 4,
      batchSize: 8,
      learningRate: 0.01,
      aggregation: 'multiparty',
    });
    await consortium.approve(created.specHash);
    await consortium.startStudy(created.id);
    dropped = consortium.sites[2]!.id;
    // Dropped once round 1 is published: round 2 (or, if it was quick, round 3) runs under a new epoch without it.
    for (const started = Date.now(); ; await new Promise((r) => setTimeout(r, 200))) {
      const view = await consortium.study(created.id);
      if (view.rounds[0]?.status === 'closed') break;
      if (view.status === 'failed' || Date.now() - started > 180_000) throw new Error(`round 1 did not close: ${JSON.stringify(view).slice(0, 2000)}`);
    }
    if (leaves === 'dropped') await consortium.request('POST', `/studies/${created.id}/sites/${dropped}/drop`, { reason: 'left the consortium' });
    else if (leaves === 'disconnected') {
      // The site's machine dies with round 2 under way (or just done): no goodbye, its connection simply ends. The
      // study is paused so that it cannot finish before the coordinator has given up on the site.
      await consortium.request('POST', `/studies/${created.id}/pause`, { reason: 'a member is unreachable' });
      const site = consortium.sites[2]!.process;
      const gone = new Promise((r) => site.once('exit', r));
      site.kill('SIGKILL');
      await gone;
      for (const started = Date.now(); ; await new Promise((r) => setTimeout(r, 200))) {
        const view = await consortium.study(created.id);
        // The round in progress ran again without the site (or had closed before it died).
        if (view.rounds.every((r) => r.status !== 'open' && r.status !== 'switching' && r.status !== 'aggregating')) break;
        if (Date.now() - started > 60_000) throw new Error(`round 2 did not settle after ${dropped} died: ${JSON.stringify(view.rounds).slice(0, 2000)}`);
      }
      await consortium.request('POST', `/studies/${created.id}/resume`, { reason: 'going on without it' });
    } else {
      // The operator revokes the site's certificate; the coordinator rereads the list every 2 s, longer than a round
      // of this study takes, so the study is paused (the round in progress still finishes, or runs again without the
      // site if the revocation lands during it) until the coordinator has recorded the revocation.
      await consortium.request('POST', `/studies/${created.id}/pause`, { reason: 'a member is leaving' });
      await revokeSite({ outDir: join(workDir, 'kits'), siteId: dropped, reason: 'left the consortium' });
      for (const started = Date.now(); ; await new Promise((r) => setTimeout(r, 200))) {
        const page = await consortium.request<{ records: unknown[] }>('GET', `/audit/records?kind=site.revoked&siteId=${dropped}`, undefined, 'auditor');
        if (page.records.length > 0) break;
        if (Date.now() - started > 30_000) throw new Error(`the coordinator did not record the revocation of ${dropped}`);
      }
      await consortium.request('POST', `/studies/${created.id}/resume`, { reason: 'the member has left' });
    }
    study = await consortium.follow(created.id, () => undefined, 300_000);
  }, 420_000);

  afterAll(async () => {
    await consortium?.stop();
    await schema?.drop();
    if (!process.env.FEDERA_KEEP_TEST_DIR) await rm(workDir, { recursive: true, force: true });
  });

  it('publishes sums only the sites can decrypt, each equal to plaintext FedAvg of the exact updates within 1e-6', async () => {
    expect(study.status).toBe('completed');
    expect(study.rounds.map((r) => r.model?.kind)).toEqual(Array(ROUNDS).fill('multiparty_aggregate'));
    for (const round of study.rounds) {
      const members = round.assignedSites;
      const base = await siteModel(members[0]!, round.number - 1, 0).catch(async () => siteModel(members[1]!, round.number - 1));
      const sum = new Float64Array(base.length + 1);
      for (const siteId of round.reportedSites) {
        const dir = join(siteDir(siteId), 'rounds', study.id, String(round.number));
        const sent = await readFile(join(dir, 'update.bin'));
        expect(sent.subarray(0, 4).toString('latin1')).toBe('FMP1');
        const vector = bytesToFloat32(await readFile(join(dir, 'update.plain.f32')));
        for (let i = 0; i <= base.length; i++) sum[i] = (sum[i] as number) + (vector[i] as number);
      }
      const published = await siteModel(members[0]!, round.number);
      let maxError = 0;
      for (let i = 0; i < base.length; i++) {
        const expected = (base[i] as number) + (sum[i] as number) / (sum[base.length] as number);
        maxError = Math.max(maxError, Math.abs(expected - (published[i] as number)));
      }
      expect(maxError).toBeLessThan(1e-6);
      // Every member decrypted the same model, but a site killed or revoked as round 1 closed may have been assigned
      // to round 2 before it left, and cannot fetch what was published after.
      for (const siteId of members.filter((m) => leaves === 'dropped' || m !== dropped)) expect(Array.from(await siteModel(siteId, round.number))).toEqual(Array.from(published));
    }
  });

  it('ran the round the dropped site was in again under a new key epoch without it', () => {
    const last = study.rounds.at(-1)!;
    expect(last.assignedSites).not.toContain(dropped);
    expect(study.rounds[0]!.assignedSites).toContain(dropped);
  });

  it('gives the coordinator together with one site nothing that opens another site\'s update or a later model', async () => {
    await consortium.stop();
    const db = await openDatabase({ dataDir: join(workDir, 'coordinator'), ...(schema ? { databaseUrl: schema.url } : {}) });
    try {
      expect(db.kind).toBe(database);
      const kit = await readSiteKit(join(workDir, 'kits', 'sites', dropped));
      const setup = multipartySetup(kit.caPem);
      const { ring, params } = setup;
      const epochs = await db.prisma.keyEpoch.findMany({ where: { studyId: study.id }, include: { shares: true }, orderBy: { number: 'asc' } });
      expect(epochs.length).toBeGreaterThanOrEqual(2);
      expect(epochs[0]!.members).toContain(dropped);
      const later = epochs.filter((e) => !e.members.includes(dropped));
      expect(later.length).toBeGreaterThan(0);
      // The site that left never decrypted a model of a later epoch (it holds no key to one). Every process has stopped,
      // so nothing is still to be written: no waiting.
      const laterRounds = study.rounds.filter((r) => !r.assignedSites.includes(dropped)).map((r) => r.number);
      for (const round of laterRounds) await expect(siteModel(dropped, round, 0)).rejects.toThrow(/ENOENT/);
      const audit = await db.prisma.auditRecord.findMany({ where: { studyId: study.id }, orderBy: { seq: 'asc' } });
      const kinds = audit.map((r) => r.kind);
      expect(kinds.filter((k) => k === 'key.epoch-opened').length).toBe(epochs.length);
      // When the site left during a round, that round ran again under the new epoch, audited with who was lost.
      const rounds = await db.prisma.round.findMany({ where: { studyId: study.id } });
      if (rounds.some((r) => r.redone > 0)) {
        expect(audit.some((r) => r.kind === 'round.redone' && r.details.includes(dropped))).toBe(true);
      }
      // No envelope of a later epoch is sealed for the dropped site.
      for (const epoch of later) {
        for (const share of epoch.shares) expect(JSON.stringify(share.envelopes ?? [])).not.toContain(`"${dropped}"`);
      }
      // The dropped site's secret share of epoch 1 (its kit and its state folder), and everything the coordinator stores.
      const own = await epochFile(dropped, 1);
      const a = commonPolynomial(ring, setup.commonSeed, { studyId: study.id, epoch: 1 });
      const secret = keyShare(ring, a, new SeededStream(Buffer.from(own.secretSeed, 'hex'), 'federa/multiparty/secret-share')).secret;
      const round1 = await db.prisma.round.findUniqueOrThrow({ where: { studyId_number: { studyId: study.id, number: 1 } }, include: { receipts: true } });
      const other = round1.receipts.find((r) => r.siteId !== dropped)!;
      const otherPlain = bytesToFloat32(await readFile(join(siteDir(other.siteId), 'rounds', study.id, '1', 'update.plain.f32')));
      const update = decodeCiphertexts(ring, params, 'update', await blob(other.sha256));
      const opened = untagVector(decryptVector(ring, params, update.ciphertexts, secret, update.header.valueCount), otherPlain.length, ring.n);
      // Noise spread over +-q/(2 Delta) (about 2e6): not one of 200 values within 0.01 of the other site's, and
      // typically 1e5 or more away, where the values themselves are at most a few units.
      const distances = Array.from(opened.subarray(0, 200), (v, i) => Math.abs(v - (otherPlain[i] as number)));
      expect(distances.filter((d) => d < 0.01)).toEqual([]);
      expect(median(distances)).toBeGreaterThan(1e4);

      // The dropped site's model key of epoch 1 does open round 1's model (it was a member then) ...
      const models = await db.prisma.modelVersion.findMany({ where: { studyId: study.id, round: { gt: 0 } }, orderBy: { round: 'asc' } });
      const modelKey = modelKeyOf(ring, Buffer.from(own.modelSeed!, 'hex'));
      const decryptWith = async (round: number) => {
        const row = models.find((m) => m.round === round)!;
        const model = decodeCiphertexts(ring, params, 'model', await blob(row.sha256));
        return { epoch: row.keyEpoch, values: decryptVector(ring, params, model.ciphertexts, modelKey, model.header.valueCount).subarray(0, 64) };
      };
      const first = await decryptWith(1);
      expect(first.epoch).toBe(1);
      expect(Math.max(...Array.from(first.values).map(Math.abs))).toBeLessThan(1e3);
      // ... and nothing published under a later epoch.
      const lastRound = models.at(-1)!.round;
      const last = await decryptWith(lastRound);
      expect(later.map((e) => e.number)).toContain(last.epoch);
      expect(median(Array.from(last.values, Math.abs))).toBeGreaterThan(1e4);
    } finally {
      await db.close();
    }
  });
});

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

/**
 * Cohorts that rotate (targetSites below the sites connected): each round draws its sites, so a round's key epoch
 * often has a member that was not in the previous one. Members that were hand it the base model's key in their
 * envelopes, so it trains from the same model as everyone else.
 */
describe('multiparty keys with a rotating cohort (pglite)', () => {
  let workDir: string;
  let consortium: LocalConsortium;
  let study: StudyStatusView;

  beforeAll(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'federa-multiparty-rotating-'));
    consortium = await LocalConsortium.start({ workDir, sites: 3, imagesPerSite: 30, holdoutImages: 6, seed: 23, policy: { minParticipants: 2 } });
    const created = await consortium.createStudy({
      name: 'multiparty rotating cohort',
      model: { architecture: 'small-cnn', inputSize: 32, channels: 1, classes: 2, seed: 9 },
      classNames: ['normal', 'lesion'],
      rounds: 4,
      minSites: 2,
      targetSites: 2,
      localSteps: 3,
      batchSize: 8,
      learningRate: 0.01,
    });
    await consortium.approve(created.specHash);
    await consortium.startStudy(created.id);
    study = await consortium.follow(created.id, () => undefined, 300_000);
  }, 420_000);

  afterAll(async () => {
    await consortium?.stop();
    if (!process.env.FEDERA_KEEP_TEST_DIR) await rm(workDir, { recursive: true, force: true });
  });

  it('has every round\'s sites, new ones included, decrypt the same model, equal to plaintext FedAvg within 1e-6', async () => {
    expect(study.status).toBe('completed');
    const model = async (siteId: string, round: number) =>
      bytesToFloat32(await readFile(join(consortium.sites.find((s) => s.id === siteId)!.stateDir, 'models', study.id, `${round}.f32`)));
    for (const round of study.rounds) {
      const previous = study.rounds.find((r) => r.number === round.number - 1);
      // A site new since the last round holds the base model's key only because a member handed it over.
      for (const siteId of previous ? round.assignedSites.filter((s) => !previous.assignedSites.includes(s)) : []) {
        const stateDir = consortium.sites.find((s) => s.id === siteId)!.stateDir;
        const epochs = await readdir(join(stateDir, 'multiparty', 'epochs', study.id));
        const files = await Promise.all(epochs.map(async (f) => JSON.parse(await readFile(join(stateDir, 'multiparty', 'epochs', study.id, f), 'utf8')) as EpochFile & { inheritedModelSeeds?: Record<string, string> }));
        expect(files.some((f) => Object.keys(f.inheritedModelSeeds ?? {}).length > 0)).toBe(true);
      }
      const base = await model(round.assignedSites[0]!, round.number - 1);
      const sum = new Float64Array(base.length + 1);
      for (const siteId of round.reportedSites) {
        const dir = join(consortium.sites.find((s) => s.id === siteId)!.stateDir, 'rounds', study.id, String(round.number));
        const vector = bytesToFloat32(await readFile(join(dir, 'update.plain.f32')));
        for (let i = 0; i <= base.length; i++) sum[i] = (sum[i] as number) + (vector[i] as number);
      }
      const published = await model(round.assignedSites[0]!, round.number);
      let maxError = 0;
      for (let i = 0; i < base.length; i++) {
        maxError = Math.max(maxError, Math.abs((base[i] as number) + (sum[i] as number) / (sum[base.length] as number) - (published[i] as number)));
      }
      expect(maxError).toBeLessThan(1e-6);
      for (const siteId of round.assignedSites) expect(Array.from(await model(siteId, round.number))).toEqual(Array.from(published));
    }
  });
});
