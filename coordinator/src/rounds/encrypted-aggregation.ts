import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { ckksKeyIdOf, CkksContext, CkksError, CkksWorkerPool, createLogger, type MultipartyThreading, type ParallelAccumulator } from '@federa/shared';
import { CKKS_PUBLIC_PARAMS, COORDINATOR_CONFIG } from '../app/tokens.js';
import type { CoordinatorConfig } from '../config/index.js';
import { FederationError, GrpcStatus } from '../federation/federation-error.js';
import { seedDigests, type SeedDigests } from './ciphertext-seeds.js';

/** A round's sum so far, and which updates (by SHA-256) are in it. */
interface RunningSum {
  sum: ParallelAccumulator;
  added: Set<string>;
  /** Shared memory each update of the round is read into in turn (they are all one size). */
  buffer?: Uint8Array;
}

/**
 * Sums CKKS-encrypted updates with the consortium's public parameters only: nothing here can decrypt. The
 * parameters come from the coordinator kit; without a kit (insecure development mode) encrypted studies are
 * refused rather than silently run in the clear.
 *
 * Each update is checked completely and added to its round's running sum as it is accepted, once, on worker
 * threads (the event loop keeps serving the other sites meanwhile), so closing a round only serialises the sum.
 * The running sum lives in memory: after a restart, or if it ever disagrees with the round's receipts, the close
 * sums the stored updates again.
 */
@Injectable()
export class EncryptedAggregation implements OnApplicationShutdown {
  private readonly log = createLogger('aggregation');
  private context: Promise<CkksContext> | undefined;
  private pool: Promise<CkksWorkerPool> | undefined;
  private readonly running = new Map<string, RunningSum>();

  constructor(
    @Inject(CKKS_PUBLIC_PARAMS) private readonly publicParams: Uint8Array | null,
    @Inject(COORDINATOR_CONFIG) private readonly config: Pick<CoordinatorConfig, 'aggregationThreads'>,
  ) {}

  get available(): boolean {
    return this.publicParams !== null;
  }

  /**
   * Checks an accepted update completely (framing, checksum, parameters, key, every coefficient's range, one site's
   * update of the expected length, seeds all distinct) and adds it to its round's running sum. `vet` sees the update's
   * seed digests first and may refuse it (a seed used before). Refused with INVALID_ARGUMENT, adding nothing, when
   * anything is wrong with it; returns the seed digests, for the caller to record. Called under the study's lock,
   * after the round's own checks.
   */
  async addToRound(
    roundId: string,
    sha256: string,
    bytes: number,
    read: (target: Uint8Array) => Promise<void>,
    vectorLength: number,
    vet: (seeds: SeedDigests) => Promise<void> = () => Promise.resolve(),
  ): Promise<SeedDigests> {
    let running = this.running.get(roundId);
    if (!running) {
      running = { sum: await (await this.poolOrThrow()).createAccumulator(this.key()), added: new Set() };
      this.running.set(roundId, running);
    }
    // One buffer per round, reused: memory holds the sum and one update, however many sites send theirs.
    if (running.buffer?.byteLength !== bytes) running.buffer = new Uint8Array(new SharedArrayBuffer(bytes));
    const payload = running.buffer;
    await read(payload);
    const key = this.key();
    let seeds: SeedDigests;
    try {
      // Digested now: the buffer is the next update's once this one is added.
      seeds = seedDigests(ckksKeyIdOf(key), (await this.contextOrThrow()).updateSeeds(payload, ckksKeyIdOf(key)));
    } catch (error) {
      throw refusal(error) ?? error;
    }
    await vet(seeds);
    try {
      await running.sum.add(payload, { vectorLength });
    } catch (error) {
      // What is wrong with the update itself was found before anything was added: refused, the sum unchanged.
      const refused = refusal(error);
      if (refused) throw refused;
      // Part of it may be in the sum: drop the sum (the close sums the stored updates) and fail this upload.
      this.running.delete(roundId);
      throw error;
    }
    running.added.add(sha256);
    return seeds;
  }

  /** The round's sum no longer matches its receipts (an accepted update was not recorded): the close starts over. */
  forgetRound(roundId: string): void {
    this.running.delete(roundId);
  }

  /**
   * The encrypted sum of exactly these updates: the running sum when it holds exactly them, otherwise summed again
   * from `read` (one update at a time, into one reused piece of shared memory for the threads).
   */
  async sumRound(
    roundId: string,
    updates: readonly string[],
    read: { size(sha256: string): Promise<number>; into(sha256: string, target: Uint8Array): Promise<void> },
  ): Promise<{ bytes: Uint8Array; sites: number }> {
    const running = this.running.get(roundId);
    this.running.delete(roundId);
    if (running && running.added.size === updates.length && updates.every((sha) => running.added.has(sha))) {
      return { bytes: running.sum.result(), sites: running.sum.sites };
    }
    if (running) this.log.warn({ roundId, inSum: running.added.size, receipts: updates.length }, 'the running sum does not match the receipts; summing the stored updates again');
    const sum = await (await this.poolOrThrow()).createAccumulator(this.key());
    let buffer: Uint8Array | undefined;
    for (const sha256 of updates) {
      const size = await read.size(sha256);
      if (buffer?.byteLength !== size) buffer = new Uint8Array(new SharedArrayBuffer(size));
      await read.into(sha256, buffer);
      await sum.add(buffer);
    }
    return { bytes: sum.result(), sites: sum.sites };
  }

  /** The size of one site's update of `vectorLength` values: checked against an upload's header before its data. */
  async updateBytes(vectorLength: number): Promise<number> {
    return (await this.contextOrThrow()).updatePayloadBytes(vectorLength);
  }

  /**
   * Where multiparty updates are checked, summed and switched: this pool's threads (multiparty needs no kit), started
   * by the first vector large enough to need them.
   */
  multipartyThreading(): MultipartyThreading {
    return { threads: this.config.aggregationThreads, pool: () => this.workers() };
  }

  /** Values each ciphertext carries (N): with the contribution tags, what an update's length is made of. */
  async valuesPerCiphertext(): Promise<number> {
    return (await this.contextOrThrow()).valuesPerCiphertext;
  }

  async onApplicationShutdown(): Promise<void> {
    this.running.clear();
    const [context, pool] = [this.context, this.pool];
    this.context = undefined;
    this.pool = undefined;
    if (pool) await (await pool.catch(() => undefined))?.close();
    if (context) (await context.catch(() => undefined))?.dispose();
  }

  private key(): Uint8Array {
    if (!this.publicParams) throw new FederationError(GrpcStatus.FAILED_PRECONDITION, NO_KIT);
    return this.publicParams;
  }

  private contextOrThrow(): Promise<CkksContext> {
    this.context ??= CkksContext.fromKey(this.key());
    return this.context;
  }

  private poolOrThrow(): Promise<CkksWorkerPool> {
    this.key();
    return this.workers();
  }

  private workers(): Promise<CkksWorkerPool> {
    this.pool ??= CkksWorkerPool.create({ threads: this.config.aggregationThreads });
    return this.pool;
  }
}

/** What is wrong with an update itself, as the site's refusal; null for a failure that is not the update's. */
function refusal(error: unknown): FederationError | null {
  if (!(error instanceof CkksError) || error.code === 'ACCUMULATOR_FAILED' || error.code === 'SEAL_ERROR') return null;
  return new FederationError(GrpcStatus.INVALID_ARGUMENT, `encrypted update refused (${error.code}): ${error.message}`);
}

export const NO_KIT =
  "encrypted aggregation needs the CKKS public parameters of the consortium's shared key from the coordinator kit (aggregation 'ckks'): provision with `federa provision --shared-key` and start the coordinator with --kit, or use aggregation 'multiparty' (the default), which needs no shared key";
