import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'vitest';
import {
  canonicalJson,
  commonPolynomial,
  contributionVector,
  encodeCiphertexts,
  encryptVector,
  federation,
  initialWeights,
  keyShare,
  modelSeedOf,
  multipartySetup,
  multipartyTagKey,
  readSiteKit,
  sealEnvelope,
  SeededStream,
  sha256Hex,
  signContribution,
  signKeyShare,
  tagVector,
  unpackResidues,
  updateC1Sha256,
  type ModelSpec,
  type MultipartySetup,
} from '@federa/shared';
import type { RunningCoordinator } from '@federa/coordinator';
import { dataChunk, headerChunk, trailerChunk, TaskInbox } from './raw-site.js';

type Client = InstanceType<typeof federation.FederationServiceClient>;
type Kit = Awaited<ReturnType<typeof readSiteKit>>;
export type Reply<T> = { response?: T; error?: ServiceError };

export const reply = <T>(invoke: (callback: (error: ServiceError | null, response: T) => void) => void): Promise<Reply<T>> =>
  new Promise((resolve) => invoke((error, response) => resolve(error ? { error } : { response })));

/** One key epoch as its members hold it (secret shares never sent), once its collective key and model key exist. */
export interface Epoch {
  number: number;
  members: string[];
  a: Uint32Array;
  secrets: Partial<Record<string, Uint32Array>>;
  collectiveKey: Uint32Array;
  modelSeed: Uint8Array;
}

/** A download of DownloadSum or DownloadUpdateC1: its header and bytes, or the refusal. */
export interface Download {
  header?: federation.SumHeader;
  bytes: Uint8Array;
  error?: ServiceError;
}

/**
 * Certified raw sites over mutual TLS that play the multiparty members themselves (key shares, envelopes, encrypted
 * updates with signed statements), so tests can make them honest or not against a real coordinator.
 */
export class MultipartyMembers {
  readonly kit: Record<string, Kit> = {};
  readonly client: Record<string, Client> = {};
  readonly inbox: Record<string, TaskInbox> = {};
  setup!: MultipartySetup;

  /** Registers every site and opens its task stream; resolves once the coordinator holds them all. */
  static async connect(coordinator: RunningCoordinator, kits: string, sites: readonly string[]): Promise<MultipartyMembers> {
    const members = new MultipartyMembers();
    for (const siteId of sites) {
      const kit = await readSiteKit(join(kits, 'sites', siteId));
      members.kit[siteId] = kit;
      const client = new federation.FederationServiceClient(
        `127.0.0.1:${coordinator.grpcPort}`,
        credentials.createSsl(Buffer.from(kit.caPem), Buffer.from(kit.privateKeyPem), Buffer.from(kit.certificatePem)),
        { 'grpc.ssl_target_name_override': 'localhost', 'grpc.use_local_subchannel_pool': 1 },
      );
      members.client[siteId] = client;
      const registered = await reply<federation.RegisterResponse>((cb) =>
        client.register({ agentVersion: 'test', backend: 'none', supportedEncodings: [federation.UpdateEncoding.UPDATE_ENCODING_MULTIPARTY] }, cb),
      );
      expect(registered.error).toBeUndefined();
      members.inbox[siteId] = new TaskInbox(client.streamTasks({}));
    }
    members.setup = multipartySetup(members.kit[sites[0]!]!.caPem);
    const wanted = [...sites].sort().join();
    for (const started = Date.now(); coordinator.connectedSites().join() !== wanted; await new Promise((r) => setTimeout(r, 50))) {
      if (Date.now() - started > 10_000) throw new Error(`sites did not connect: ${coordinator.connectedSites().join(', ')}`);
    }
    return members;
  }

  close(): void {
    for (const inbox of Object.values(this.inbox)) inbox.close();
    for (const client of Object.values(this.client)) client.close();
  }

  /** The next task of `kind` for this study at this site; others (another study's) are passed over. */
  async nextTask<K extends 'train' | 'keySwitch' | 'studyClosed'>(siteId: string, studyId: string, kind: K, timeoutMs = 20_000) {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const task = await this.inbox[siteId]!.next(Math.max(1, until - Date.now()));
      if (task.kind?.$case === kind && task.kind.value.studyId === studyId) return task.kind.value as Extract<federation.Task['kind'], { $case: K }>['value'];
    }
  }

  /** Every member sends its signed public share, then its envelopes; the epoch is then complete. */
  async completeEpoch(studyId: string, ref: federation.KeyEpochRef): Promise<Epoch> {
    const { setup, kit, client } = this;
    const members = ref.members;
    const a = commonPolynomial(setup.ring, setup.commonSeed, { studyId, epoch: ref.number });
    const secrets: Epoch['secrets'] = {};
    const contributions = new Map<string, Uint8Array>();
    for (const siteId of members) {
      const pair = keyShare(setup.ring, a, new SeededStream(randomBytes(32), 'federa/multiparty/secret-share'));
      secrets[siteId] = pair.secret;
      contributions.set(siteId, randomBytes(32));
      const signed = signKeyShare(setup.ring, setup.params, {
        studyId,
        epoch: ref.number,
        siteId,
        publicShare: pair.publicShare,
        privateKeyPem: kit[siteId]!.privateKeyPem,
        certificatePem: kit[siteId]!.certificatePem,
      });
      const submission = { studyId, epoch: ref.number, statementJson: canonicalJson(signed.statement), signature: signed.signature, certificatePem: signed.certificatePem, share: Buffer.from(signed.share) };
      expect((await reply<federation.KeyEpochAck>((cb) => client[siteId]!.submitKeyShare(submission, cb))).error).toBeUndefined();
    }
    for (const sender of members) {
      const envelopes = members
        .filter((m) => m !== sender)
        .map((recipient) => {
          const sealed = sealEnvelope(kit[recipient]!.certificatePem, contributions.get(sender)!, { studyId, epoch: ref.number, senderId: sender, recipientId: recipient });
          return { siteId: recipient, ephemeralPublicKey: sealed.ephemeralPublicKey, iv: sealed.iv, ciphertext: sealed.ciphertext };
        });
      expect((await reply<federation.KeyEpochAck>((cb) => client[sender]!.submitEnvelopes({ studyId, epoch: ref.number, envelopes }, cb))).error).toBeUndefined();
    }
    const state = await reply<federation.KeyEpochState>((cb) => client[members[0]!]!.getKeyEpoch({ studyId, epoch: ref.number }, cb));
    expect(state.response?.status).toBe('active');
    return {
      number: ref.number,
      members,
      a,
      secrets,
      collectiveKey: unpackResidues(setup.ring, new Uint8Array(state.response!.collectiveKey), 0).poly,
      modelSeed: modelSeedOf({ studyId, epoch: ref.number }, members.map((m) => contributions.get(m)!)),
    };
  }

  /** A member's honest update for the task: encrypted under the epoch's collective key, tagged, as a payload. */
  encryptedUpdate(spec: ModelSpec, siteId: string, task: federation.TrainTask, epoch: Epoch): { payload: Uint8Array; vectorLength: number } {
    const { setup } = this;
    const base = initialWeights(spec);
    const vector = contributionVector(base, base.map((w) => w + 0.01), 10, task.cohort, siteId);
    const tagged = tagVector(vector, setup.ring.n, multipartyTagKey(epoch.modelSeed), { studyId: task.studyId, round: task.round }, siteId);
    const cts = encryptVector(setup.ring, setup.params, { p: epoch.collectiveKey, a: epoch.a }, tagged, new SeededStream(randomBytes(32), 'federa/multiparty/encrypt'));
    return { payload: encodeCiphertexts(setup.ring, setup.params, 'update', { epoch: epoch.number, valueCount: tagged.length }, cts), vectorLength: tagged.length };
  }

  /** The site's signed statement of `payload`: its SHA-256 and its c1 part's, unless `over` says otherwise. */
  contribution(siteId: string, task: federation.TrainTask, epoch: Epoch, payload: Uint8Array, over: { c1Sha256?: string } = {}): federation.SignedContribution {
    const { setup, kit } = this;
    const signed = signContribution(
      {
        epoch: epoch.number,
        studyId: task.studyId,
        round: task.round,
        siteId,
        parameters: setup.fingerprint,
        updateSha256: sha256Hex(payload),
        c1Sha256: over.c1Sha256 ?? updateC1Sha256(setup.ring, setup.params, payload),
      },
      kit[siteId]!.privateKeyPem,
      kit[siteId]!.certificatePem,
    );
    return { statementJson: canonicalJson(signed.statement), signature: signed.signature, certificatePem: signed.certificatePem };
  }

  /** Uploads a payload with its statement; resolves with the receipt or the refusal. */
  upload(
    siteId: string,
    task: federation.TrainTask,
    update: { payload: Uint8Array; vectorLength: number },
    contribution: federation.SignedContribution,
    options: { resumable?: boolean } = {},
  ): Promise<Reply<federation.UploadReceipt>> {
    const { payload, vectorLength } = update;
    return reply<federation.UploadReceipt>((cb) => {
      const call = this.client[siteId]!.uploadUpdate(new Metadata(), cb);
      call.write(
        headerChunk({
          studyId: task.studyId,
          round: task.round,
          encoding: federation.UpdateEncoding.UPDATE_ENCODING_MULTIPARTY,
          totalBytes: payload.byteLength,
          vectorLength,
          baseModelSha256: task.baseModel?.sha256 ?? '',
          contribution,
          ...(options.resumable ? { sha256: sha256Hex(payload), offset: 0 } : {}),
        }),
      );
      call.write(dataChunk(payload));
      call.write(trailerChunk(payload));
      call.end();
    });
  }

  downloadSum(siteId: string, request: federation.DownloadSumRequest): Promise<Download> {
    return collect(this.client[siteId]!.downloadSum(request, { deadline: Date.now() + 20_000 }));
  }

  downloadUpdateC1(siteId: string, request: federation.DownloadUpdateC1Request): Promise<Download> {
    return collect(this.client[siteId]!.downloadUpdateC1(request, { deadline: Date.now() + 20_000 }));
  }
}

function collect(stream: NodeJS.EventEmitter): Promise<Download> {
  return new Promise((resolve) => {
    let header: federation.SumHeader | undefined;
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: federation.SumChunk) => {
      if (chunk.part?.$case === 'header') header = chunk.part.value;
      else if (chunk.part?.$case === 'data') chunks.push(Buffer.from(chunk.part.value));
    });
    stream.on('error', (error: ServiceError) => resolve({ bytes: Buffer.concat(chunks), error }));
    stream.on('end', () => resolve({ ...(header ? { header } : {}), bytes: Buffer.concat(chunks) }));
  });
}
