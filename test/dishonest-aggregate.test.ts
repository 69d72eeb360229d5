import { access, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Client,
  credentials,
  Metadata,
  Server,
  ServerCredentials,
  type sendUnaryData,
  type ServerReadableStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceError,
  type UntypedHandleCall,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { afterAll, describe, expect, it } from 'vitest';
import { federation, type ModelSpec } from '@federa/shared';
import { parseCoordinatorConfig, startCoordinator } from '@federa/coordinator';
import { generateConsortium, parseSiteConfig, SiteAgent, siteTransport } from '@federa/site-agent';
import { plainUpdate, RawSite, rest, studyBody, wholeUpload } from './support/raw-site.js';

const spec: ModelSpec = { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 4 };

type MethodDefinition = (typeof federation.FederationServiceService)[keyof typeof federation.FederationServiceService];

/**
 * A dishonest coordinator as a site sees it: every call goes through to the real coordinator, but each published
 * aggregate (round 1 on) is said to sum only its first contributor, in the tasks and in the downloads. What the site
 * reports goes through unchanged, so its refusals reach the real coordinator's audit log.
 */
async function dishonestFront(upstreamPort: number): Promise<{ port: number; close(): Promise<void> }> {
  const upstream = new Client(`127.0.0.1:${upstreamPort}`, credentials.createInsecure());
  const lie = (ref: federation.ModelRef | undefined): federation.ModelRef | undefined =>
    ref && ref.round > 0 ? { ...ref, contributors: ref.contributors.slice(0, 1) } : ref;
  const rewrite = (message: unknown): unknown => {
    const chunk = message as federation.ModelChunk;
    if (chunk.part?.$case === 'header') return { part: { $case: 'header', value: lie(chunk.part.value) } };
    const task = message as federation.Task;
    if (task.kind?.$case === 'evaluate') return { ...task, kind: { $case: 'evaluate', value: { ...task.kind.value, globalModel: lie(task.kind.value.globalModel) } } };
    if (task.kind?.$case === 'train') return { ...task, kind: { $case: 'train', value: { ...task.kind.value, baseModel: lie(task.kind.value.baseModel) } } };
    return message;
  };
  // Only the site's own headers travel on (who it is, which process): grpc-js sets its transport ones itself.
  const forwarded = (metadata: Metadata): Metadata => {
    const out = new Metadata();
    for (const [key, value] of Object.entries(metadata.getMap())) if (key.startsWith('x-federa-')) out.set(key, value);
    return out;
  };
  const relay = (def: MethodDefinition): UntypedHandleCall => {
    const { path, requestSerialize, responseDeserialize } = def as unknown as {
      path: string;
      requestSerialize: (value: unknown) => Buffer;
      responseDeserialize: (value: Buffer) => unknown;
    };
    if (def.requestStream) {
      return ((call: ServerReadableStream<unknown, unknown>, callback: sendUnaryData<unknown>) => {
        const up = upstream.makeClientStreamRequest(path, requestSerialize, responseDeserialize, forwarded(call.metadata), (error, response) => callback(error, response));
        call.on('data', (message) => up.write(message));
        call.on('end', () => up.end());
      }) as UntypedHandleCall;
    }
    if (def.responseStream) {
      return ((call: ServerWritableStream<unknown, unknown>) => {
        const up = upstream.makeServerStreamRequest(path, requestSerialize, responseDeserialize, call.request, forwarded(call.metadata));
        up.on('data', (message) => call.write(rewrite(message)));
        up.on('end', () => call.end());
        up.on('error', (error: ServiceError) => call.emit('error', error));
        call.on('cancelled', () => up.cancel());
      }) as UntypedHandleCall;
    }
    return ((call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
      upstream.makeUnaryRequest(path, requestSerialize, responseDeserialize, call.request, forwarded(call.metadata), (error, response) => callback(error, response));
    }) as UntypedHandleCall;
  };
  const server = new Server();
  const implementation: UntypedServiceImplementation = {};
  for (const [name, def] of Object.entries(federation.FederationServiceService)) implementation[name] = relay(def);
  server.addService(federation.FederationServiceService, implementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  return {
    port,
    close: async () => {
      server.forceShutdown();
      upstream.close();
    },
  };
}

/**
 * A real site agent behind a coordinator that claims fewer contributions than the site's policy needs: the site
 * decrypts and keeps nothing of the aggregate, neither to evaluate it nor as the study's final model, and each
 * refusal reaches the coordinator's audit log with its reason code.
 */
describe('a site served a dishonest aggregate', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterAll(async () => {
    for (const step of cleanup.reverse()) await step();
  });

  it('refuses it, keeps no model, and the refusals reach the audit log', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'federa-dishonest-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const coordinator = await startCoordinator(parseCoordinatorConfig({ insecure: true, httpPort: 0, grpcPort: 0, dataDir: join(dir, 'coordinator') }));
    cleanup.push(() => coordinator.close());
    const front = await dishonestFront(coordinator.grpcPort);
    cleanup.push(() => front.close());

    const data = await generateConsortium({ outDir: join(dir, 'data'), sites: 1, imagesPerSite: 8, holdoutImages: 0, seed: 2 });
    const config = parseSiteConfig(
      {
        site: { id: 'site-a' },
        coordinator: { address: `127.0.0.1:${front.port}`, insecure: true },
        data: { dir: data.sites[0]!.dir, labels: data.sites[0]!.labelsCsv },
        stateDir: join(dir, 'state'),
        policy: { requireEncryption: false, minParticipants: 2, autoApprove: true },
      },
      dir,
    );
    let closed: (value: federation.StudyClosed) => void = () => undefined;
    const studyClosed = new Promise<federation.StudyClosed>((resolve) => (closed = resolve));
    const agent = new SiteAgent(config, await siteTransport(config), { onStudyClosed: (c) => closed(c) });
    const running = agent.run();
    cleanup.push(async () => {
      agent.stop();
      await running;
    });
    const other = new RawSite(coordinator.grpcPort, 'site-b');
    await other.register();
    const tasks = other.inbox();
    cleanup.push(() => tasks.close(), () => other.close());
    await expect.poll(() => coordinator.connectedSites(), { timeout: 60_000 }).toEqual(['site-a', 'site-b']);

    const created = await rest(coordinator, 'POST', '/studies', studyBody(spec, { minSites: 2, aggregation: 'plaintext', roundTimeoutSeconds: 600 }));
    expect(created.status).toBe(201);
    const studyId = created.body.id as string;
    expect((await rest(coordinator, 'POST', `/studies/${studyId}/start`)).status).toBe(200);
    const task = await tasks.next();
    const base = task.kind?.$case === 'train' ? task.kind.value.baseModel : undefined;
    const update = plainUpdate(spec, ['site-a', 'site-b'], 'site-b', 0.01, 10);
    const header = {
      studyId,
      round: 1,
      encoding: federation.UpdateEncoding.UPDATE_ENCODING_PLAINTEXT_F32,
      totalBytes: update.byteLength,
      vectorLength: update.byteLength / 4,
      baseModelSha256: base?.sha256 ?? '',
    };
    expect((await other.upload(wholeUpload(header, update))).error).toBeUndefined();

    // The real coordinator summed both sites; the front says it summed one, below the site's minParticipants.
    const finished = await studyClosed;
    expect(finished.outcome).toBe(federation.StudyOutcome.STUDY_OUTCOME_COMPLETED);
    expect(finished.finalRound).toBe(1);
    const study = await rest(coordinator, 'GET', `/studies/${studyId}`);
    expect((study.body.rounds as Array<{ reportedSites: string[] }>)[0]?.reportedSites.sort()).toEqual(['site-a', 'site-b']);

    // Nothing of the aggregate was kept: the site's cache holds the initial model it trained from, and no round 1.
    await expect(access(join(dir, 'state', 'models', studyId, '0.f32'))).resolves.toBeUndefined();
    await expect(access(join(dir, 'state', 'models', studyId, '1.f32'))).rejects.toThrow(/ENOENT/);

    const refusals = async () =>
      ((await rest(coordinator, 'GET', `/audit/records?kind=site.refusal&siteId=site-a&studyId=${studyId}`, undefined, 'auditor')).body.records as Array<{
        round: number | null;
        details: Record<string, unknown>;
      }>).map((r) => [r.round, r.details.task, r.details.reason]);
    // The evaluation of the aggregate was refused, and so was the aggregate as the study's final model.
    await expect.poll(refusals, { timeout: 30_000 }).toEqual(
      expect.arrayContaining([
        [1, 'TASK_KIND_EVALUATE', 'REFUSAL_REASON_AGGREGATE_TOO_FEW_CONTRIBUTIONS'],
        [1, 'TASK_KIND_TRAIN', 'REFUSAL_REASON_AGGREGATE_TOO_FEW_CONTRIBUTIONS'],
      ]),
    );
    const shown = (await rest(coordinator, 'GET', `/studies/${studyId}`)).body.refusals as Array<{ siteId: string; task: string; reason: string }>;
    expect(shown.map((r) => [r.siteId, r.task, r.reason]).sort()).toEqual([
      ['site-a', 'evaluate', 'aggregate-too-few-contributions'],
      ['site-a', 'train', 'aggregate-too-few-contributions'],
    ]);
    // Recording the refusal left the completed study as it was.
    expect((await rest(coordinator, 'GET', `/studies/${studyId}`)).body.status).toBe('completed');
  });
});
