import { readFile } from 'node:fs/promises';
import type { DicomWebAuth } from './schema.js';

export class PacsCredentialsError extends Error {
  override readonly name = 'PacsCredentialsError';
}

/** Where the secret comes from, as it may be named in messages (never the secret itself). */
export function describeAuth(auth: DicomWebAuth | undefined): string {
  if (auth === undefined) return 'no credentials (data.source.auth is not set)';
  if ('basic' in auth) {
    const from = auth.basic.passwordFile !== undefined ? `password file ${auth.basic.passwordFile}` : `password in $${auth.basic.passwordEnv}`;
    return `basic auth as user "${auth.basic.username}" with the ${from}`;
  }
  return 'bearerFile' in auth ? `bearer token from ${auth.bearerFile}` : `bearer token in $${auth.bearerEnv}`;
}

async function secretFrom(file: string | undefined, envName: string | undefined, env: NodeJS.ProcessEnv, what: string): Promise<string> {
  let value: string | undefined;
  if (file !== undefined) {
    try {
      value = await readFile(file, 'utf8');
    } catch (error) {
      throw new PacsCredentialsError(`cannot read the PACS ${what} file ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
  } else if (envName !== undefined) {
    value = env[envName];
    if (value === undefined) throw new PacsCredentialsError(`the PACS ${what} variable $${envName} is not set in the agent's environment`);
  }
  // Secret files usually end in a newline an editor or `echo` added; it is not part of the secret.
  const trimmed = (value ?? '').replace(/\r?\n$/, '');
  if (trimmed === '') throw new PacsCredentialsError(`the PACS ${what} (${file ?? `$${envName}`}) is empty`);
  if (/[\r\n]/.test(trimmed)) throw new PacsCredentialsError(`the PACS ${what} (${file ?? `$${envName}`}) spans several lines; it must be one line`);
  return trimmed;
}

/** The Authorization header value for the PACS, or undefined without credentials. */
export async function authorizationHeader(auth: DicomWebAuth | undefined, env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  if (auth === undefined) return undefined;
  if ('basic' in auth) {
    const password = await secretFrom(auth.basic.passwordFile, auth.basic.passwordEnv, env, 'password');
    return `Basic ${Buffer.from(`${auth.basic.username}:${password}`, 'utf8').toString('base64')}`;
  }
  const token = 'bearerFile' in auth ? await secretFrom(auth.bearerFile, undefined, env, 'token') : await secretFrom(undefined, auth.bearerEnv, env, 'token');
  return `Bearer ${token}`;
}
