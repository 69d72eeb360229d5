import { createHash } from 'node:crypto';
import { mkdir, open, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { replaceFile, SECRET_FILE_MODE, STUDY_ID, studyDefinitionSchema, type StudyDefinition } from '@federa/shared';

/**
 * The hospital's decisions about studies, kept at the site: every study offered to it (one file per study under
 * `policy/offers/`, with its definition and hash) and an append-only log of approvals and rejections
 * (`policy/decisions.jsonl`, the latest line per study and hash wins). A decision is for one study and one definition:
 * the same definition offered again as another study (more rounds of the same) needs its own approval. The agent
 * only reads decisions; `federa-site approve` and `reject` append them, so the two processes never rewrite each
 * other's files.
 */
export type Decision = 'approved' | 'rejected';

const studyIdSchema = z.string().regex(STUDY_ID, 'must be a study id');

const decisionSchema = z
  .object({
    studyId: studyIdSchema,
    hash: z.string().regex(/^[0-9a-f]{64}$/),
    decision: z.enum(['approved', 'rejected']),
    at: z.iso.datetime(),
    by: z.string().min(1).max(200),
    note: z.string().max(1_000).optional(),
  })
  .strict();

export type DecisionRecord = z.output<typeof decisionSchema>;

/** Study states in which a study can still ask this site for work. */
const OPEN_STATUSES = new Set(['draft', 'running', 'paused']);

const offerSchema = z
  .object({
    hash: z.string().regex(/^[0-9a-f]{64}$/),
    studyId: studyIdSchema,
    name: z.string().max(200),
    owner: z.string().max(200),
    definitionJson: z.string().min(2),
    firstSeenAt: z.iso.datetime(),
    /** The study's state when the coordinator last listed it (draft, running, completed, ...); tasks carry none. */
    status: z.string().max(40).optional(),
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
    const existing = await this.offer(offer.studyId);
    if (existing && existing.hash !== offer.hash) {
      // The study's definition changed (a draft edited after it was offered): the new one replaces it, undecided.
      await this.write({ ...offer, firstSeenAt: new Date().toISOString() });
      return (await this.offer(offer.studyId))!;
    }
    // A task names no owner or state; the coordinator's list does: fill them in when it arrives.
    const owner = offer.owner !== '' ? offer.owner : (existing?.owner ?? '');
    const status = offer.status ?? existing?.status;
    if (existing && existing.owner === owner && existing.status === status) return existing;
    const record: StudyOffer = { ...offer, owner, ...(status ? { status } : {}), firstSeenAt: existing?.firstSeenAt ?? new Date().toISOString() };
    await this.write(record);
    return record;
  }

  async offer(studyId: string): Promise<StudyOffer | undefined> {
    if (!STUDY_ID.test(studyId)) return undefined;
    const path = join(this.dir, 'offers', `${studyId}.json`);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    let parsed: ReturnType<typeof offerSchema.safeParse> | undefined;
    try {
      parsed = offerSchema.safeParse(JSON.parse(text));
    } catch {
      parsed = undefined;
    }
    if (!parsed?.success || parsed.data.studyId !== studyId) throw new DecisionError(`${path} is damaged; delete it and list the studies again`);
    return parsed.data;
  }

  private async write(record: StudyOffer): Promise<void> {
    await mkdir(join(this.dir, 'offers'), { recursive: true, mode: 0o700 });
    await replaceFile(join(this.dir, 'offers', `${record.studyId}.json`), Buffer.from(JSON.stringify(record, null, 2)), SECRET_FILE_MODE);
  }

  /** The latest decision per study and hash. A damaged line is an error naming it: decisions are never guessed. */
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
      latest.set(decisionKey(parsed.data.studyId, parsed.data.hash), parsed.data);
    });
    return latest;
  }

  async decisionFor(studyId: string, hash: string): Promise<DecisionRecord | null> {
    return (await this.decisions()).get(decisionKey(studyId, hash)) ?? null;
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
    for (const name of names.filter((n) => n.endsWith('.json'))) {
      const offer = await this.offer(name.slice(0, -'.json'.length));
      if (!offer) continue;
      known.push({
        ...offer,
        definition: studyDefinitionSchema.parse(JSON.parse(offer.definitionJson)),
        decision: decisions.get(decisionKey(offer.studyId, offer.hash)) ?? null,
      });
    }
    return known.sort((a, b) => b.firstSeenAt.localeCompare(a.firstSeenAt));
  }

  /**
   * Records the hospital's decision on a study it has seen (by hash, or a unique prefix of at least 8 characters;
   * `studyId` picks one when several studies share the definition). Appended and flushed; the agent reads it before
   * its next task.
   */
  async decide(hashOrPrefix: string, decision: Decision, by: string, note?: string, studyId?: string): Promise<KnownStudy> {
    const wanted = hashOrPrefix.trim().toLowerCase();
    if (!/^[0-9a-f]{8,64}$/.test(wanted)) {
      throw new DecisionError(`"${hashOrPrefix.slice(0, 80)}" is not a study hash: give the 64-character hash from \`federa-site studies\` (or at least its first 8 characters)`);
    }
    const matches = (await this.known()).filter((s) => s.hash.startsWith(wanted) && (studyId === undefined || s.studyId === studyId));
    if (matches.length === 0) {
      throw new DecisionError(
        `no study with hash ${wanted}${studyId ? ` and id ${studyId}` : ''} has been offered to this site; run \`federa-site studies\` to fetch the coordinator's list first`,
      );
    }
    // The same definition run again is another study: a decision names one. When only one of them can still run,
    // that is the one the hospital is deciding on (the others ended).
    const stillOpen = matches.filter((m) => m.status !== undefined && OPEN_STATUSES.has(m.status));
    if (matches.length > 1 && studyId === undefined && stillOpen.length === 1 && new Set(matches.map((m) => m.hash)).size === 1) matches.splice(0, matches.length, stillOpen[0]!);
    if (matches.length > 1) {
      const hashes = new Set(matches.map((m) => m.hash));
      throw new DecisionError(
        hashes.size > 1
          ? `hash prefix ${wanted} matches ${hashes.size} definitions; give more characters`
          : `${matches.length} studies share this definition (${matches.map((m) => m.studyId).join(', ')}); say which with --study ID`,
      );
    }
    const study = matches[0]!;
    const record: DecisionRecord = { studyId: study.studyId, hash: study.hash, decision, at: new Date().toISOString(), by, ...(note ? { note } : {}) };
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const handle = await open(this.decisionsPath, 'a', SECRET_FILE_MODE);
    try {
      // A file made before (or by another tool) keeps its mode on open: make it owner-only.
      await handle.chmod(SECRET_FILE_MODE);
      await handle.appendFile(`${JSON.stringify(record)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    return { ...study, decision: record };
  }
}

function decisionKey(studyId: string, hash: string): string {
  return `${studyId}/${hash}`;
}
