import { z } from 'zod';
import { createLogger } from '../logging/index.js';

/**
 * Failpoints: named places in the coordinator and the sites where the fault-injection suite (`npm run chaos`) stops a
 * process, so it can kill it there with SIGKILL, exactly between two steps that a crash could separate. Armed only by
 * the FEDERA_FAILPOINTS environment variable, e.g. `round.publish=stall` or `upload.recorded=stall@3` (the third
 * time it is reached); everywhere else a failpoint is a no-op.
 */
export const FAILPOINTS = [
  /** The round's row is committed; no site has its task yet. */
  'round.dispatch',
  /** An upload's first data chunk is on disk; the rest is still coming. */
  'upload.mid-stream',
  /** An update is recorded (receipt and audit); the round has not been asked to close. */
  'upload.recorded',
  /** The round is marked aggregating; nothing is summed yet. */
  'round.aggregate',
  /** The sum and the new model are stored as blobs; the round is not yet closed in the database. */
  'round.publish',
  /** A site has its train task and has not computed its update. */
  'site.train',
  /** A site has sent the first chunk of its update. */
  'site.upload',
  /** A site has received the first chunk of a model it downloads. */
  'site.download',
] as const;

export type Failpoint = (typeof FAILPOINTS)[number];

const KNOWN: readonly string[] = FAILPOINTS;

const specSchema = z
  .string()
  .transform((text) => text.split(',').map((part) => part.trim()).filter((part) => part !== ''))
  .pipe(
    z.array(
      z
        .string()
        .regex(/^[a-z.-]+=stall(@[1-9]\d{0,5})?$/, 'each entry is NAME=stall or NAME=stall@N')
        .refine((entry) => KNOWN.includes(entry.split('=')[0] ?? ''), `names a failpoint this build does not have; known: ${FAILPOINTS.join(', ')}`),
    ),
  );

interface Armed {
  /** Stall on this hit (1 = the first time the failpoint is reached). */
  at: number;
  hits: number;
}

let armed: Map<string, Armed> | undefined;

function armedPoints(): Map<string, Armed> {
  if (armed) return armed;
  armed = new Map();
  const text = process.env.FEDERA_FAILPOINTS;
  if (!text) return armed;
  const parsed = specSchema.safeParse(text);
  if (!parsed.success) throw new Error(`FEDERA_FAILPOINTS: ${parsed.error.issues.map((i) => i.message).join('; ')}`);
  for (const entry of parsed.data) {
    const [name, action] = entry.split('=') as [string, string];
    armed.set(name, { at: Number(action.split('@')[1] ?? 1), hits: 0 });
  }
  createLogger('failpoints').warn({ failpoints: [...armed.keys()] }, 'failpoints armed: this process will stall at them (fault-injection runs only)');
  return armed;
}

/**
 * Reached `name`: returns at once unless the failpoint is armed for this hit, in which case it logs
 * `failpoint reached` (the suite waits for that line) and never returns.
 */
export async function failpoint(name: Failpoint): Promise<void> {
  const point = armedPoints().get(name);
  if (!point) return;
  point.hits++;
  if (point.hits !== point.at) return;
  createLogger('failpoints').warn({ failpoint: name, hit: point.hits }, 'failpoint reached');
  await new Promise<never>(() => {
    // Stalls until the suite kills the process; a timer keeps the event loop alive meanwhile.
    setInterval(() => undefined, 60_000);
  });
}
