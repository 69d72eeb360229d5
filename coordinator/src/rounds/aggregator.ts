import { Inject, Injectable } from '@nestjs/common';
import { applyAggregate, bytesToFloat32, float32ToBytes, UpdateAccumulator, type MultipartyThreading } from '@federa/shared';
import { BLOB_STORE } from '../app/tokens.js';
import type { BlobStore } from '../blobs/index.js';
import { EncryptedAggregation } from './encrypted-aggregation.js';

/** What a closed round publishes: the model artifact, the sum behind it, and how many updates went in. */
export interface PublishedRound {
  kind: 'weights' | 'encrypted_aggregate' | 'multiparty_aggregate';
  model: { sha256: string; size: number };
  sum: { sha256: string; size: number };
  sites: number;
  /** multiparty_aggregate: the key epoch whose model key decrypts it. */
  keyEpoch?: number;
}

/** FedAvg over a round's stored updates, one at a time so memory does not grow with the number of sites. */
@Injectable()
export class Aggregator {
  constructor(
    @Inject(BLOB_STORE) private readonly blobs: BlobStore,
    @Inject(EncryptedAggregation) private readonly encrypted: EncryptedAggregation,
  ) {}

  /** FedAvg in the clear: the coordinator computes and publishes the next global weights itself. */
  async averagePlain(baseSha256: string, receipts: Array<{ sha256: string }>, cohortSize: number): Promise<PublishedRound> {
    const base = bytesToFloat32(await this.blobs.get(baseSha256), `model ${baseSha256}`);
    const accumulator = new UpdateAccumulator(base.length + 1 + cohortSize, base.length);
    for (const receipt of receipts) {
      accumulator.add(bytesToFloat32(await this.blobs.get(receipt.sha256), `update ${receipt.sha256}`));
    }
    const sum = await this.blobs.put(new Uint8Array(accumulator.sum.buffer));
    const model = await this.blobs.put(float32ToBytes(applyAggregate(base, accumulator.sum, cohortSize)));
    return { kind: 'weights', model, sum, sites: accumulator.count };
  }

  /** Where multiparty sums and switches run: the encrypted aggregation's worker threads. */
  multipartyThreading(): MultipartyThreading {
    return this.encrypted.multipartyThreading();
  }

  /** A round that ended holds no running sum any more. */
  forgetRound(roundId: string): void {
    this.encrypted.forgetRound(roundId);
  }

  /**
   * The encrypted sum is what gets published: only sites can turn it into the next global weights. Usually the
   * round's running sum (each update was added as it was accepted); summed again from the stored updates otherwise.
   */
  async sumEncrypted(roundId: string, receipts: Array<{ sha256: string }>): Promise<PublishedRound> {
    const { bytes, sites } = await this.encrypted.sumRound(
      roundId,
      receipts.map((r) => r.sha256),
      {
        size: async (sha256) => (await this.blobs.size(sha256)) ?? 0,
        into: (sha256, target) => this.blobs.readInto(sha256, target),
      },
    );
    const blob = await this.blobs.put(bytes);
    return { kind: 'encrypted_aggregate', model: blob, sum: blob, sites };
  }
}
