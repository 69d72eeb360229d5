/**
 * Calls to the coordinator's REST API with the signed-in user's bearer token. The token lives in sessionStorage:
 * it is gone when the tab closes, and other tabs (and other sites) never see it. The API decides every permission;
 * the page only hides what a role could not use anyway.
 */

const TOKEN_KEY = 'federa.token';
export const API_BASE = '/api/v1';

export function storedToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function storeToken(token: string): void {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken(): void {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** A refused or failed call: the HTTP status and the server's own words (`{ error, issues }`). */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(
    readonly status: number,
    message: string,
    readonly issues: string[] = [],
  ) {
    super(message);
  }
}

/** What the page does when the token stops working (expired, revoked): back to the sign-in form, saying why. */
let onUnauthorized: (message: string) => void = () => undefined;
export function setUnauthorizedHandler(handler: (message: string) => void): void {
  onUnauthorized = handler;
}

export interface RequestOptions {
  /** A JSON body. */
  json?: unknown;
  /** A text body with its content type (a YAML definition, a ledger file). */
  text?: { body: string; contentType: string };
  signal?: AbortSignal;
  /** A token to try instead of the stored one (signing in); a 401 then does not sign anyone out. */
  token?: string;
  accept?: string;
}

export function authHeaders(token = storedToken()): Record<string, string> {
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** One call; resolves with the response once it is OK, throws ApiError (with the server's message) otherwise. */
export async function request(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
  const headers: Record<string, string> = { ...authHeaders(options.token ?? storedToken()), accept: options.accept ?? 'application/json' };
  let body: string | null = null;
  if (options.json !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(options.json);
  } else if (options.text !== undefined) {
    headers['content-type'] = options.text.contentType;
    body = options.text.body;
  }
  let response: Response;
  try {
    response = await fetch(`${API_BASE}${path}`, { method, headers, body, cache: 'no-store', ...(options.signal ? { signal: options.signal } : {}) });
  } catch (error) {
    if (error instanceof DOMException && error.name === 'AbortError') throw error;
    throw new ApiError(0, `the coordinator cannot be reached (${error instanceof Error ? error.message : String(error)})`);
  }
  if (response.ok) return response;
  const error = await errorOf(response);
  if (response.status === 401 && options.token === undefined) onUnauthorized(error.message);
  throw error;
}

/** A call whose answer is JSON. */
export async function api<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
  const response = await request(method, path, options);
  return (await response.json()) as T;
}

export async function errorOf(response: Response): Promise<ApiError> {
  const text = await response.text().catch(() => '');
  try {
    const parsed = JSON.parse(text) as { error?: unknown; message?: unknown; issues?: unknown };
    const message = typeof parsed.error === 'string' ? parsed.error : typeof parsed.message === 'string' ? parsed.message : `${response.status} ${response.statusText}`;
    const issues = Array.isArray(parsed.issues) ? parsed.issues.filter((i): i is string => typeof i === 'string') : [];
    return new ApiError(response.status, message, issues);
  } catch {
    return new ApiError(response.status, `${response.status} ${response.statusText}${text ? `: ${text.slice(0, 200)}` : ''}`);
  }
}

/** How an error reads on the page: a refusal by role is said plainly, with the server's reason. */
export function describeError(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.status === 403) return `Not allowed for your role: ${error.message}`;
    if (error.status === 401) return `Signed out: ${error.message}`;
    return error.message;
  }
  return error instanceof Error ? error.message : String(error);
}

/** Downloads a file the API serves only with a token (a link cannot carry the header): fetched, then saved. */
export async function download(path: string, fallbackName: string): Promise<void> {
  const response = await request('GET', path, { accept: '*/*' });
  const disposition = response.headers.get('content-disposition') ?? '';
  const name = /filename="([^"]+)"/.exec(disposition)?.[1] ?? fallbackName;
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
