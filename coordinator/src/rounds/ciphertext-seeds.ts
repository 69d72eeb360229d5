import { createHash } from 'node:crypto';
import { FederationError, GrpcStatus } from '../federation/federation-error.js';
import { Prisma, type PrismaClient } from '../persistence/index.js';

/**
 * Every seed of every accepted encrypted update is remembered, per CKKS key set, so that no seed is accepted twice:
 * two ciphertexts with one seed share c1 = a(seed), and c0 - c0' is then the difference of their plaintexts plus
 * small noise, readable without the key. That holds across ciphertexts, sites, rounds and studies, and across restarts.
 */

/** Digest bytes kept per seed: 128 bits, so that distinct seeds never collide in practice, at a quarter of a seed. */
const DIGEST_BYTES = 16;
/**
 * Digests per statement: each batch travels as one bytea parameter that PostgreSQL cuts into 16-byte digests (one
 * statement, not one per seed, and no per-row bind parameters). A 10M-parameter update (~4,900 ciphertexts) is one.
 */
const BATCH = 50_000;

/** An update's seeds as the coordinator keeps them, in ciphertext order. */
export interface SeedDigests {
  /** Hex id of the key set the update was encrypted under. */
  keyId: string;
  digests: Uint8Array<ArrayBuffer>[];
}

export function seedDigests(keyId: Uint8Array, seeds: readonly Uint8Array[]): SeedDigests {
  return {
    keyId: Buffer.from(keyId).toString('hex'),
    digests: seeds.map((seed) => new Uint8Array(createHash('sha256').update(seed).digest().subarray(0, DIGEST_BYTES))),
  };
}

/** The digests in batches, each as one buffer of consecutive digests, with the ciphertext index it starts at. */
function batches(digests: readonly Uint8Array[]): Array<{ first: number; count: number; packed: Uint8Array<ArrayBuffer> }> {
  const out = [];
  for (let first = 0; first < digests.length; first += BATCH) {
    const batch = digests.slice(first, first + BATCH);
    out.push({ first, count: batch.length, packed: new Uint8Array(Buffer.concat(batch)) });
  }
  return out;
}

const seedReused = (detail: string): FederationError =>
  new FederationError(
    GrpcStatus.INVALID_ARGUMENT,
    `encrypted update refused (SEED_REUSED): ${detail}; a seed must never encrypt twice under one key (the two ciphertexts would reveal ` +
      'the difference of their plaintexts), so the update was not added: encrypt it again, with fresh seeds',
  );

/**
 * Refuses an update one of whose seeds an accepted update already used under the same key, naming the first such
 * ciphertext and where the seed was used. Reads only: the seeds are recorded with the update's receipt (recordSeeds).
 */
export async function refuseReusedSeeds(prisma: PrismaClient, seeds: SeedDigests): Promise<void> {
  const used: Array<{ index: number; receiptId: string }> = [];
  for (const { first, count, packed } of batches(seeds.digests)) {
    const rows = await prisma.$queryRaw<Array<{ i: number; receipt_id: string }>>`
      SELECT d.i, s.receipt_id FROM generate_series(0, ${count}::int - 1) AS d(i)
        JOIN ciphertext_seed s ON s.key_id = ${seeds.keyId} AND s.digest = substring(${packed}::bytea FROM d.i * ${DIGEST_BYTES}::int + 1 FOR ${DIGEST_BYTES}::int)`;
    for (const row of rows) used.push({ index: first + Number(row.i), receiptId: row.receipt_id });
  }
  if (used.length === 0) return;
  const { index, receiptId } = used.reduce((a, b) => (b.index < a.index ? b : a));
  const receipt = await prisma.updateReceipt.findUnique({ where: { id: receiptId }, select: { round: { select: { number: true, studyId: true } } } });
  const where = receipt ? `an update accepted for round ${receipt.round.number} of study ${receipt.round.studyId}` : 'an update accepted earlier';
  const more = used.length > 1 ? ` (and ${used.length - 1} more of its ciphertexts' seeds were used before)` : '';
  throw seedReused(`the seed of ciphertext ${index} was already used by ${where}${more}`);
}

/** Records an accepted update's seeds, in the transaction that records its receipt: a refused upload leaves none. */
export async function recordSeeds(tx: Prisma.TransactionClient, seeds: SeedDigests, receiptId: string): Promise<void> {
  for (const { count, packed } of batches(seeds.digests)) {
    await tx.$executeRaw`
      INSERT INTO ciphertext_seed (key_id, digest, receipt_id)
      SELECT ${seeds.keyId}, substring(${packed}::bytea FROM i * ${DIGEST_BYTES}::int + 1 FOR ${DIGEST_BYTES}::int), ${receiptId}
        FROM generate_series(0, ${count}::int - 1) AS i`;
  }
}

/**
 * The refusal for an update whose seeds' insert hit the unique key: an update using one of them was accepted between
 * refuseReusedSeeds and the insert (another study's upload, under another study's lock). Null for any other error.
 */
export function seedConflict(error: unknown): FederationError | null {
  if (!(error instanceof Prisma.PrismaClientKnownRequestError)) return null;
  // A raw statement's unique violation is P2010 with the driver's SQLSTATE (23505) and constraint in meta.
  const about = `${error.message} ${JSON.stringify(error.meta ?? {})}`;
  const unique = error.code === 'P2002' || (error.code === 'P2010' && about.includes('23505'));
  if (!unique || !about.includes('ciphertext_seed')) return null;
  return seedReused('one of its seeds was used by an update accepted at the same time');
}
