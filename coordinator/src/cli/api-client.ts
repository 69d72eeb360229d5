/** The coordinator's REST API as the CLI sees it: every failure becomes one message that says what to do next. */

/** A call that failed; `message` names what and says what to do, `issues` lists field errors from the server. */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(
    message: string,
    readonly status: number | null,
    readonly issues: readonly string[] = [],
  ) {
    super(message);
  }
}

export interface ApiTarget {
  url: string;
  token: string;
  /** Who the token belongs to, when the login recorded it (for the 403 hint). */
  role?: string;
}

export type FetchLike = typeof fetch;

interface RequestOptions {
  method?: string;
  body?: unknown;
  /** Sent as is with this content type (a YAML file, a ledger) instead of JSON. */
  raw?: { text: string; contentType: string };
  signal?: AbortSignal;
}

export class ApiClient {
  private readonly base: string;

  constructor(
    readonly target: ApiTarget,
    private readonly fetchImpl: FetchLike = fetch,
  ) {
    this.base = target.url.replace(/\/+$/, '');
  }

  async json<T>(path: string, options: RequestOptions = {}): Promise<T> {
    const response = await this.request(path, options);
    const text = await response.text();
    if (text.length === 0) return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new ApiError(`${this.where(path)} answered something that is not JSON: is ${this.base} a Federa coordinator?`, response.status);
    }
  }

  async text(path: string, options: RequestOptions = {}): Promise<string> {
    return (await this.request(path, options)).text();
  }

  /** The response once its status is 2xx; anything else is an ApiError naming the cause and the fix. */
  async request(path: string, options: RequestOptions = {}): Promise<Response> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.target.token}`, accept: 'application/json, text/event-stream' };
    let body: string | undefined;
    if (options.raw) {
      headers['content-type'] = options.raw.contentType;
      body = options.raw.text;
    } else if (options.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(options.body);
    }
    let response: Response;
    try {
      response = await this.fetchImpl(`${this.base}${path}`, { method: options.method ?? 'GET', headers, body, signal: options.signal });
    } catch (error) {
      if ((error as Error).name === 'AbortError') throw error;
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      throw new ApiError(
        `cannot reach the coordinator at ${this.base} (${cause?.code ?? cause?.message ?? (error as Error).message}): is it running, and is that its REST address? Set it with --url, FEDERA_URL or \`federa login --url URL\``,
        null,
      );
    }
    if (response.ok) return response;
    const text = await response.text().catch(() => '');
    let error: string | undefined;
    let issues: string[] = [];
    try {
      const parsed = JSON.parse(text) as { error?: unknown; issues?: unknown };
      if (typeof parsed.error === 'string') error = parsed.error;
      if (Array.isArray(parsed.issues)) issues = parsed.issues.filter((i): i is string => typeof i === 'string');
    } catch {
      // Not one of ours (a proxy's error page): the status says enough.
    }
    throw new ApiError(this.explain(response.status, path, error), response.status, issues);
  }

  private where(path: string): string {
    return `${this.base}${path}`;
  }

  private explain(status: number, path: string, error: string | undefined): string {
    const said = error ?? `HTTP ${status}`;
    switch (status) {
      case 401:
        return `the coordinator refused the token (HTTP 401: ${said}): it may have expired or been revoked; log in again with a valid one: federa login --url ${this.base}`;
      case 403:
        return `${said} (HTTP 403${this.target.role ? `; your token's role is ${this.target.role}` : ''}): ask an admin for a token with a role that may do this (federa token create --role ...)`;
      case 404:
        return `${said}${/\/studies\//.test(path) ? ': list the studies with `federa study list`' : ''}`;
      case 409:
        return `${said}: check the study's state with \`federa study show\``;
      case 429:
        return `the coordinator is rate limiting this client (${said}): wait a minute and try again`;
      default:
        if (status >= 500) return `the coordinator failed (${said}) on ${path}: try again; if it persists, its log says why`;
        return said;
    }
  }
}
