import { access, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  applyAggregate,
  CkksContext,
  contributionTagKey,
  contributionVector,
  federation,
  initialWeights,
  parameterCount,
  readSiteKit,
  sha256Hex,
  taggedLength,
  tagVector,
  untagVector,
  type ModelSpec,
} from '@federa/shared';
import { parseCoordinatorConfig, startCoordinator, type RunningCoordinator } from '@federa/coordinator';
import { startProvisionedCoordinator } from './support/kits.js';
import { dataChunk, headerChunk, rest, studyBody, tokenFor, trailerChunk } from './support/raw-site.js';
import { isolatedSchema, postgresReachable } from './postgres.js';

const spec: ModelSpec = { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 33 };
const parameters = parameterCount(spec);
const payloadLength = parameters + 1 + 2;
const vectorLength = taggedLength(payloadLength, 2048);

// The update format (shared/src/ckks/payload.ts): an 80-byte header, then one 64-byte seed per ciphertext, ..., CRC-32.
const SEEDS_AT = 80;
const SEED_BYTES = 64;
const seedOf = (payload: Uint8Array, i: number): Uint8Array => payload.slice(SEEDS_AT + i * SEED_BYTES, SEEDS_AT + (i + 1) * SEED_BYTES);
/** The payload with ciphertext i's seed replaced, and its checksum made right again: well formed, only the seed is wrong. */
const withSeed = (payload: Uint8Array, i: number, seed: Uint8Array): Uint8Array => {
  const out = Uint8Array.from(payload);
  out.set(seed, SEEDS_AT + i * SEED_BYTES);
  new DataView(out.buffer).setUint32(out.length - 4, crc32(out.subarray(0, out.length - 4)), true);
  return out;
};

const withPostgres = await postgresReachable();

/**
 * A ciphertext seed is never accepted twice under one key: two ciphertexts with one seed share c1, so their
 * difference is the difference of the plaintexts. Refused within one update, across sites, and across rounds after a
 * restart (the seeds are in the database), with the sum, the blob store and the audit log showing it.
 */
describe.each([{ database: 'pglite' as const }, ...(withPostgres ? [{ database: 'postgresql' as const }] : [])])(
  'CKKS seed reuse ($database)',
  ({ database }) => {
    let dir: string;
    let kits: string;
    let coordinator: RunningCoordinator;
    let schema: Awaited<ReturnType<typeof isolatedSchema>> | undefined;
    let ckks: CkksContext;
    let secretKey: Uint8Array;
    let studyId: string;
    let baseModel: string;
    const clients: Array<{ close(): void }> = [];
    const accepted: Uint8Array[] = [];

    const siteClient = async (siteId: string) => {
      const kit = await readSiteKit(join(kits, 'sites', siteId));
      const client = new federation.FederationServiceClient(
        `127.0.0.1:${coordinator.grpcPort}`,
        credentials.createSsl(Buffer.from(kit.caPem), Buffer.from(kit.privateKeyPem), Buffer.from(kit.certificatePem)),
        { 'grpc.ssl_target_name_override': 'localhost' },
      );
      clients.push(client);
      return client;
    };
    const upload = (client: InstanceType<typeof federation.FederationServiceClient>, payload: Uint8Array, round = 1, base = baseModel) =>
      new Promise<{ receipt?: federation.UploadReceipt; error?: ServiceError }>((resolve) => {
        const call = client.uploadUpdate(new Metadata(), (error, receipt) => resolve(error ? { error } : { receipt }));
        call.write(
          headerChunk({ studyId, round, encoding: federation.UpdateEncoding.UPDATE_ENCODING_CKKS, totalBytes: payload.byteLength, vectorLength, baseModelSha256: base }),
        );
        call.write(dataChunk(payload));
        call.write(trailerChunk(payload));
        call.end();
      });
    const encrypt = (shift: number, weight: number, siteId: string, round = 1): Uint8Array => {
      const base = initialWeights(spec);
      const payload = contributionVector(base, base.map((w) => w + shift), weight, ['site-a', 'site-b'], siteId);
      return ckks.encryptVector(tagVector(payload, ckks.valuesPerCiphertext, contributionTagKey(secretKey), { studyId, round }, siteId), secretKey);
    };
    const blobKept = (payload: Uint8Array): Promise<boolean> => {
      const sha = sha256Hex(payload);
      return access(join(dir, 'coordinator', 'blobs', 'sha256', sha.slice(0, 2), sha)).then(
        () => true,
        () => false,
      );
    };
    const refusalsAudited = async (siteId: string): Promise<Array<{ round: number | null; details: Record<string, unknown> }>> =>
      (await rest(coordinator, 'GET', `/audit/records?siteId=${siteId}&kind=site.message-refused&studyId=${studyId}`, undefined, 'auditor')).body.records as Array<{
        round: number | null;
        details: Record<string, unknown>;
      }>;

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'federa-seeds-'));
      schema = database === 'postgresql' ? await isolatedSchema('federa_seeds') : undefined;
      ({ kits, coordinator } = await startProvisionedCoordinator(dir, ['site-a', 'site-b'], undefined, schema?.url));
      secretKey = (await readSiteKit(join(kits, 'sites', 'site-a'))).ckksSecretKey;
      ckks = await CkksContext.fromKey(secretKey);
      const firstTask = (client: Awaited<ReturnType<typeof siteClient>>) =>
        new Promise<federation.Task>((resolve, reject) => {
          client.register({ agentVersion: 't', backend: 'none', supportedEncodings: [] }, new Metadata(), (error) => {
            if (error) reject(error);
            const stream = client.streamTasks({}, new Metadata());
            stream.once('data', resolve);
            stream.on('error', () => undefined);
          });
        });
      const tasks = Promise.all([firstTask(await siteClient('site-a')), firstTask(await siteClient('site-b'))]);
      await new Promise((r) => setTimeout(r, 300));
      const created = await rest(coordinator, 'POST', '/studies', studyBody(spec, { rounds: 2, aggregation: 'ckks' }));
      expect(created.status).toBe(201);
      studyId = created.body.id as string;
      await rest(coordinator, 'POST', `/studies/${studyId}/start`);
      const [first] = await tasks;
      if (first?.kind?.$case !== 'train') throw new Error('expected a train task');
      baseModel = first.kind.value.baseModel?.sha256 ?? '';
    });

    afterAll(async () => {
      for (const c of clients) c.close();
      await coordinator?.close();
      ckks?.dispose();
      await schema?.drop();
      await rm(dir, { recursive: true, force: true });
    });

    it('refuses an update whose own ciphertexts share a seed, keeping none of its bytes', async () => {
      const a = await siteClient('site-a');
      const honest = encrypt(0.01, 30, 'site-a');
      expect(honest.byteLength).toBe(ckks.updatePayloadBytes(vectorLength));
      expect(Math.ceil(vectorLength / ckks.valuesPerCiphertext)).toBeGreaterThanOrEqual(4);
      const twice = withSeed(honest, 1, seedOf(honest, 0));
      const refused = await upload(a, twice);
      expect(status[refused.error?.code ?? 0]).toBe('INVALID_ARGUMENT');
      expect(refused.error?.details).toMatch(/encrypted update refused \(SEED_REUSED\): ciphertext 1 reuses the seed of ciphertext 0 of the same update/);
      expect(await blobKept(twice)).toBe(false);
      const audited = await refusalsAudited('site-a');
      expect(audited.map((r) => [r.round, r.details.sha256, r.details.code])).toEqual([[1, sha256Hex(twice), 'INVALID_ARGUMENT']]);
      expect(audited[0]?.details.reason).toMatch(/SEED_REUSED/);
    });

    it("refuses another site's update that reuses one seed (not the first) of an accepted update; the sum holds only the honest ones", async () => {
      const a = await siteClient('site-a');
      const b = await siteClient('site-b');
      const updateA = encrypt(0.01, 30, 'site-a');
      expect((await upload(a, updateA)).receipt).toBeDefined();
      accepted.push(updateA);

      const updateB = encrypt(0.05, 10, 'site-b');
      const borrowed = withSeed(updateB, 2, seedOf(updateA, 2));
      const refused = await upload(b, borrowed);
      expect(status[refused.error?.code ?? 0]).toBe('INVALID_ARGUMENT');
      expect(refused.error?.details).toMatch(
        new RegExp(`encrypted update refused \\(SEED_REUSED\\): the seed of ciphertext 2 was already used by an update accepted for round 1 of study ${studyId};`),
      );
      expect(await blobKept(borrowed)).toBe(false);
      const audited = await refusalsAudited('site-b');
      expect(audited.map((r) => [r.round, r.details.sha256])).toEqual([[1, sha256Hex(borrowed)]]);
      expect(audited[0]?.details.reason).toMatch(/SEED_REUSED.*ciphertext 2/);
      // An exact replay is still refused as a replay, before its seeds are looked at.
      expect((await upload(b, updateA)).error?.details).toMatch(/replays are never added/);

      expect((await upload(b, updateB)).receipt).toBeDefined();
      accepted.push(updateB);
      await expect.poll(async () => (await rest(coordinator, 'GET', `/studies/${studyId}`)).body.currentRound, { timeout: 30_000 }).toBe(2);
      const response = await fetch(`http://127.0.0.1:${coordinator.httpPort}/api/v1/studies/${studyId}/models/1`, {
        headers: { authorization: `Bearer ${await tokenFor(coordinator)}` },
      });
      const aggregate = new Uint8Array(await response.arrayBuffer());
      baseModel = sha256Hex(aggregate);
      const sum = untagVector(ckks.decryptVector(aggregate, secretKey), payloadLength, ckks.valuesPerCiphertext);
      const base = initialWeights(spec);
      const next = applyAggregate(base, sum, 2);
      // (30 * 0.01 + 10 * 0.05) / 40 = 0.02: site a's update and site b's honest one, each once, nothing refused.
      expect(base.reduce((m, w, i) => Math.max(m, Math.abs((next[i] as number) - (w + 0.02))), 0)).toBeLessThan(1e-6);
      expect(sum[parameters]).toBeCloseTo(40, 5);
      expect(sum[parameters + 1]).toBeCloseTo(1, 5);
      expect(sum[parameters + 2]).toBeCloseTo(1, 5);
    });

    it('remembers the seeds across a restart: a later round reusing one is refused', async () => {
      for (const c of clients.splice(0)) c.close();
      await coordinator.close();
      coordinator = await startCoordinator(
        parseCoordinatorConfig({
          kitDir: join(kits, 'coordinator'),
          httpPort: 0,
          grpcPort: 0,
          dataDir: join(dir, 'coordinator'),
          ...(schema ? { databaseUrl: schema.url } : {}),
        }),
      );
      const a = await siteClient('site-a');
      const round2 = withSeed(encrypt(0.02, 30, 'site-a', 2), 3, seedOf(accepted[0]!, 3));
      const refused = await upload(a, round2, 2);
      expect(refused.error?.details).toMatch(new RegExp(`SEED_REUSED\\): the seed of ciphertext 3 was already used by an update accepted for round 1 of study ${studyId};`));
      expect(await blobKept(round2)).toBe(false);
      expect((await refusalsAudited('site-a')).filter((r) => r.round === 2).map((r) => r.details.sha256)).toEqual([sha256Hex(round2)]);
      // Fresh seeds are taken as ever.
      expect((await upload(a, encrypt(0.02, 30, 'site-a', 2), 2)).receipt).toBeDefined();
    });
  },
);
