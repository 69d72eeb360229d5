import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  canonicalJson,
  commonPolynomial,
  contributionVector,
  decodeCiphertexts,
  decryptVector,
  encodeCiphertexts,
  encryptVector,
  federation,
  initialWeights,
  keyShare,
  keyShareStatementSchema,
  modelKeyOf,
  modelSeedOf,
  multipartySetup,
  multipartyTagKey,
  openEnvelope,
  parameterCount,
  readSiteKit,
  sealEnvelope,
  SeededStream,
  sha256Hex,
  shareForSum,
  signContribution,
  signKeyShare,
  tagProblems,
  tagVector,
  unpackResidues,
  untagVector,
  updateC1Sha256,
  type ModelSpec,
  type MultipartySetup,
} from '@federa/shared';
import { revokeSite, type RunningCoordinator } from '@federa/coordinator';
import { startProvisionedCoordinator } from './support/kits.js';
import { dataChunk, headerChunk, rest, studyBody, tokenFor, trailerChunk, TaskInbox } from './support/raw-site.js';

const spec: ModelSpec = { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 21 };
const parameters = parameterCount(spec);
const MEMBERS = ['site-a', 'site-b', 'site-c'] as const;
type Member = (typeof MEMBERS)[number];
// The three members, and an outsider the study is not offered to (it registers, but is never in a round).
const SITES = [...MEMBERS, 'site-d'] as const;
type SiteId = (typeof SITES)[number];

type Client = InstanceType<typeof federation.FederationServiceClient>;
type Kit = Awaited<ReturnType<typeof readSiteKit>>;
type Reply<T> = { response?: T; error?: ServiceError };

const reply = <T>(invoke: (callback: (error: ServiceError | null, response: T) => void) => void): Promise<Reply<T>> =>
  new Promise((resolve) => invoke((error, response) => resolve(error ? { error } : { response })));

/** The audit digest of a site message: SHA-256 of its protobuf bytes, as the coordinator records it. */
const digestOf = <T>(codec: { encode(message: T): { finish(): Uint8Array } }, message: T): string => sha256Hex(codec.encode(message).finish());

/**
 * Multiparty aggregation against raw gRPC sites over mutual TLS: every key share, envelope, update and key-switching
 * share a site could forge, misattribute or repeat is refused with a status that says why and audited as refused,
 * while the honest messages of the same sites still complete the round.
 */
describe('multiparty aggregation refuses forged, foreign and repeated site messages', () => {
  let dir: string;
  let kits: string;
  let coordinator: RunningCoordinator;
  let setup: MultipartySetup;
  let studyId: string;
  let task: federation.TrainTask;
  let epoch: number;
  let a: Uint32Array;
  const kit = {} as Record<SiteId, Kit>;
  const client = {} as Record<SiteId, Client>;
  const inbox = {} as Record<Member, TaskInbox>;
  /** Each member's secret share (never sent) and its 32 bytes of the epoch's model key. */
  const secrets = {} as Record<Member, { secret: Uint32Array; publicShare: Uint32Array; contribution: Uint8Array }>;
  let modelSeed: Uint8Array;
  let collectiveKey: Uint32Array;
  let keySwitch: federation.KeySwitchTask;
  let sumC1: Uint8Array;
  const weights: Partial<Record<Member, number>> = {};

  const connect = (siteId: SiteId, k: Kit): Client =>
    new federation.FederationServiceClient(
      `127.0.0.1:${coordinator.grpcPort}`,
      credentials.createSsl(Buffer.from(k.caPem), Buffer.from(k.privateKeyPem), Buffer.from(k.certificatePem)),
      // A channel per client: the revoked site's new connection is not multiplexed onto an existing one.
      { 'grpc.ssl_target_name_override': 'localhost', 'grpc.use_local_subchannel_pool': 1, 'grpc.primary_user_agent': siteId },
    );

  const submitKeyShare = (siteId: SiteId, request: federation.KeyShareSubmission) =>
    reply<federation.KeyEpochAck>((cb) => client[siteId].submitKeyShare(request, cb));
  const submitEnvelopes = (siteId: SiteId, request: federation.EnvelopeSubmission) =>
    reply<federation.KeyEpochAck>((cb) => client[siteId].submitEnvelopes(request, cb));
  const getKeyEpoch = (siteId: SiteId) => reply<federation.KeyEpochState>((cb) => client[siteId].getKeyEpoch({ studyId, epoch }, cb));
  const submitKeySwitchShare = (siteId: SiteId, request: federation.KeySwitchShareSubmission) =>
    reply<federation.KeyEpochAck>((cb) => client[siteId].submitKeySwitchShare(request, cb));

  /** A key share as a site forms it, signed with `signer`'s kit (the site's own unless a test says otherwise). */
  const keyShareOf = (
    statementSite: string,
    publicShare: Uint32Array,
    signer: { privateKeyPem: string; certificatePem: string } = kit[statementSite as SiteId],
  ): federation.KeyShareSubmission => {
    const signed = signKeyShare(setup.ring, setup.params, {
      studyId,
      epoch,
      siteId: statementSite,
      publicShare,
      privateKeyPem: signer.privateKeyPem,
      certificatePem: signer.certificatePem,
    });
    return {
      studyId,
      epoch,
      statementJson: canonicalJson(signed.statement),
      signature: signed.signature,
      certificatePem: signed.certificatePem,
      share: Buffer.from(signed.share),
    };
  };

  const auditRecords = async (query: string): Promise<Array<{ kind: string; siteId: string | null; studyId: string | null; round: number | null; details: Record<string, unknown> }>> => {
    const response = await rest(coordinator, 'GET', `/audit/records?limit=1000&${query}`, undefined, 'auditor');
    expect(response.status).toBe(200);
    return response.body.records as Array<{ kind: string; siteId: string | null; studyId: string | null; round: number | null; details: Record<string, unknown> }>;
  };
  /** The refusal the coordinator audited for the message with this digest (before it answered the site). */
  const refusalOf = async (siteId: SiteId, sha256: string) =>
    (await auditRecords(`siteId=${siteId}&kind=site.message-refused`)).find((r) => r.details['sha256'] === sha256);

  const expectRefused = async (
    siteId: SiteId,
    result: Reply<unknown>,
    expected: { code: keyof typeof status; reason: RegExp; message: string; sha256: string },
  ): Promise<void> => {
    expect(result.response).toBeUndefined();
    expect(status[result.error?.code ?? status.OK]).toBe(expected.code);
    expect(result.error?.details).toMatch(expected.reason);
    expect(await refusalOf(siteId, expected.sha256)).toMatchObject({
      siteId,
      studyId,
      details: { message: expected.message, sha256: expected.sha256, code: expected.code, reason: expect.stringMatching(expected.reason) },
    });
  };

  /** A member's multiparty update for round 1: its weighted shift, tagged and encrypted under the collective key. */
  const encryptedUpdate = (siteId: Member, shift: number, weight: number): { payload: Uint8Array; vectorLength: number } => {
    const base = initialWeights(spec);
    const vector = contributionVector(base, base.map((w) => w + shift), weight, [...MEMBERS], siteId);
    const tagged = tagVector(vector, setup.ring.n, multipartyTagKey(modelSeed), { studyId, round: 1 }, siteId);
    const cts = encryptVector(setup.ring, setup.params, { p: collectiveKey, a }, tagged, new SeededStream(randomBytes(32), 'federa/multiparty/encrypt'));
    return { payload: encodeCiphertexts(setup.ring, setup.params, 'update', { epoch, valueCount: tagged.length }, cts), vectorLength: tagged.length };
  };
  /** The statement of `payload` (its SHA-256 and its c1 part's), unless `statement` says otherwise. */
  const contributionOf = (siteId: Member, payload: Uint8Array, statement: { round?: number; updateSha256?: string } = {}): federation.SignedContribution => {
    const signed = signContribution(
      {
        epoch,
        studyId,
        round: statement.round ?? 1,
        siteId,
        parameters: setup.fingerprint,
        updateSha256: statement.updateSha256 ?? sha256Hex(payload),
        c1Sha256: updateC1Sha256(setup.ring, setup.params, payload),
      },
      kit[siteId].privateKeyPem,
      kit[siteId].certificatePem,
    );
    return { statementJson: canonicalJson(signed.statement), signature: signed.signature, certificatePem: signed.certificatePem };
  };
  const upload = (siteId: Member, payload: Uint8Array, vectorLength: number, contribution: federation.SignedContribution) =>
    reply<federation.UploadReceipt>((cb) => {
      const call = client[siteId].uploadUpdate(new Metadata(), cb);
      call.write(
        headerChunk({
          studyId,
          round: 1,
          encoding: federation.UpdateEncoding.UPDATE_ENCODING_MULTIPARTY,
          totalBytes: payload.byteLength,
          vectorLength,
          baseModelSha256: task.baseModel?.sha256 ?? '',
          contribution,
        }),
      );
      call.write(dataChunk(payload));
      call.write(trailerChunk(payload));
      call.end();
    });

  const downloadSum = (siteId: SiteId): Promise<{ header?: federation.SumHeader; bytes: Uint8Array; error?: ServiceError }> =>
    new Promise((resolve) => {
      let header: federation.SumHeader | undefined;
      const chunks: Buffer[] = [];
      const stream = client[siteId].downloadSum({ studyId, round: 1, offset: 0 }, { deadline: Date.now() + 20_000 });
      stream.on('data', (chunk: federation.SumChunk) => {
        if (chunk.part?.$case === 'header') header = chunk.part.value;
        else if (chunk.part?.$case === 'data') chunks.push(Buffer.from(chunk.part.value));
      });
      stream.on('error', (error: ServiceError) => resolve({ bytes: Buffer.concat(chunks), error }));
      stream.on('end', () => resolve({ ...(header ? { header } : {}), bytes: Buffer.concat(chunks) }));
    });
  const switchShareOf = (siteId: Member): Uint8Array =>
    shareForSum(
      setup.ring,
      setup.params,
      secrets[siteId].secret,
      // The first member (sorted) carries the model key in its share, as a site agent does.
      siteId === MEMBERS[0] ? modelKeyOf(setup.ring, modelSeed) : null,
      sumC1,
      new SeededStream(randomBytes(32), 'federa/multiparty/smudging'),
    );

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'federa-mp-refusals-'));
    ({ kits, coordinator } = await startProvisionedCoordinator(dir, [...SITES]));
    for (const siteId of SITES) {
      kit[siteId] = await readSiteKit(join(kits, 'sites', siteId));
      client[siteId] = connect(siteId, kit[siteId]);
    }
    setup = multipartySetup(kit['site-a'].caPem);
    for (const siteId of SITES) {
      const registered = await reply<federation.RegisterResponse>((cb) =>
        client[siteId].register({ agentVersion: 'test', backend: 'none', supportedEncodings: [federation.UpdateEncoding.UPDATE_ENCODING_MULTIPARTY] }, cb),
      );
      expect(registered.error).toBeUndefined();
    }
    for (const siteId of MEMBERS) inbox[siteId] = new TaskInbox(client[siteId].streamTasks({}));
    for (const started = Date.now(); coordinator.connectedSites().join() !== MEMBERS.join(); await new Promise((r) => setTimeout(r, 50))) {
      if (Date.now() - started > 10_000) throw new Error(`members did not connect: ${coordinator.connectedSites().join(', ')}`);
    }
    const created = await rest(coordinator, 'POST', '/studies', studyBody(spec, { aggregation: 'multiparty', minSites: 2, sites: [...MEMBERS] }));
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    studyId = created.body.id as string;
    expect((await rest(coordinator, 'POST', `/studies/${studyId}/start`)).status).toBe(200);
    const tasks = await Promise.all(MEMBERS.map((m) => inbox[m].next()));
    for (const t of tasks) if (t.kind?.$case !== 'train') throw new Error(`expected a train task, got ${t.kind?.$case}`);
    task = (tasks[0]!.kind as { $case: 'train'; value: federation.TrainTask }).value;
    epoch = task.keyEpoch?.number ?? 0;
    a = commonPolynomial(setup.ring, setup.commonSeed, { studyId, epoch });
    for (const siteId of MEMBERS) {
      const pair = keyShare(setup.ring, a, new SeededStream(randomBytes(32), 'federa/multiparty/secret-share'));
      secrets[siteId] = { ...pair, contribution: randomBytes(32) };
    }
  }, 120_000);

  afterAll(async () => {
    for (const siteId of MEMBERS) inbox[siteId]?.close();
    for (const c of Object.values(client)) c.close();
    await coordinator?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('asks every member for multiparty updates under one key epoch of exactly the three members', () => {
    expect(task.encoding).toBe(federation.UpdateEncoding.UPDATE_ENCODING_MULTIPARTY);
    expect(task.keyEpoch).toEqual({ number: 1, members: [...MEMBERS], parameters: setup.fingerprint });
    expect(task.cohort).toEqual([...MEMBERS]);
  });

  describe('public-key shares', () => {
    it('refuses a share whose statement names another site than the sender', async () => {
      // Site a signs (with its own key and certificate) a statement that says it is site b's share.
      const forged = keyShareOf('site-b', secrets['site-a'].publicShare, kit['site-a']);
      await expectRefused('site-a', await submitKeyShare('site-a', forged), {
        code: 'INVALID_ARGUMENT',
        reason: /^key share refused: the statement names site-b, but site-a sent it$/,
        message: 'key-share',
        sha256: digestOf(federation.KeyShareSubmission, forged),
      });
    });

    it('refuses a share whose bytes are not the ones its statement signs', async () => {
      const honest = keyShareOf('site-a', secrets['site-a'].publicShare);
      // The statement signs site a's share; the bytes sent are site b's (a valid polynomial of the same size).
      const swapped = { ...honest, share: keyShareOf('site-b', secrets['site-b'].publicShare).share };
      await expectRefused('site-a', await submitKeyShare('site-a', swapped), {
        code: 'INVALID_ARGUMENT',
        reason: new RegExp(`^key share refused: the share's bytes hash to ${sha256Hex(swapped.share)}, the statement signs ${sha256Hex(honest.share)}$`),
        message: 'key-share',
        sha256: digestOf(federation.KeyShareSubmission, swapped),
      });
      // Truncated bytes are refused by their size before they are hashed.
      const short = { ...honest, share: honest.share.subarray(0, honest.share.length - 4) };
      await expectRefused('site-a', await submitKeyShare('site-a', short), {
        code: 'INVALID_ARGUMENT',
        reason: /^key share refused: the share is \d+ bytes, a polynomial of the ring is \d+$/,
        message: 'key-share',
        sha256: digestOf(federation.KeyShareSubmission, short),
      });
    });

    it("refuses a share signed with another site's certificate, or whose signature does not verify", async () => {
      // A statement for site a, signed by site c's key under site c's certificate.
      const foreign = keyShareOf('site-a', secrets['site-a'].publicShare, kit['site-c']);
      await expectRefused('site-a', await submitKeyShare('site-a', foreign), {
        code: 'INVALID_ARGUMENT',
        reason: /^key share refused: it is signed with the certificate of site-c$/,
        message: 'key-share',
        sha256: digestOf(federation.KeyShareSubmission, foreign),
      });
      // Site a's certificate, but site c's key made the signature.
      const mismatched = keyShareOf('site-a', secrets['site-a'].publicShare, { privateKeyPem: kit['site-c'].privateKeyPem, certificatePem: kit['site-a'].certificatePem });
      await expectRefused('site-a', await submitKeyShare('site-a', mismatched), {
        code: 'INVALID_ARGUMENT',
        reason: /^key share refused: its signature does not verify$/,
        message: 'key-share',
        sha256: digestOf(federation.KeyShareSubmission, mismatched),
      });
      // A share for a key epoch that does not exist.
      const elsewhere = { ...keyShareOf('site-a', secrets['site-a'].publicShare), epoch: epoch + 7 };
      await expectRefused('site-a', await submitKeyShare('site-a', elsewhere), {
        code: 'NOT_FOUND',
        reason: new RegExp(`^study ${studyId} has no key epoch ${epoch + 7}$`),
        message: 'key-share',
        sha256: digestOf(federation.KeyShareSubmission, elsewhere),
      });
    });

    it('refuses a key share from a site that is not a member of the epoch', async () => {
      const outsider = keyShareOf('site-d', secrets['site-a'].publicShare);
      await expectRefused('site-d', await submitKeyShare('site-d', outsider), {
        code: 'PERMISSION_DENIED',
        reason: new RegExp(`^site site-d is not a member of key epoch ${epoch} of study ${studyId}$`),
        message: 'key-share',
        sha256: digestOf(federation.KeyShareSubmission, outsider),
      });
    });

    it('refuses to show the epoch to a site that is not a member, and audits the denial', async () => {
      const outsider = await getKeyEpoch('site-d');
      expect(status[outsider.error?.code ?? status.OK]).toBe('PERMISSION_DENIED');
      expect(outsider.error?.details).toBe(`site site-d is not a member of key epoch ${epoch} of study ${studyId}`);
      expect((await auditRecords('siteId=site-d&kind=site.refused')).find((r) => r.details['rpc'] === 'GetKeyEpoch')).toMatchObject({
        studyId,
        details: { rpc: 'GetKeyEpoch', code: 'PERMISSION_DENIED' },
      });
    });

    it('kept none of the refused shares: the epoch still waits for every member', async () => {
      const state = await getKeyEpoch('site-a');
      expect(state.error).toBeUndefined();
      expect(state.response?.shares).toEqual([]);
      expect(state.response?.collectiveKey.byteLength).toBe(0);
      expect(state.response?.status).toBe('open');
    });
  });

  describe('the honest path, and what it refuses on the way', () => {
    it("takes every member's honest share, publishes the collective key, and refuses a second, different share", async () => {
      for (const siteId of MEMBERS) {
        const honest = keyShareOf(siteId, secrets[siteId].publicShare);
        const accepted = await submitKeyShare(siteId, honest);
        expect(accepted.error).toBeUndefined();
        // The same share again is a retry, acknowledged.
        expect((await submitKeyShare(siteId, honest)).error).toBeUndefined();
        const records = await auditRecords(`siteId=${siteId}&kind=site.key-share&studyId=${studyId}`);
        expect(records.map((r) => r.details['sha256'])).toContain(digestOf(federation.KeyShareSubmission, honest));
      }
      const other = keyShare(setup.ring, a, new SeededStream(randomBytes(32), 'federa/multiparty/secret-share'));
      const second = keyShareOf('site-a', other.publicShare);
      await expectRefused('site-a', await submitKeyShare('site-a', second), {
        code: 'ALREADY_EXISTS',
        reason: new RegExp(`^site site-a already sent a different key share for epoch ${epoch} of study ${studyId}; one share per epoch$`),
        message: 'key-share',
        sha256: digestOf(federation.KeyShareSubmission, second),
      });

      const state = await getKeyEpoch('site-b');
      expect(state.error).toBeUndefined();
      expect(state.response?.members).toEqual([...MEMBERS]);
      expect(state.response?.shares.map((s) => keyShareStatementSchema.parse(JSON.parse(s.statementJson)).siteId)).toEqual([...MEMBERS]);
      expect(state.response?.collectiveKey.byteLength).toBeGreaterThan(0);
      collectiveKey = unpackResidues(setup.ring, new Uint8Array(state.response!.collectiveKey), 0).poly;
    });

    it('relays envelopes sealed to the certificates in the epoch\'s shares, each opening at its recipient', async () => {
      const state = (await getKeyEpoch('site-a')).response!;
      const certificateOf = (siteId: string) => state.shares.find((s) => keyShareStatementSchema.parse(JSON.parse(s.statementJson)).siteId === siteId)!.certificatePem;
      // Envelopes before the collective key would have been refused; an envelope for an outsider is refused now.
      const toOutsider: federation.EnvelopeSubmission = {
        studyId,
        epoch,
        envelopes: (['site-b', 'site-d'] as const).map((recipient) => {
          const sealed = sealEnvelope(recipient === 'site-d' ? kit['site-d'].certificatePem : certificateOf(recipient), secrets['site-a'].contribution, {
            studyId,
            epoch,
            senderId: 'site-a',
            recipientId: recipient,
          });
          return { siteId: recipient, ephemeralPublicKey: sealed.ephemeralPublicKey, iv: sealed.iv, ciphertext: sealed.ciphertext };
        }),
      };
      await expectRefused('site-a', await submitEnvelopes('site-a', toOutsider), {
        code: 'INVALID_ARGUMENT',
        reason: /^envelopes go to each other member once \(site-b, site-c\), got site-b, site-d$/,
        message: 'key-envelopes',
        sha256: digestOf(federation.EnvelopeSubmission, toOutsider),
      });

      for (const sender of MEMBERS) {
        const envelopes = MEMBERS.filter((m) => m !== sender).map((recipient) => {
          const sealed = sealEnvelope(certificateOf(recipient), secrets[sender].contribution, { studyId, epoch, senderId: sender, recipientId: recipient });
          return { siteId: recipient, ephemeralPublicKey: sealed.ephemeralPublicKey, iv: sealed.iv, ciphertext: sealed.ciphertext };
        });
        expect((await submitEnvelopes(sender, { studyId, epoch, envelopes })).error).toBeUndefined();
      }
      for (const recipient of MEMBERS) {
        const mine = (await getKeyEpoch(recipient)).response!;
        expect(mine.status).toBe('active');
        expect(mine.envelopes.map((e) => e.siteId).sort()).toEqual(MEMBERS.filter((m) => m !== recipient));
        for (const e of mine.envelopes) {
          const opened = openEnvelope(
            { recipient, ephemeralPublicKey: e.ephemeralPublicKey, iv: e.iv, ciphertext: e.ciphertext },
            kit[recipient].privateKeyPem,
            { studyId, epoch, senderId: e.siteId, recipientId: recipient },
          );
          expect(Buffer.from(opened).equals(Buffer.from(secrets[e.siteId as Member].contribution))).toBe(true);
        }
      }
      modelSeed = modelSeedOf({ studyId, epoch }, MEMBERS.map((m) => secrets[m].contribution));
    });

    it('refuses an update whose contribution statement names another round or other bytes', async () => {
      const { payload, vectorLength } = encryptedUpdate('site-a', 0.01, 30);
      const sha256 = sha256Hex(payload);
      const anotherRound = await upload('site-a', payload, vectorLength, contributionOf('site-a', payload, { round: 2 }));
      await expectRefused('site-a', anotherRound, {
        code: 'INVALID_ARGUMENT',
        reason: new RegExp(`^multiparty update refused: the statement is for study ${studyId} round 2 epoch ${epoch}, not study ${studyId} round 1 epoch ${epoch}$`),
        message: 'update',
        sha256,
      });
      const otherBytes = sha256Hex(randomBytes(16));
      const wrongSha = await upload('site-a', payload, vectorLength, contributionOf('site-a', payload, { updateSha256: otherBytes }));
      expect(status[wrongSha.error?.code ?? status.OK]).toBe('INVALID_ARGUMENT');
      expect(wrongSha.error?.details).toBe(`multiparty update refused: the statement signs update ${otherBytes}, the bytes received hash to ${sha256}`);
      // Site b's statement (for site b's bytes) riding on site a's upload.
      const borrowed = await upload('site-a', payload, vectorLength, contributionOf('site-b', payload));
      expect(borrowed.error?.details).toBe('multiparty update refused: the statement names site-b, but site-a sent it');
      // Site a's own statement, signed by site c under site c's certificate.
      const signedByC = signContribution(
        { epoch, studyId, round: 1, siteId: 'site-a', parameters: setup.fingerprint, updateSha256: sha256, c1Sha256: updateC1Sha256(setup.ring, setup.params, payload) },
        kit['site-c'].privateKeyPem,
        kit['site-c'].certificatePem,
      );
      const foreignSigner = await upload('site-a', payload, vectorLength, { statementJson: canonicalJson(signedByC.statement), signature: signedByC.signature, certificatePem: signedByC.certificatePem });
      expect(foreignSigner.error?.details).toBe('multiparty update refused: the contribution statement: it is signed with the certificate of site-c');
      const unsigned = await upload('site-a', payload, vectorLength, { statementJson: '', signature: '', certificatePem: '' });
      expect(unsigned.error?.details).toBe('multiparty update refused: the upload header carries no signed contribution statement');
      const refused = (await auditRecords(`siteId=site-a&kind=site.message-refused&studyId=${studyId}`)).filter((r) => r.details['message'] === 'update' && r.details['sha256'] === sha256);
      expect(refused.length).toBe(5);
      const round = (await rest(coordinator, 'GET', `/studies/${studyId}`)).body.rounds as Array<{ reportedSites: string[]; status: string }>;
      expect(round[0]).toMatchObject({ reportedSites: [], status: 'open' });
    });

    it('takes the honest updates and a failure, then asks every member for its key-switching share', async () => {
      for (const [siteId, shift, weight] of [['site-a', 0.01, 30], ['site-b', 0.05, 10]] as const) {
        const { payload, vectorLength } = encryptedUpdate(siteId, shift, weight);
        const accepted = await upload(siteId, payload, vectorLength, contributionOf(siteId, payload));
        expect(accepted.error).toBeUndefined();
        expect(accepted.response?.sha256).toBe(sha256Hex(payload));
        weights[siteId] = weight;
      }
      const failure = await reply<federation.RoundFailureAck>((cb) =>
        client['site-c'].reportRoundFailure({ studyId, round: 1, reason: federation.FailureReason.FAILURE_REASON_NO_USABLE_DATA, message: 'no images' }, cb),
      );
      expect(failure.error).toBeUndefined();
      for (const siteId of MEMBERS) {
        let next: federation.Task;
        do next = await inbox[siteId].next(30_000);
        while (next.kind?.$case !== 'keySwitch');
        keySwitch = next.kind.value;
        expect(keySwitch).toMatchObject({ studyId, round: 1, epoch, parameters: setup.fingerprint, cohort: [...MEMBERS] });
        expect(keySwitch.contributions.map((c) => (JSON.parse(c.statementJson) as { siteId: string }).siteId).sort()).toEqual(['site-a', 'site-b']);
      }
      const sum = await downloadSum('site-a');
      expect(sum.error).toBeUndefined();
      expect(sum.header?.sha256).toBe(keySwitch.sumSha256);
      expect(sha256Hex(sum.bytes)).toBe(keySwitch.sumSha256);
      sumC1 = sum.bytes;
      // The outsider may not read the sum.
      const outsider = await downloadSum('site-d');
      expect(status[outsider.error?.code ?? status.OK]).toBe('PERMISSION_DENIED');
      expect(outsider.error?.details).toMatch(/site site-d is not a member of the key epoch of round 1/);
    });

    it('refuses a key-switching share from a non-member, for another sum or another epoch', async () => {
      const share = Buffer.from(switchShareOf('site-b'));
      const fromOutsider = { studyId, round: 1, epoch, sumSha256: keySwitch.sumSha256, share };
      await expectRefused('site-d', await submitKeySwitchShare('site-d', fromOutsider), {
        code: 'PERMISSION_DENIED',
        reason: new RegExp(`^site site-d is not a member of the key epoch of round 1 of study ${studyId}$`),
        message: 'key-switch-share',
        sha256: digestOf(federation.KeySwitchShareSubmission, fromOutsider),
      });
      const otherSum = sha256Hex(randomBytes(8));
      const wrongSum = { studyId, round: 1, epoch, sumSha256: otherSum, share };
      await expectRefused('site-b', await submitKeySwitchShare('site-b', wrongSum), {
        code: 'INVALID_ARGUMENT',
        reason: new RegExp(`^the share is for sum ${otherSum}, round 1 of study ${studyId} asks for ${keySwitch.sumSha256}$`),
        message: 'key-switch-share',
        sha256: digestOf(federation.KeySwitchShareSubmission, wrongSum),
      });
      const wrongEpoch = { studyId, round: 1, epoch: epoch + 1, sumSha256: keySwitch.sumSha256, share };
      await expectRefused('site-b', await submitKeySwitchShare('site-b', wrongEpoch), {
        code: 'FAILED_PRECONDITION',
        reason: new RegExp(`^round 1 of study ${studyId} is switched under key epoch ${epoch}, not ${epoch + 1}$`),
        message: 'key-switch-share',
        sha256: digestOf(federation.KeySwitchShareSubmission, wrongEpoch),
      });
      const truncated = { studyId, round: 1, epoch, sumSha256: keySwitch.sumSha256, share: share.subarray(0, share.length - 16) };
      const short = await submitKeySwitchShare('site-b', truncated);
      expect(status[short.error?.code ?? status.OK]).toBe('INVALID_ARGUMENT');
      expect(short.error?.details).toMatch(/key-switching share refused|wrong size/);
    });

    it('acknowledges the same key-switching share as already held and refuses a different one for the same round', async () => {
      const first = { studyId, round: 1, epoch, sumSha256: keySwitch.sumSha256, share: Buffer.from(switchShareOf('site-a')) };
      const accepted = await submitKeySwitchShare('site-a', first);
      expect(accepted.error).toBeUndefined();
      expect(accepted.response?.alreadyHeld).toBe(false);
      const again = await submitKeySwitchShare('site-a', first);
      expect(again.error).toBeUndefined();
      expect(again.response?.alreadyHeld).toBe(true);
      // A share computed again (fresh smudging noise) is different bytes for the same sum: one share per sum.
      const different = { ...first, share: Buffer.from(switchShareOf('site-a')) };
      expect(sha256Hex(different.share)).not.toBe(sha256Hex(first.share));
      await expectRefused('site-a', await submitKeySwitchShare('site-a', different), {
        code: 'ALREADY_EXISTS',
        reason: new RegExp(`^site site-a already sent a different key-switching share for round 1 of study ${studyId}; one share per sum$`),
        message: 'key-switch-share',
        sha256: digestOf(federation.KeySwitchShareSubmission, different),
      });
      const accepts = await auditRecords(`siteId=site-a&kind=site.key-switch-share&studyId=${studyId}`);
      expect(accepts.map((r) => r.details['sha256'])).toEqual([digestOf(federation.KeySwitchShareSubmission, first), digestOf(federation.KeySwitchShareSubmission, first)]);
    });

    it('publishes the switched sum once every member sent its share, and it decrypts to the honest updates only', async () => {
      for (const siteId of ['site-b', 'site-c'] as const) {
        const sent = await submitKeySwitchShare(siteId, { studyId, round: 1, epoch, sumSha256: keySwitch.sumSha256, share: Buffer.from(switchShareOf(siteId)) });
        expect(sent.error).toBeUndefined();
        expect(sent.response?.alreadyHeld).toBe(false);
      }
      await expect.poll(async () => (await rest(coordinator, 'GET', `/studies/${studyId}`)).body.status as string, { timeout: 30_000 }).toBe('completed');
      const response = await fetch(`http://127.0.0.1:${coordinator.httpPort}/api/v1/studies/${studyId}/models/1`, {
        headers: { authorization: `Bearer ${await tokenFor(coordinator)}` },
      });
      expect(response.status).toBe(200);
      expect(response.headers.get('x-federa-model-kind')).toBe('multiparty_aggregate');
      const { header, ciphertexts } = decodeCiphertexts(setup.ring, setup.params, 'model', new Uint8Array(await response.arrayBuffer()), { epoch });
      const tagged = decryptVector(setup.ring, setup.params, ciphertexts, modelKeyOf(setup.ring, modelSeed), header.valueCount);
      expect(tagProblems(tagged, setup.ring.n, multipartyTagKey(modelSeed), { studyId, round: 1 }, ['site-a', 'site-b'])).toEqual([]);
      const sum = untagVector(tagged, parameters + 1 + MEMBERS.length, setup.ring.n);
      expect(sum[parameters]).toBeCloseTo((weights['site-a'] ?? 0) + (weights['site-b'] ?? 0), 4);
      // Each contributor's slot once, site c's not at all.
      expect(sum[parameters + 1]).toBeCloseTo(1, 4);
      expect(sum[parameters + 2]).toBeCloseTo(1, 4);
      expect(sum[parameters + 3]).toBeCloseTo(0, 4);
      // FedAvg of the two honest updates: (30 * 0.01 + 10 * 0.05) / 40 = 0.02 on every weight.
      let maxError = 0;
      for (let i = 0; i < parameters; i++) maxError = Math.max(maxError, Math.abs((sum[i] as number) / (sum[parameters] as number) - 0.02));
      expect(maxError).toBeLessThan(1e-6);
    });
  });

  // Last: it changes the consortium.
  describe('a revoked site', () => {
    it("refuses the revoked site's calls at its identity and audits the revocation", async () => {
      const result = await revokeSite({ outDir: kits, siteId: 'site-c', reason: 'test' });
      expect(result.revoked.length).toBe(1);
      const serial = result.revoked[0]!.serialNumber;
      // The coordinator re-reads revoked.json within about two seconds, without a call or a restart.
      await expect
        .poll(async () => (await auditRecords('siteId=site-c&kind=site.revoked')).map((r) => r.details), { timeout: 10_000, interval: 250 })
        .toEqual([{ serialNumber: serial, reason: 'test' }]);

      // Its key share (honest bytes, its own certificate) is refused before the statement is read.
      const share = keyShareOf('site-c', secrets['site-c'].publicShare);
      const refused = await submitKeyShare('site-c', share);
      expect(refused.response).toBeUndefined();
      expect(status[refused.error?.code ?? status.OK]).toBe('PERMISSION_DENIED');
      expect(refused.error?.details).toBe(`certificate ${serial} of site site-c was revoked (test)`);
      // A fresh connection with the revoked kit fares no better.
      const fresh = connect('site-c', kit['site-c']);
      try {
        const again = await reply<federation.KeyEpochAck>((cb) => fresh.submitKeyShare(share, new Metadata(), { deadline: Date.now() + 10_000 }, cb));
        expect(again.response).toBeUndefined();
        // The TLS handshake itself succeeds (the certificate chains to the CA); the call is refused at the identity check.
        expect(status[again.error?.code ?? status.OK]).toBe('PERMISSION_DENIED');
        expect(again.error?.details).toBe(`certificate ${serial} of site site-c was revoked (test)`);
      } finally {
        fresh.close();
      }
      const denied = await auditRecords('siteId=site-c&kind=site.refused');
      expect(denied.find((r) => r.details['rpc'] === 'SubmitKeyShare')).toMatchObject({
        details: { rpc: 'SubmitKeyShare', code: 'PERMISSION_DENIED', reason: `certificate ${serial} of site site-c was revoked (test)` },
      });
      // Its task stream was dropped at the revocation.
      expect(coordinator.connectedSites()).toEqual(['site-a', 'site-b']);
      // The other members are unaffected.
      expect((await getKeyEpoch('site-a')).error).toBeUndefined();
      const verified = await rest(coordinator, 'GET', '/audit/verify', undefined, 'auditor');
      expect(verified.body).toMatchObject({ ok: true, firstBad: null });
    });
  });
});
