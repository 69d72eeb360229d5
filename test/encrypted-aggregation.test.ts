import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  applyAggregate,
  CkksContext,
  federation,
  initialWeights,
  parameterCount,
  readCoordinatorKit,
  readSiteKit,
  contributionTagKey,
  contributionVector,
  tagProblems,
  taggedLength,
  tagVector,
  untagVector,
  type ModelSpec,
} from '@federa/shared';
import { parseCoordinatorConfig, startCoordinator, type RunningCoordinator } from '@federa/coordinator';
import { startProvisionedCoordinator } from './support/kits.js';
import { dataChunk, headerChunk, rest, studyBody, tokenFor, trailerChunk } from './support/raw-site.js';

const spec: ModelSpec = { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 21 };
const parameters = parameterCount(spec);
// Parameters, the weight, and one contribution slot per site of the cohort (site-a, site-b)...
const payloadLength = parameters + 1 + 2;
// ... laid out in whole ciphertexts (N = 2048 values), each ending with the site's two contribution tags.
const vectorLength = taggedLength(payloadLength, 2048);

/**
 * The encrypted path as the coordinator sees it: it is built from a kit that holds nothing able to decrypt,
 * refuses malformed or foreign ciphertexts without touching the round, and publishes a sum that decrypts (at a
 * site) to plaintext FedAvg within 1e-6.
 */
describe('CKKS-encrypted aggregation at the coordinator', () => {
  let dir: string;
  let kits: string;
  let coordinator: RunningCoordinator;
  let ckks: CkksContext;
  let secretKey: Uint8Array;
  let studyId: string;
  let task: federation.TrainTask;
  const clients: Array<{ close(): void }> = [];

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
  /** Uploads `payload` under a header announcing `declaredBytes` (its own size unless a test lies about it). */
  const upload = (client: InstanceType<typeof federation.FederationServiceClient>, payload: Uint8Array, declaredBytes = payload.byteLength) =>
    new Promise<{ receipt?: federation.UploadReceipt; error?: ServiceError }>((resolve) => {
      const call = client.uploadUpdate(new Metadata(), (error, receipt) => resolve(error ? { error } : { receipt }));
      call.write(
        headerChunk({
          studyId,
          round: 1,
          encoding: federation.UpdateEncoding.UPDATE_ENCODING_CKKS,
          totalBytes: declaredBytes,
          vectorLength,
          baseModelSha256: task.baseModel?.sha256 ?? '',
        }),
      );
      call.write(dataChunk(payload));
      call.write(trailerChunk(payload));
      call.end();
    });
  const vector = (shift: number, weight: number, siteId = 'site-a'): Float64Array => {
    const base = initialWeights(spec);
    const payload = contributionVector(base, base.map((w) => w + shift), weight, ['site-a', 'site-b'], siteId);
    return tagVector(payload, ckks.valuesPerCiphertext, contributionTagKey(secretKey), { studyId, round: 1 }, siteId);
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'federa-ckks-'));
    ({ kits, coordinator } = await startProvisionedCoordinator(dir, ['site-a', 'site-b']));
    secretKey = (await readSiteKit(join(kits, 'sites', 'site-a'))).ckksSecretKey;
    ckks = await CkksContext.fromKey(secretKey);
    const a = await siteClient('site-a');
    const b = await siteClient('site-b');
    const firstTask = (client: typeof a) =>
      new Promise<federation.Task>((resolve, reject) => {
        client.register({ agentVersion: 't', backend: 'none', supportedEncodings: [] }, new Metadata(), (error) => {
          if (error) reject(error);
          const stream = client.streamTasks({}, new Metadata());
          stream.once('data', resolve);
          stream.on('error', () => undefined);
        });
      });
    const tasks = Promise.all([firstTask(a), firstTask(b)]);
    await new Promise((r) => setTimeout(r, 300));
    const created = await rest(coordinator, 'POST', '/studies', studyBody(spec, { aggregation: 'ckks' }));
    expect(created.status).toBe(201);
    studyId = created.body.id as string;
    await rest(coordinator, 'POST', `/studies/${studyId}/start`);
    const [first] = await tasks;
    if (first?.kind?.$case !== 'train') throw new Error('expected a train task');
    task = first.kind.value;
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await coordinator?.close();
    ckks?.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  it('asks sites for CKKS updates under the shared key when the study says ckks', () => {
    expect(task.encoding).toBe(federation.UpdateEncoding.UPDATE_ENCODING_CKKS);
  });

  it('runs from a kit that holds nothing able to decrypt', async () => {
    const kit = await readCoordinatorKit(join(kits, 'coordinator'));
    const files = await readdir(join(kits, 'coordinator'));
    for (const file of files) {
      const bytes = await readFile(join(kits, 'coordinator', file));
      expect(Buffer.from(bytes).includes(Buffer.from(secretKey.subarray(secretKey.length - 32)))).toBe(false);
    }
    const payload = ckks.encryptVector(vector(0.01, 5), secretKey);
    // What the coordinator holds is refused as a decryption key.
    expect(() => ckks.decryptVector(payload, kit.ckksPublicParams)).toThrow();
  });

  it('refuses an upload announcing more bytes than the round takes before reading any of them', async () => {
    const a = await siteClient('site-a');
    const began = Date.now();
    // A header announcing 1 GiB, and then nothing: the refusal must come from the header alone.
    const error = await new Promise<ServiceError | null>((resolve) => {
      const call = a.uploadUpdate(new Metadata(), (e) => resolve(e));
      call.write(
        headerChunk({ studyId, round: 1, encoding: federation.UpdateEncoding.UPDATE_ENCODING_CKKS, totalBytes: 1024 ** 3, vectorLength, baseModelSha256: task.baseModel?.sha256 ?? '' }),
      );
    });
    expect(error?.details).toMatch(/the header says 1073741824/);
    expect(Date.now() - began).toBeLessThan(5_000);
  });

  it('refuses corrupted, foreign and oversized ciphertexts, then sums the honest ones', async () => {
    const a = await siteClient('site-a');
    const b = await siteClient('site-b');
    const good = ckks.encryptVector(vector(0.01, 30), secretKey);
    const corrupted = Uint8Array.from(good);
    corrupted[corrupted.length >> 1] = (corrupted[corrupted.length >> 1] as number) ^ 0xff;
    const corruptedRefusal = await upload(a, corrupted);
    expect(corruptedRefusal.error?.details).toMatch(/encrypted update refused \(CORRUPT\)/);

    const stranger = await CkksContext.create();
    const foreignKey = stranger.generateKeys().secretKey;
    const foreign = stranger.encryptVector(vector(0.01, 30), foreignKey);
    stranger.dispose();
    expect((await upload(a, foreign)).error?.details).toMatch(/encrypted update refused \(KEY_MISMATCH\)/);

    const short = ckks.encryptVector(new Float32Array(vectorLength - 1).fill(1), secretKey);
    expect((await upload(a, short)).error?.details).toMatch(/LENGTH_MISMATCH/);
    // An oversized payload (one ciphertext more than the round takes): announced honestly, the header's size is
    // refused; announced as the round's size, the stream is cut off at the first byte past it.
    const oversized = ckks.encryptVector(new Float32Array(vectorLength + ckks.valuesPerCiphertext).fill(0.5), secretKey);
    expect(oversized.byteLength).toBeGreaterThan(good.byteLength);
    expect((await upload(a, oversized)).error?.details).toMatch(new RegExp(`update of \\d+ values is ${good.byteLength} bytes, the header says ${oversized.byteLength}`));
    const smuggled = await upload(a, oversized, good.byteLength);
    expect(status[smuggled.error?.code ?? 0]).toBe('INVALID_ARGUMENT');
    expect(smuggled.error?.details).toMatch(new RegExp(`the upload sent more than the ${good.byteLength} bytes its header announced`));

    expect((await upload(a, good)).receipt).toBeDefined();
    // Site b replaying site a's ciphertext would count a's update twice.
    expect((await upload(b, good)).error?.details).toMatch(/already uploaded for round 1 .* replays are never added/);
    expect((await upload(b, ckks.encryptVector(vector(0.05, 10, 'site-b'), secretKey))).receipt).toBeDefined();

    await expect
      .poll(async () => ((await rest(coordinator, 'GET', `/studies/${studyId}`)).body.status as string))
      .toBe('completed');
    const response = await fetch(`http://127.0.0.1:${coordinator.httpPort}/api/v1/studies/${studyId}/models/1`, {
      headers: { authorization: `Bearer ${await tokenFor(coordinator)}` },
    });
    expect(response.headers.get('x-federa-model-kind')).toBe('encrypted_aggregate');
    const tagged = ckks.decryptVector(new Uint8Array(await response.arrayBuffer()), secretKey);
    // Every ciphertext carries exactly the two sites' tags: the sum is theirs, each once.
    expect(tagProblems(tagged, ckks.valuesPerCiphertext, contributionTagKey(secretKey), { studyId, round: 1 }, ['site-a', 'site-b'])).toEqual([]);
    const sum = untagVector(tagged, payloadLength, ckks.valuesPerCiphertext);
    const base = initialWeights(spec);
    const next = applyAggregate(base, sum, 2);
    // (30 * 0.01 + 10 * 0.05) / 40 = 0.02; only the two honest updates are in the sum.
    const maxError = base.reduce((m, w, i) => Math.max(m, Math.abs((next[i] as number) - (w + 0.02))), 0);
    expect(maxError).toBeLessThan(1e-6);
    expect(sum[parameters]).toBeCloseTo(40, 5);
    // Each site's contribution slot says it is in the sum, once.
    expect(sum[parameters + 1]).toBeCloseTo(1, 5);
    expect(sum[parameters + 2]).toBeCloseTo(1, 5);
  });

  it('refuses an encrypted study on a coordinator without a kit', async () => {
    const bare = await startCoordinator(parseCoordinatorConfig({ insecure: true, httpPort: 0, grpcPort: 0, dataDir: join(dir, 'bare') }));
    try {
      const response = await rest(bare, 'POST', '/studies', studyBody(spec, { minSites: 1, aggregation: 'ckks' }));
      expect(response.status).toBe(400);
      expect((response.body.issues as string[])[0]).toMatch(/^aggregation: encrypted aggregation needs the CKKS public parameters/);
      // Multiparty (the default) needs the consortium CA from a kit just the same.
      const multiparty = await rest(bare, 'POST', '/studies', studyBody(spec, { minSites: 1 }));
      expect(multiparty.status).toBe(400);
      expect((multiparty.body.issues as string[])[0]).toMatch(/^aggregation: multiparty aggregation needs the consortium CA/);
    } finally {
      await bare.close();
    }
  });
});
