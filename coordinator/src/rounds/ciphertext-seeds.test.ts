import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '@federa/shared';
import { openDatabase, type Database } from '../persistence/index.js';
import { isolatedSchema, postgresReachable } from '../../../test/postgres.js';
import { FederationError } from '../federation/federation-error.js';
import { recordSeeds, refuseReusedSeeds, seedConflict, seedDigests } from './ciphertext-seeds.js';

const postgres = await postgresReachable();
const seeds = (count: number): Uint8Array[] => Array.from({ length: count }, () => randomBytes(64));

// The digests are cut out of one bytea parameter in SQL: run on both databases a coordinator may use.
describe.each([{ backend: 'pglite' }, ...(postgres ? [{ backend: 'postgresql' }] : [])])('ciphertext seeds ($backend)', ({ backend }) => {
  let dir: string;
  let db: Database;
  let dropSchema: (() => Promise<void>) | undefined;
  const key = randomBytes(16);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'federa-seeds-'));
    let databaseUrl: string | undefined;
    if (backend === 'postgresql') {
      const schema = await isolatedSchema('ciphertext_seeds');
      databaseUrl = schema.url;
      dropSchema = schema.drop;
    }
    db = await openDatabase({ dataDir: dir, databaseUrl }, { logger: createLogger('test', { level: 'silent' }) });
    const p = db.prisma;
    await p.site.create({ data: { id: 'site-a' } });
    await p.study.create({ data: { id: 'study-1', name: 'one', spec: {}, specHash: 'h', totalRounds: 3 } });
    await p.round.create({ data: { id: 'r1', studyId: 'study-1', number: 1 } });
    await p.updateReceipt.create({ data: { id: 'receipt-1', roundId: 'r1', siteId: 'site-a', sha256: 'x', sizeBytes: 1, encoding: 'ckks' } });
  });
  afterAll(async () => {
    await db?.close();
    await dropSchema?.();
    await rm(dir, { recursive: true, force: true });
  });

  it('records a 10M-parameter update (4,900 seeds) in one go and refuses any of them again, naming the first', async () => {
    const first = seeds(4_900);
    const recorded = seedDigests(key, first);
    await refuseReusedSeeds(db.prisma, recorded);
    await db.prisma.$transaction((tx) => recordSeeds(tx, recorded, 'receipt-1'));
    expect(await db.prisma.ciphertextSeed.count({ where: { keyId: key.toString('hex') } })).toBe(4_900);

    const later = seeds(10);
    later[7] = first[4_321]!;
    later[9] = first[17]!;
    const refusal = await refuseReusedSeeds(db.prisma, seedDigests(key, later)).catch((e: unknown) => e);
    expect(refusal).toBeInstanceOf(FederationError);
    expect((refusal as Error).message).toMatch(
      /^encrypted update refused \(SEED_REUSED\): the seed of ciphertext 7 was already used by an update accepted for round 1 of study study-1 \(and 1 more/,
    );
    // Under another key the same seed is another ciphertext's business.
    await refuseReusedSeeds(db.prisma, seedDigests(randomBytes(16), later));
  });

  it('maps a unique violation of the insert to the refusal, and a failed transaction leaves no seed behind', async () => {
    const mine = seeds(3);
    await db.prisma.$transaction((tx) => recordSeeds(tx, seedDigests(key, [mine[0]!]), 'receipt-1'));
    const before = await db.prisma.ciphertextSeed.count();
    const error = await db.prisma.$transaction((tx) => recordSeeds(tx, seedDigests(key, mine), 'receipt-1')).catch((e: unknown) => e);
    expect(seedConflict(error)?.message).toMatch(/SEED_REUSED\): one of its seeds was used by an update accepted at the same time/);
    expect(await db.prisma.ciphertextSeed.count()).toBe(before);
    expect(seedConflict(new Error('something else'))).toBeNull();
  });
});
