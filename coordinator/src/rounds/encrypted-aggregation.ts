import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { CkksContext, CkksError } from '@federa/shared';
import { CKKS_PUBLIC_PARAMS } from '../app/tokens.js';
import { FederationError, GrpcStatus } from '../federation/federation-error.js';

/**
 * Sums CKKS-encrypted updates with the consortium's public parameters only: nothing here can decrypt. The
 * parameters come from the coordinator kit; without a kit (insecure development mode) encrypted studies are
 * refused rather than silently run in the clear.
 */
@Injectable()
export class EncryptedAggregation implements OnApplicationShutdown {
  private context: Promise<CkksContext> | undefined;

  constructor(@Inject(CKKS_PUBLIC_PARAMS) private readonly publicParams: Uint8Array | null) {}

  get available(): boolean {
    return this.publicParams !== null;
  }

  /**
   * Checks an uploaded payload completely (framing, checksum, parameters, key, every coefficient's range, one site's
   * update of the expected length) once, without summing it: the round's sum at its close adds it.
   */
  async validateUpdate(payload: Uint8Array, vectorLength: number): Promise<void> {
    const context = await this.contextOrThrow();
    try {
      const info = context.checkUpdate(payload, this.key());
      if (info.vectorLength !== vectorLength) {
        throw new CkksError('LENGTH_MISMATCH', `CKKS payload holds ${info.vectorLength} values, the study's model needs ${vectorLength}`);
      }
    } catch (error) {
      if (error instanceof CkksError) {
        throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `encrypted update refused (${error.code}): ${error.message}`);
      }
      throw error;
    }
  }

  /** The size of one site's update of `vectorLength` values: checked against an upload's header before its data. */
  async updateBytes(vectorLength: number): Promise<number> {
    return (await this.contextOrThrow()).updatePayloadBytes(vectorLength);
  }

  /** Values each ciphertext carries (N): with the contribution tags, what an update's length is made of. */
  async valuesPerCiphertext(): Promise<number> {
    return (await this.contextOrThrow()).valuesPerCiphertext;
  }

  /** Adds the payloads one at a time (memory is one vector, whatever their number) and returns the encrypted sum. */
  async sum(payloads: AsyncIterable<Uint8Array>): Promise<{ bytes: Uint8Array; sites: number }> {
    const context = await this.contextOrThrow();
    const accumulator = context.createAccumulator(this.key());
    for await (const payload of payloads) accumulator.add(payload);
    return { bytes: accumulator.result(), sites: accumulator.sites };
  }

  async onApplicationShutdown(): Promise<void> {
    const context = this.context;
    this.context = undefined;
    if (context) (await context).dispose();
  }

  private key(): Uint8Array {
    if (!this.publicParams) throw new FederationError(GrpcStatus.FAILED_PRECONDITION, NO_KIT);
    return this.publicParams;
  }

  private contextOrThrow(): Promise<CkksContext> {
    this.context ??= CkksContext.fromKey(this.key());
    return this.context;
  }
}

export const NO_KIT =
  "encrypted aggregation needs the CKKS public parameters from the coordinator kit; start the coordinator with --kit (or create the study with aggregation 'plaintext' for development)";
