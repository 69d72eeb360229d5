import { chmod, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { describeIssues } from '@federa/shared';

/** What `federa login` keeps: where the coordinator is and the token to call it with. */
export const credentialsSchema = z
  .object({
    url: z.string().url(),
    token: z.string().min(1).max(200),
    name: z.string().max(200).optional(),
    role: z.string().max(40).optional(),
    savedAt: z.string().optional(),
  })
  .strict();
export type Credentials = z.infer<typeof credentialsSchema>;

export class CredentialsError extends Error {
  override readonly name = 'CredentialsError';
}

/** `$FEDERA_CONFIG`, else `$XDG_CONFIG_HOME/federa/credentials.json`, else `~/.config/federa/credentials.json`. */
export function credentialsPath(env: NodeJS.ProcessEnv): string {
  if (env.FEDERA_CONFIG) return env.FEDERA_CONFIG;
  const base = env.XDG_CONFIG_HOME && env.XDG_CONFIG_HOME.length > 0 ? env.XDG_CONFIG_HOME : join(env.HOME ?? homedir(), '.config');
  return join(base, 'federa', 'credentials.json');
}

/** The saved login, or null when there is none. A file others can read is refused: it holds a bearer token. */
export async function readCredentials(path: string): Promise<Credentials | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new CredentialsError(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  const mode = (await stat(path)).mode & 0o777;
  if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
    throw new CredentialsError(
      `${path} is readable by others (mode ${mode.toString(8)}) and holds a token: run \`chmod 600 ${path}\`, and revoke the token if others may have read it`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new CredentialsError(`${path} is not JSON: run \`federa login\` again to rewrite it`);
  }
  const parsed = credentialsSchema.safeParse(json);
  if (!parsed.success) throw new CredentialsError(`${path} is not a federa login (${describeIssues(parsed.error).join('; ')}): run \`federa login\` again`);
  return parsed.data;
}

/** Written owner-only (0600, folder 0700) before the token is in it, so it is never readable by others. */
export async function writeCredentials(path: string, credentials: Credentials): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  // writeFile keeps the mode of a file that already exists: empty it and tighten it before the token goes in.
  await writeFile(path, '', { mode: 0o600 });
  await chmod(path, 0o600);
  await writeFile(path, `${JSON.stringify(credentials, null, 2)}\n`);
}

export async function removeCredentials(path: string): Promise<boolean> {
  try {
    await stat(path);
  } catch {
    return false;
  }
  await rm(path, { force: true });
  return true;
}
