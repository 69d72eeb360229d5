import { createHash } from 'node:crypto';
import { mkdir, open, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { replaceFile, SECRET_FILE_MODE, studyDefinitionSchema, type StudyDefinition } from '@federa/shared';

/**
 * The hospital's decisions about studies, kept at the site: every study definition offered to it (one file per
 * hash under `policy/offers/`) and an append-only log of approvals and rejections (`policy/decisions.jsonl`, the
 * latest line per hash wins). The agent only reads decisions; `federa-site approve` and `reject` append them, so
 * the two processes never rewrite each other's files.
 */
export type Decision = 'approved' | 'rejected';

const decisionSchema = z
  .object({
    hash: z.string().regex(/^[0-9a-f]{64}$/),
    decision: z.enum(['approved', 'rejected']),
    at: z.iso.datetime(),
    by: z.string().min(1).max(200),
    note: z.string().max(1_000).optional(),
  })
  .strict();

export type DecisionRecord = z.output<typeof decisionSchema>;

const offerSchema = z
  .object({
    hash: z.string().regex(/^[0-9a-f]{64}$/),
    studyId: z.string().min(1).max(200),
    name: z.string().max(200),
    owner: z.string().max(200),
    definitionJson: z.string().min(2),
    firstSeenAt: z.iso.datetime(),
  })
  .strict();

export type StudyOffer = z.output<typeof offerSchema>;

export interface KnownStudy extends StudyOffer {
  definition: StudyDefinition;
  decision: DecisionRecord | null;
}

export class DecisionError extends Error {
  override readonly name = 'DecisionError';
}

export class StudyDecisions {
  private readonly dir: string;

  constructor(stateDir: string) {
    this.dir = join(stateDir, 'policy');
  }

  get decisionsPath(): string {
    return join(this.dir, 'decisions.jsonl');
  }

  /** Remembers a definition offered to this site (from a task or the coordinator's list); its hash is checked. */
  async remember(offer: Omit<StudyOffer, 'firstSeenAt'>): Promise<StudyOffer> {
    const actual = createHash('sha256').update(offer.definitionJson, 'utf8').digest('hex');
    if (actual !== offer.hash) throw new DecisionError(`study ${offer.studyId}: its definition hashes to ${actual}, not ${offer.hash}`);
    const existing = await this.offer(offer.hash);
    if (existing) return existing;
    const record: StudyOffer = { ...offer, firstSeenAt: new Date().toISOString() };
    await mkdir(join(this.dir, 'offers'), { recursive: true, mode: 0o700 });
    await replaceFile(join(this.dir, 'offers', `${offer.hash}.json`), Buffer.from(JSON.stringify(record, null, 2)), SECRET_FILE_MODE);
    return record;
  }

  async offer(hash: string): Promise<StudyOffer | undefined> {
    if (!/^[0-9a-f]{64}$/.test(hash)) return undefined;
    let text: string;
    try {
      text = await readFile(join(this.dir, 'offers', `${hash}.json`), 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    const parsed = offerSchema.safeParse(JSON.parse(text));
    if (!parsed.success || parsed.data.hash !== hash) throw new DecisionError(`${join(this.dir, 'offers', `${hash}.json`)} is damaged; delete it and list the studies again`);
    return parsed.data;
  }

  /** The latest decision per hash. A damaged line is an error naming it: decisions are never guessed. */
  async decisions(): Promise<Map<string, DecisionRecord>> {
    let text: string;
    try {
      text = await readFile(this.decisionsPath, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
      throw error;
    }
    const latest = new Map<string, DecisionRecord>();
    text.split('\n').forEach((line, index) => {
      if (line.trim() === '') return;
      let parsed: ReturnType<typeof decisionSchema.safeParse>;
      try {
        parsed = decisionSchema.safeParse(JSON.parse(line));
      } catch {
        throw new DecisionError(`${this.decisionsPath} line ${index + 1} is not JSON; fix or remove it`);
      }
      if (!parsed.success) throw new DecisionError(`${this.decisionsPath} line ${index + 1} is not a decision; fix or remove it`);
      latest.set(parsed.data.hash, parsed.data);
    });
    return latest;
  }

  async decisionFor(hash: string): Promise<DecisionRecord | null> {
    return (await this.decisions()).get(hash) ?? null;
  }

  /** Every study offered to this site, newest first, with the hospital's decision. */
  async known(): Promise<KnownStudy[]> {
    let names: string[];
    try {
      names = await readdir(join(this.dir, 'offers'));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') names = [];
      else throw error;
    }
    const decisions = await this.decisions();
    const known: KnownStudy[] = [];
    for (const name of names.filter((n) => /^[0-9a-f]{64}\.json$/.test(n))) {
      const offer = await this.offer(name.slice(0, 64));
      if (!offer) continue;
      known.push({ ...offer, definition: studyDefinitionSchema.parse(JSON.parse(offer.definitionJson)), decision: decisions.get(offer.hash) ?? null });
    }
    return known.sort((a, b) => b.firstSeenAt.localeCompare(a.firstSeenAt));
  }

  /**
   * Records the hospital's decision on a study it has seen (by hash, or a unique prefix of at least 8 characters).
   * Appended and flushed; the agent reads it before its next task.
   */
  async decide(hashOrPrefix: string, decision: Decision, by: string, note?: string): Promise<KnownStudy> {
    const wanted = hashOrPrefix.trim().toLowerCase();
    if (!/^[0-9a-f]{8,64}$/.test(wanted)) {
      throw new DecisionError(`"${hashOrPrefix.slice(0, 80)}" is not a study hash: give the 64-character hash from \`federa-site studies\` (or at least its first 8 characters)`);
    }
    const matches = (await this.known()).filter((s) => s.hash.startsWith(wanted));
    if (matches.length === 0) {
      throw new DecisionError(`no study with hash ${wanted} has been offered to this site; run \`federa-site studies\` to fetch the coordinator's list first`);
    }
    if (matches.length > 1) throw new DecisionError(`hash prefix ${wanted} matches ${matches.length} studies; give more characters`);
    const study = matches[0]!;
    const record: DecisionRecord = { hash: study.hash, decision, at: new Date().toISOString(), by, ...(note ? { note } : {}) };
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const handle = await open(this.decisionsPath, 'a', SECRET_FILE_MODE);
    try {
      await handle.appendFile(`${JSON.stringify(record)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    return { ...study, decision: record };
  }
}
