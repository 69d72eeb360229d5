import { ApiClient, type FetchLike } from './api-client.js';
import { credentialsPath, readCredentials, removeCredentials, writeCredentials, type Credentials } from './credentials.js';
import { CliUsageError, type CliIo } from './io.js';

interface WhoAmI {
  name: string;
  role: string;
  tokenId: string;
}

/**
 * `federa login`: checks the token against the coordinator (GET /whoami) before saving it, so a typo is caught now
 * rather than at the next command. The token comes from --token, FEDERA_TOKEN or a prompt (kept out of shell history).
 */
export async function login(io: CliIo, opts: { url?: string; token?: string; json: boolean }, fetchImpl?: FetchLike): Promise<number> {
  const path = credentialsPath(io.env);
  const saved = await readCredentials(path).catch(() => null);
  const url = opts.url ?? io.env.FEDERA_URL ?? saved?.url;
  if (!url) throw new CliUsageError('give the coordinator\'s REST address: federa login --url http://HOST:8080');
  let token = opts.token ?? io.env.FEDERA_TOKEN;
  if (!token && io.readSecret) token = (await io.readSecret('token: '))?.trim() || undefined;
  if (!token) throw new CliUsageError('give the token with --token, FEDERA_TOKEN, or type it when asked (an admin makes one with federa token create)');
  try {
    new URL(url);
  } catch {
    throw new CliUsageError(`--url ${url} is not a URL: give the coordinator's REST address, e.g. http://127.0.0.1:8080`);
  }
  const me = await new ApiClient({ url, token }, fetchImpl).json<WhoAmI>('/api/v1/whoami');
  const credentials: Credentials = { url: url.replace(/\/+$/, ''), token, name: me.name, role: me.role, savedAt: new Date().toISOString() };
  await writeCredentials(path, credentials);
  if (opts.json) io.stdout(`${JSON.stringify({ url: credentials.url, name: me.name, role: me.role, tokenId: me.tokenId, saved: path }, null, 2)}\n`);
  else io.stdout(`logged in to ${credentials.url} as ${me.name} (${me.role}); token saved in ${path} (readable only by you)\n`);
  return 0;
}

export async function logout(io: CliIo, opts: { json: boolean }): Promise<number> {
  const path = credentialsPath(io.env);
  const removed = await removeCredentials(path);
  if (opts.json) io.stdout(`${JSON.stringify({ removed, path })}\n`);
  else io.stdout(removed ? `removed ${path}; the token itself stays valid until it expires or an admin revokes it\n` : `not logged in (no ${path})\n`);
  return 0;
}

export async function whoami(api: ApiClient, io: CliIo, opts: { json: boolean }): Promise<number> {
  const me = await api.json<WhoAmI>('/api/v1/whoami');
  if (opts.json) io.stdout(`${JSON.stringify({ url: api.target.url, ...me }, null, 2)}\n`);
  else io.stdout(`${me.name} (${me.role}, token ${me.tokenId}) at ${api.target.url}\n`);
  return 0;
}
