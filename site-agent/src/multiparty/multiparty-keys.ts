import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  canonicalJson,
  checkShareRequest,
  CkksWorkerPool,
  createLogger,
  decodePolys,
  decryptModelThreaded,
  encryptUpdateThreaded,
  federation,
  keyShareStatementSchema,
  modelKeyOf,
  modelSeedOf,
  multipartySetup,
  multipartyTagKey,
  openEnvelope,
  packResidues,
  parseStatementJson,
  residueBytes,
  sealEnvelope,
  SeededStream,
  sha256Hex,
  shareForSumThreaded,
  signContribution,
  signKeyShare,
  tagVector,
  verifyCollectiveKey,
  type MultipartySetup,
  type MultipartyThreading,
  type SignedContribution,
  type SignedKeyShare,
  updateC1Sha256,
} from '@federa/shared';
import type { CoordinatorRetry, FederationClient } from '../client/index.js';
import type { SitePolicy } from '../config/index.js';
import type { Outbound } from '../outbound/index.js';
import { PolicyRefusalError } from '../policy/index.js';
import { EpochSecrets, keyPairOf, type EpochSecret } from './epoch-secrets.js';
import { KeySwitchShares } from './key-switch-shares.js';
import { SumVerifier } from './sum-verification.js';

/** This site's certified identity: its kit's key signs its shares and contributions and opens envelopes sealed to it. */
export interface SiteIdentityKeys {
  siteId: string;
  caPem: string;
  certificatePem: string;
  privateKeyPem: string;
}

export interface MultipartyKeysOptions {
  /** Threads that encrypt updates, compute key-switching shares and decrypt models of large vectors; the cores by default. */
  threads?: number;
}

/** An epoch a member left or lost: the round runs again under a new one, so waiting for this one is pointless. */
export class EpochClosedError extends Error {
  override readonly name = 'EpochClosedError';
}

/** How often a member asks for the epoch's missing shares or envelopes (the call is small and cheap). */
const POLL_MS = 100;
/** Checked collective keys kept in memory (64 KiB each at the default parameters). */
const KEPT_KEYS = 16;

/**
 * This site's part in multiparty aggregation: it joins a key epoch (its secret share stays here, its signed public
 * share goes out), checks the published collective key against the signed shares of exactly the epoch's members,
 * exchanges its part of the model key in envelopes only members can open, encrypts its update under the collective
 * key with a signed contribution statement, computes one key-switching share per sum after checking what the sum is
 * made of, and decrypts published models with the model key of their epoch.
 */
export class MultipartyKeys {
  private readonly log = createLogger('multiparty');
  private readonly secrets: EpochSecrets;
  private readonly shares: KeySwitchShares;
  private readonly sums: SumVerifier;
  private readonly setup: MultipartySetup;
  /** The completion of each epoch this process is working on (shares, envelopes, model seed), by study and epoch. */
  private readonly completing = new Map<string, Promise<EpochSecret>>();
  /** Collective keys checked against their signed shares, by study and epoch, oldest first. */
  private readonly verifiedKeys = new Map<string, Uint32Array>();
  private readonly threading: MultipartyThreading;
  private pool: Promise<CkksWorkerPool> | undefined;

  constructor(
    stateDir: string,
    private readonly identity: SiteIdentityKeys,
    private readonly client: FederationClient,
    private readonly outbound: Outbound,
    private readonly policy: SitePolicy,
    private readonly retry: CoordinatorRetry,
    options: MultipartyKeysOptions = {},
  ) {
    this.secrets = new EpochSecrets(stateDir);
    this.shares = new KeySwitchShares(stateDir);
    this.sums = new SumVerifier(client, retry, policy);
    this.setup = multipartySetup(identity.caPem);
    const threads = options.threads ?? availableParallelism();
    // Started by the first vector large enough to need it.
    this.threading = { threads, pool: () => (this.pool ??= CkksWorkerPool.create({ threads })) };
  }

  /** Stops the worker threads, if any were started; a later vector starts them again. */
  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = undefined;
    if (pool) await (await pool.catch(() => undefined))?.close();
  }

  /**
   * Joins an epoch and, in the background, completes it (collective key checked, envelopes exchanged, model seed
   * derived) even if this site's training fails: the other members need its envelopes and, later, its share.
   */
  async join(studyId: string, ref: federation.KeyEpochRef, until: number, baseEpoch = 0): Promise<void> {
    this.checkRef(studyId, ref);
    const secret = await this.secrets.ensure(studyId, ref.number, ref.members);
    const { publicShare } = keyPairOf(this.setup, secret);
    const signed = signKeyShare(this.setup.ring, this.setup.params, {
      studyId,
      epoch: ref.number,
      siteId: this.identity.siteId,
      publicShare,
      privateKeyPem: this.identity.privateKeyPem,
      certificatePem: this.identity.certificatePem,
    });
    await this.outbound.submitKeyShare({
      studyId,
      epoch: ref.number,
      statementJson: canonicalJson(signed.statement),
      signature: signed.signature,
      certificatePem: signed.certificatePem,
      share: Buffer.from(signed.share),
    });
    this.complete(studyId, ref, until, baseEpoch).catch((error: unknown) => this.log.warn({ studyId, epoch: ref.number, reason: (error as Error).message }, 'key epoch not completed'));
  }

  /**
   * The epoch's completion, started once per process. `baseEpoch`: the epoch whose model key decrypts the model the
   * round starts from; this site hands that key's seed to members that were not in it.
   */
  complete(studyId: string, ref: federation.KeyEpochRef, until: number, baseEpoch = 0): Promise<EpochSecret> {
    const key = `${studyId}/${ref.number}`;
    let pending = this.completing.get(key);
    if (!pending) {
      pending = this.completeEpoch(studyId, ref, until, baseEpoch).finally(() => this.completing.delete(key));
      this.completing.set(key, pending);
    }
    return pending;
  }

  /** The base epoch's model seed and members, when this site holds it and the epoch is not this one. */
  private async handOver(studyId: string, epoch: number, baseEpoch: number): Promise<{ seed: Buffer; members: string[] } | null> {
    if (baseEpoch <= 0 || baseEpoch === epoch) return null;
    const base = await this.secrets.read(studyId, baseEpoch);
    const seed = await this.secrets.modelSeedOf(studyId, baseEpoch);
    return seed ? { seed: Buffer.from(seed, 'hex'), members: base?.members ?? [this.identity.siteId] } : null;
  }

  private async completeEpoch(studyId: string, ref: federation.KeyEpochRef, until: number, baseEpoch: number): Promise<EpochSecret> {
    let secret = await this.secrets.ensure(studyId, ref.number, ref.members);
    if (secret.modelSeed) return secret;
    const others = ref.members.filter((m) => m !== this.identity.siteId);
    let state = await this.waitFor(studyId, ref, until, 'the collective key', (s) => s.collectiveKey.byteLength > 0);
    const { shares, publicKey } = this.verifyKey(studyId, ref, secret, state);
    this.keepKey(studyId, ref.number, publicKey);
    if (!secret.envelopesSent) {
      const contribution = Buffer.from(secret.contribution, 'hex');
      const base = await this.handOver(studyId, ref.number, baseEpoch);
      const envelopes = others.map((recipient) => {
        const share = shares.find((s) => s.statement.siteId === recipient)!;
        // A member new since the base epoch also gets that epoch's model seed: the model the round starts from.
        const plaintext = base && !base.members.includes(recipient) ? Buffer.concat([contribution, base.seed]) : contribution;
        const sealed = sealEnvelope(share.certificatePem, plaintext, { studyId, epoch: ref.number, senderId: this.identity.siteId, recipientId: recipient });
        return { siteId: recipient, ephemeralPublicKey: sealed.ephemeralPublicKey, iv: sealed.iv, ciphertext: sealed.ciphertext };
      });
      if (envelopes.length > 0) await this.outbound.submitEnvelopes({ studyId, epoch: ref.number, envelopes });
      secret = { ...secret, envelopesSent: true };
      await this.secrets.save(secret);
    }
    state = await this.waitFor(studyId, ref, until, "every member's envelope", (s) => others.every((m) => s.envelopes.some((e) => e.siteId === m)));
    let handedOver: string | undefined;
    const contributions = ref.members.map((member) => {
      if (member === this.identity.siteId) return Buffer.from(secret.contribution, 'hex');
      const e = state.envelopes.find((x) => x.siteId === member)!;
      const opened = openEnvelope(
        { recipient: this.identity.siteId, ephemeralPublicKey: e.ephemeralPublicKey, iv: e.iv, ciphertext: e.ciphertext },
        this.identity.privateKeyPem,
        { studyId, epoch: ref.number, senderId: member, recipientId: this.identity.siteId },
      );
      if (opened.length === 64) handedOver ??= Buffer.from(opened.subarray(32)).toString('hex');
      else if (opened.length !== 32) throw new Error(`the envelope from ${member} for epoch ${ref.number} holds ${opened.length} bytes, not 32 or 64`);
      return opened.subarray(0, 32);
    });
    const inherited = handedOver && baseEpoch > 0 && !(await this.secrets.modelSeedOf(studyId, baseEpoch)) ? { [String(baseEpoch)]: handedOver } : undefined;
    secret = {
      ...secret,
      modelSeed: Buffer.from(modelSeedOf({ studyId, epoch: ref.number }, contributions)).toString('hex'),
      ...(inherited ? { inheritedModelSeeds: { ...secret.inheritedModelSeeds, ...inherited } } : {}),
    };
    await this.secrets.save(secret);
    this.log.info({ studyId, epoch: ref.number, members: ref.members }, 'key epoch complete: collective key checked, model key derived');
    return secret;
  }

  /** The published key must be the sum of signed shares of exactly the epoch's members, this site's own among them. */
  private verifyKey(studyId: string, ref: federation.KeyEpochRef, secret: EpochSecret, state: federation.KeyEpochState): { shares: SignedKeyShare[]; publicKey: Uint32Array } {
    const shares: SignedKeyShare[] = state.shares.map((s) => {
      const statement = parseStatementJson(s.statementJson)?.value ?? null;
      const parsed = keyShareStatementSchema.safeParse(statement);
      return { statement: parsed.success ? parsed.data : (statement as SignedKeyShare['statement']), signature: s.signature, certificatePem: s.certificatePem, share: new Uint8Array(s.share) };
    });
    const check = verifyCollectiveKey(this.setup.ring, this.setup.params, {
      studyId,
      epoch: ref.number,
      shares,
      publicKey: new Uint8Array(state.collectiveKey),
      caPem: this.identity.caPem,
      // A site kit carries no revocation list: the coordinator refuses revoked certificates at the TLS handshake.
      revoked: [],
      members: ref.members,
    });
    const own = new Uint8Array(residueBytes(this.setup.ring));
    packResidues(this.setup.ring, keyPairOf(this.setup, secret).publicShare, own, 0);
    const mine = shares.find((s) => s.statement.siteId === this.identity.siteId);
    const problem = !check.ok ? check.reason : !mine || sha256Hex(mine.share) !== sha256Hex(own) ? "this site's own share is not the one it sent" : null;
    if (problem || !check.ok) {
      throw new PolicyRefusalError({
        reason: federation.RefusalReason.REFUSAL_REASON_KEY_EPOCH_INVALID,
        message: `the collective key of epoch ${ref.number} of study ${studyId} does not check out: ${problem ?? 'invalid'}`,
      });
    }
    return { shares, publicKey: check.publicKey };
  }

  /**
   * The epoch's collective key, checked against the signed shares the first time this process encrypts under it and
   * then kept: a published key never changes, so later rounds of the epoch skip the download and the signatures.
   */
  private async collectiveKey(studyId: string, ref: federation.KeyEpochRef, secret: EpochSecret, until: number): Promise<Uint32Array> {
    const kept = this.verifiedKeys.get(`${studyId}/${ref.number}`);
    if (kept) return kept;
    const state = await this.retry.call(`key epoch ${ref.number}`, () => this.client.getKeyEpoch({ studyId, epoch: ref.number }), until);
    const { publicKey } = this.verifyKey(studyId, ref, secret, state);
    this.keepKey(studyId, ref.number, publicKey);
    return publicKey;
  }

  private keepKey(studyId: string, epoch: number, publicKey: Uint32Array): void {
    // A few epochs are enough: a study works under one at a time.
    if (this.verifiedKeys.size >= KEPT_KEYS) this.verifiedKeys.delete(this.verifiedKeys.keys().next().value as string);
    this.verifiedKeys.set(`${studyId}/${epoch}`, publicKey);
  }

  private async waitFor(
    studyId: string,
    ref: federation.KeyEpochRef,
    until: number,
    what: string,
    ready: (state: federation.KeyEpochState) => boolean,
  ): Promise<federation.KeyEpochState> {
    for (;;) {
      const state = await this.retry.call(`key epoch ${ref.number}`, () => this.client.getKeyEpoch({ studyId, epoch: ref.number }), until);
      if (ready(state)) return state;
      if (state.status === 'closed') throw new EpochClosedError(`key epoch ${ref.number} of study ${studyId} was closed before ${what} arrived`);
      if (Date.now() > until) throw new Error(`key epoch ${ref.number} of study ${studyId}: ${what} did not arrive before the round's deadline`);
      await sleep(POLL_MS);
    }
  }

  /** An update encrypted under the epoch's collective key, tagged with the epoch's tag key, with its signed statement. */
  async encryptUpdate(
    task: { studyId: string; round: number; keyEpoch: federation.KeyEpochRef },
    vector: Float32Array | Float64Array,
    until: number,
  ): Promise<{ payload: Uint8Array; vectorLength: number; contribution: federation.SignedContribution }> {
    const { ring, params, fingerprint } = this.setup;
    const secret = await this.complete(task.studyId, task.keyEpoch, until);
    const started = performance.now();
    const p = await this.collectiveKey(task.studyId, task.keyEpoch, secret, until);
    const { a } = keyPairOf(this.setup, secret);
    const tagged = tagVector(vector, ring.n, multipartyTagKey(seedOf(secret)), { studyId: task.studyId, round: task.round }, this.identity.siteId);
    const random = new SeededStream(randomBytes(32), 'federa/multiparty/encrypt');
    const payload = await encryptUpdateThreaded(ring, params, { p, a }, task.keyEpoch.number, tagged, random, this.threading);
    const signed = signContribution(
      {
        epoch: task.keyEpoch.number,
        studyId: task.studyId,
        round: task.round,
        siteId: this.identity.siteId,
        parameters: fingerprint,
        updateSha256: sha256Hex(payload),
        c1Sha256: updateC1Sha256(ring, params, payload),
      },
      this.identity.privateKeyPem,
      this.identity.certificatePem,
    );
    this.log.info({ studyId: task.studyId, round: task.round, epoch: task.keyEpoch.number, seconds: secondsSince(started) }, 'update encrypted under the collective key');
    return { payload, vectorLength: tagged.length, contribution: toWire(signed) };
  }

  /**
   * Answers a key-switch task: checks the sum is made of at least the policy's minParticipants updates, each signed
   * by a distinct certified site of this epoch for this study and round, that the sum named is the sum of those
   * updates' signed c1 parts (built from them; policy verifySum, or else downloaded and trusted), then sends this
   * site's share, computed once per sum (a repeated request gets the stored share).
   */
  async keySwitch(task: federation.KeySwitchTask): Promise<void> {
    const { ring, params, fingerprint } = this.setup;
    const secret = await this.secrets.read(task.studyId, task.epoch);
    if (!secret) throw new Error(`this site holds no secret share for key epoch ${task.epoch} of study ${task.studyId}; it cannot help switch round ${task.round}`);
    const refuse = (message: string, reason = federation.RefusalReason.REFUSAL_REASON_SHARE_REQUEST_INVALID): never => {
      throw new PolicyRefusalError({ reason, message });
    };
    if (task.parameters !== fingerprint) refuse(`round ${task.round} of study ${task.studyId} asks for a share under other CKKS parameters`);
    const members = [...task.cohort].sort();
    if (members.length !== secret.members.length || members.some((m, i) => m !== secret.members[i])) {
      refuse(`round ${task.round} of study ${task.studyId} names members ${members.join(', ')}, but key epoch ${task.epoch} is ${secret.members.join(', ')}`);
    }
    const complete = secret.modelSeed ? secret : await this.complete(task.studyId, { number: task.epoch, members: secret.members, parameters: fingerprint }, Date.now() + 60_000);
    // Checked by checkShareRequest, which refuses a statement that is not one.
    const contributions: SignedContribution[] = task.contributions.map((c) => ({
      statement: (parseStatementJson(c.statementJson)?.value ?? null) as SignedContribution['statement'],
      signature: c.signature,
      certificatePem: c.certificatePem,
    }));
    const check = checkShareRequest(
      { epoch: task.epoch, studyId: task.studyId, round: task.round, parameters: fingerprint, sumSha256: task.sumSha256, contributions },
      { minParticipants: this.policy.minParticipants, caPem: this.identity.caPem, revoked: [] },
    );
    if (!check.ok) {
      const tooFew = /policy needs at least/.test(check.reason);
      refuse(
        `this site will not help decrypt round ${task.round} of study ${task.studyId}: ${check.reason}`,
        tooFew ? federation.RefusalReason.REFUSAL_REASON_AGGREGATE_TOO_FEW_CONTRIBUTIONS : federation.RefusalReason.REFUSAL_REASON_SHARE_REQUEST_INVALID,
      );
    }
    const notMembers = check.ok ? check.sites.filter((s) => !members.includes(s)) : [];
    if (notMembers.length > 0) refuse(`the sum of round ${task.round} holds updates of ${notMembers.join(', ')}, who are not members of epoch ${task.epoch}`);
    // The first member (sorted) carries the model key in its share; the others only cancel their secret shares.
    const designated = members[0] === this.identity.siteId;
    const { secret: s } = keyPairOf(this.setup, complete);
    // Where a round's switch spends its time, for the log: the sum (built from the parts, or downloaded), the share,
    // sending it.
    const seconds = { sum: 0, share: 0, send: 0 };
    let mark = performance.now();
    const lap = (step: keyof typeof seconds): void => {
      const now = performance.now();
      seconds[step] = Number(((now - mark) / 1000).toFixed(3));
      mark = now;
    };
    // A stored share was for a sum checked when it was computed: a repeated request downloads nothing again.
    const { share, resent } = await this.shares.shareFor({ epoch: task.epoch, sumSha256: task.sumSha256 }, async () => {
      const sum = await this.sums.sumFor(task, { ring, params, contributions: check.ok ? check.statements : [] });
      // The sum must be labelled with this epoch before a secret of the epoch touches it.
      try {
        decodePolys(ring, params, 'sum-c1', sum, { epoch: task.epoch });
      } catch (error) {
        refuse(`the sum of round ${task.round} of study ${task.studyId} is not a sum of key epoch ${task.epoch}: ${(error as Error).message}`);
      }
      lap('sum');
      return shareForSumThreaded(ring, params, s, designated ? modelKeyOf(ring, seedOf(complete)) : null, sum, new SeededStream(randomBytes(32), 'federa/multiparty/smudging'), this.threading);
    });
    lap('share');
    await this.outbound.submitKeySwitchShare({ studyId: task.studyId, round: task.round, epoch: task.epoch, sumSha256: task.sumSha256, share: Buffer.from(share) }, resent);
    lap('send');
    this.log.info({ studyId: task.studyId, round: task.round, epoch: task.epoch, contributors: check.ok ? check.sites : [], resent, seconds }, 'key-switching share sent');
  }

  /** A published multiparty model, decrypted with its epoch's model key: the tagged sum, and how to check its tags. */
  async decryptModel(studyId: string, ref: federation.ModelRef, bytes: Uint8Array): Promise<{ tagged: Float64Array; tagKey: Uint8Array; valuesPerCiphertext: number }> {
    let hex = await this.secrets.modelSeedOf(studyId, ref.keyEpoch);
    // A site new to the study gets the base model's key in the envelopes of the epoch it is joining.
    if (!hex) {
      await Promise.allSettled([...this.completing.entries()].filter(([key]) => key.startsWith(`${studyId}/`)).map(([, pending]) => pending));
      hex = await this.secrets.modelSeedOf(studyId, ref.keyEpoch);
    }
    if (!hex) {
      throw new Error(`round ${ref.round} of study ${studyId} was published under key epoch ${ref.keyEpoch}, whose model key this site does not hold (it was not a member, and no member handed it over)`);
    }
    const seed = Buffer.from(hex, 'hex');
    const { ring, params } = this.setup;
    const started = performance.now();
    const tagged = await decryptModelThreaded(ring, params, bytes, modelKeyOf(ring, seed), { epoch: ref.keyEpoch }, this.threading);
    this.log.info({ studyId, round: ref.round, epoch: ref.keyEpoch, seconds: secondsSince(started) }, 'global model decrypted with the model key');
    return { tagged, tagKey: multipartyTagKey(seed), valuesPerCiphertext: ring.n };
  }

  private checkRef(studyId: string, ref: federation.KeyEpochRef): void {
    const problem =
      ref.parameters !== this.setup.fingerprint
        ? 'it is for other CKKS parameters than this site derives'
        : !ref.members.includes(this.identity.siteId)
          ? 'this site is not one of its members'
          : null;
    if (problem) {
      throw new PolicyRefusalError({ reason: federation.RefusalReason.REFUSAL_REASON_KEY_EPOCH_INVALID, message: `key epoch ${ref.number} of study ${studyId}: ${problem}` });
    }
  }
}

const secondsSince = (start: number): number => Number(((performance.now() - start) / 1000).toFixed(3));

function seedOf(secret: EpochSecret): Uint8Array {
  if (!secret.modelSeed) throw new Error(`key epoch ${secret.epoch} of study ${secret.studyId} is not complete`);
  return Buffer.from(secret.modelSeed, 'hex');
}

function toWire(signed: SignedContribution): federation.SignedContribution {
  return { statementJson: canonicalJson(signed.statement), signature: signed.signature, certificatePem: signed.certificatePem };
}
