import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { assertStudyId, commonPolynomial, keyShare, replaceFile, SECRET_FILE_MODE, SeededStream, type MultipartySetup } from '@federa/shared';

const hex32 = z.string().regex(/^[0-9a-f]{64}$/);

const epochSecretSchema = z
  .object({
    studyId: z.string(),
    epoch: z.int().min(1),
    members: z.array(z.string()).min(1),
    /** Expands to this site's secret share s_i and its key-share noise: the one secret of the epoch that is this site's alone. */
    secretSeed: hex32,
    /** This site's 32 bytes of the epoch's model key, sealed to each other member. */
    contribution: hex32,
    envelopesSent: z.boolean(),
    /** Once every member's contribution is in: the seed of the model key (and of the contribution tags). */
    modelSeed: hex32.optional(),
    /**
     * Model key seeds of earlier epochs this site was not a member of, handed over in this epoch's envelopes by
     * members that were, so a site that joins a study can decrypt the model its first round starts from.
     */
    inheritedModelSeeds: z.record(z.string().regex(/^[1-9][0-9]*$/), hex32).optional(),
  })
  .strict();

export type EpochSecret = z.output<typeof epochSecretSchema>;

/**
 * This site's secrets for each key epoch, in its state folder (owner-only), never in a kit and never sent: the seed of
 * its secret share and its part of the model key, and the model key's seed once the epoch is complete. Created when
 * the site first takes part in an epoch; a restart finds the same secrets, so a share it sent stays valid.
 */
export class EpochSecrets {
  private readonly dir: string;

  constructor(stateDir: string) {
    this.dir = join(stateDir, 'multiparty', 'epochs');
  }

  private path(studyId: string, epoch: number): string {
    return join(this.dir, assertStudyId(studyId, 'key epoch'), `${epoch}.json`);
  }

  async read(studyId: string, epoch: number): Promise<EpochSecret | undefined> {
    const path = this.path(studyId, epoch);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    const parsed = epochSecretSchema.safeParse(JSON.parse(text));
    if (!parsed.success) throw new Error(`key epoch secrets ${path} are corrupt (${parsed.error.issues[0]?.message ?? 'invalid'}); this site cannot take part in epoch ${epoch} again`);
    return parsed.data;
  }

  /** The epoch's secrets, made now if this site has none for it yet. */
  async ensure(studyId: string, epoch: number, members: readonly string[]): Promise<EpochSecret> {
    const existing = await this.read(studyId, epoch);
    if (existing) return existing;
    const fresh: EpochSecret = {
      studyId,
      epoch,
      members: [...members].sort(),
      secretSeed: randomBytes(32).toString('hex'),
      contribution: randomBytes(32).toString('hex'),
      envelopesSent: false,
    };
    await this.save(fresh);
    return fresh;
  }

  /** The model key seed of an epoch: this site's own, or one a member of that epoch handed over in a later epoch. */
  async modelSeedOf(studyId: string, epoch: number): Promise<string | undefined> {
    const own = await this.read(studyId, epoch);
    if (own?.modelSeed) return own.modelSeed;
    let names: string[];
    try {
      names = await readdir(join(this.dir, assertStudyId(studyId, 'key epoch')));
    } catch {
      return undefined;
    }
    for (const name of names) {
      const match = /^([1-9][0-9]*)\.json$/.exec(name);
      if (!match) continue;
      const inherited = (await this.read(studyId, Number(match[1])))?.inheritedModelSeeds?.[String(epoch)];
      if (inherited) return inherited;
    }
    return undefined;
  }

  async save(secret: EpochSecret): Promise<void> {
    await mkdir(join(this.dir, assertStudyId(secret.studyId, 'key epoch')), { recursive: true, mode: 0o700 });
    await replaceFile(this.path(secret.studyId, secret.epoch), Buffer.from(JSON.stringify(secret, null, 2)), SECRET_FILE_MODE);
  }
}

/** s_i and p_i = -a s_i + e_i of an epoch, expanded from the stored seed over the epoch's common polynomial. */
export function keyPairOf(setup: MultipartySetup, secret: EpochSecret): { a: Uint32Array; secret: Uint32Array; publicShare: Uint32Array } {
  const a = commonPolynomial(setup.ring, setup.commonSeed, { studyId: secret.studyId, epoch: secret.epoch });
  const pair = keyShare(setup.ring, a, new SeededStream(Buffer.from(secret.secretSeed, 'hex'), 'federa/multiparty/secret-share'));
  return { a, ...pair };
}
