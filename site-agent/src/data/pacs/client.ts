import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger } from '@federa/shared';
import { z } from 'zod';
import { mediaType, parseMultipart } from './multipart.js';
import { dicomUidSchema, type DicomWebFilters } from './schema.js';

const log = createLogger('site-agent.pacs');

/** A PACS request that failed for good: names the URL (never credentials) and what to check. */
export class DicomWebError extends Error {
  override readonly name = 'DicomWebError';
  constructor(
    message: string,
    readonly url: string,
    /** HTTP status, undefined for network errors and timeouts. */
    readonly status: number | undefined,
  ) {
    super(message);
  }
}

export interface InstanceRef {
  studyInstanceUid: string;
  seriesInstanceUid: string;
  sopInstanceUid: string;
}

export interface DicomWebClientOptions {
  /** DICOMweb root, e.g. http://pacs:8042/dicom-web. */
  url: string;
  /** Authorization header value (see authorizationHeader). */
  authorization?: string | undefined;
  timeoutMs?: number;
  /** Further attempts after a retryable failure. */
  retries?: number;
  /** First backoff delay; doubled each attempt, with jitter. */
  backoffMs?: number;
  /** How to reach the PACS; tests wrap it to count or fail requests. */
  fetch?: typeof fetch;
  /** What to tell a person to check when credentials are refused (from describeAuth). */
  authDescription?: string;
}

/** QIDO-RS answers: DICOM JSON (PS3.18 F.2), one object per match keyed by tag. */
const qidoAnswerSchema = z.array(
  z.record(z.string().regex(/^[0-9A-Fa-f]{8}$/, 'is not a DICOM tag'), z.object({ vr: z.string(), Value: z.array(z.unknown()).optional() }).loose()),
);

const TAGS = { studyInstanceUid: '0020000D', seriesInstanceUid: '0020000E', sopInstanceUid: '00080018' } as const;

/** Per UID a labels CSV may be keyed by: the QIDO-RS attribute to search by and the field a match carries it in. */
export const UID_LEVELS = {
  study_instance_uid: { attribute: 'StudyInstanceUID', field: 'studyInstanceUid', tag: 'Study Instance UID (0020,000D)' },
  series_instance_uid: { attribute: 'SeriesInstanceUID', field: 'seriesInstanceUid', tag: 'Series Instance UID (0020,000E)' },
  sop_instance_uid: { attribute: 'SOPInstanceUID', field: 'sopInstanceUid', tag: 'SOP Instance UID (0008,0018)' },
} as const;
export type UidLevel = keyof typeof UID_LEVELS;

/** The query parameters every search of a query shares: modality and study date range. */
function commonFilters(query: DicomWebFilters): Record<string, string> {
  const common: Record<string, string> = {};
  if (query.modality !== undefined) common['Modality'] = query.modality;
  if (query.studyDateFrom !== undefined || query.studyDateTo !== undefined) common['StudyDate'] = `${query.studyDateFrom ?? ''}-${query.studyDateTo ?? ''}`;
  return common;
}
const PAGE = 500;
// As stored: without transfer-syntax=* a PACS must transcode to Explicit VR Little Endian, so the cache would
// not hold what a folder export holds (and lossy images would be re-encoded, or refused).
const WADO_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*';

/** 408 and 429 are the client-side statuses that mean "try again later"; every other 4xx will fail again. */
const retryableStatus = (status: number): boolean => status >= 500 || status === 408 || status === 429;

/**
 * A small DICOMweb client for what a site needs: QIDO-RS instance search and WADO-RS instance retrieval, with a
 * timeout per request and exponential backoff on network errors, timeouts and 5xx answers.
 */
export class DicomWebClient {
  /** HTTP requests made, attempts included. */
  requests = 0;
  private readonly root: string;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly backoffMs: number;
  private readonly fetchImpl: typeof fetch;

  constructor(private readonly options: DicomWebClientOptions) {
    this.root = options.url.replace(/\/+$/, '');
    this.timeoutMs = options.timeoutMs ?? 120_000;
    this.retries = options.retries ?? 4;
    this.backoffMs = options.backoffMs ?? 500;
    this.fetchImpl = options.fetch ?? fetch;
  }

  /** Instances matching the query, each once (QIDO-RS at instance level, paged, one search per listed UID). */
  async searchInstances(query: DicomWebFilters): Promise<InstanceRef[]> {
    // A fromLabels query has no filter of its own: searching it here would select the whole PACS.
    if ('fromLabels' in query && query.fromLabels === true) throw new TypeError('a fromLabels query is searched UID by UID (selectPacsInstances), not by searchInstances');
    const common = commonFilters(query);
    // UID lists are searched one by one: not every PACS takes a backslash-separated UID list in QIDO.
    const byStudy = query.studyInstanceUids ?? [undefined];
    const bySeries = query.seriesInstanceUids ?? [undefined];
    const found = new Map<string, InstanceRef>();
    for (const study of byStudy) {
      for (const series of bySeries) {
        const filters = { ...common, ...(study ? { StudyInstanceUID: study } : {}), ...(series ? { SeriesInstanceUID: series } : {}) };
        for (const ref of await this.searchPaged(filters)) {
          // A PACS may ignore a filter it does not support; a match must still satisfy the query.
          if (study !== undefined && ref.studyInstanceUid !== study) continue;
          if (series !== undefined && ref.seriesInstanceUid !== series) continue;
          found.set(ref.sopInstanceUid, ref);
        }
      }
    }
    return [...found.values()].sort((a, b) => a.sopInstanceUid.localeCompare(b.sopInstanceUid));
  }

  /** Instances with this study, series or SOP Instance UID that also match the filters (one QIDO-RS search, paged). */
  async searchByUid(level: UidLevel, uid: string, filters: DicomWebFilters = {}): Promise<InstanceRef[]> {
    const { attribute, field } = UID_LEVELS[level];
    const refs = await this.searchPaged({ ...commonFilters(filters), [attribute]: uid });
    // As above: a PACS that ignores the attribute must not make every instance count as labelled.
    return refs.filter((ref) => ref[field] === uid).sort((a, b) => a.sopInstanceUid.localeCompare(b.sopInstanceUid));
  }

  private async searchPaged(filters: Record<string, string>): Promise<InstanceRef[]> {
    const refs: InstanceRef[] = [];
    const seen = new Set<string>();
    for (let offset = 0; ; offset += PAGE) {
      const params = new URLSearchParams({ ...filters, limit: String(PAGE), offset: String(offset) });
      const url = `${this.root}/instances?${params.toString()}`;
      const response = await this.request(url, 'application/dicom+json', 'QIDO-RS search');
      const text = response.status === 204 ? '' : new TextDecoder().decode(response.body);
      let json: unknown;
      try {
        json = text.trim() === '' ? [] : JSON.parse(text);
      } catch {
        throw new DicomWebError(`PACS at ${url} answered the QIDO-RS search with something that is not JSON: is data.source.url the DICOMweb root?`, url, response.status);
      }
      const parsed = qidoAnswerSchema.safeParse(json);
      if (!parsed.success) throw new DicomWebError(`PACS at ${url} answered the QIDO-RS search with unexpected JSON: ${parsed.error.issues[0]?.message ?? 'invalid'}`, url, response.status);
      const before = seen.size;
      for (const match of parsed.data) {
        const ref = instanceRefOf(match, url);
        if (!seen.has(ref.sopInstanceUid)) refs.push(ref);
        seen.add(ref.sopInstanceUid);
      }
      // A PACS may cap pages below our limit, so only an empty page ends the search; one that ignores offset
      // would repeat its first page forever, so a page with nothing new ends it too.
      if (parsed.data.length === 0 || seen.size === before) return refs;
    }
  }

  /** One instance as stored (Part 10 bytes), via WADO-RS. */
  async retrieveInstance(ref: InstanceRef): Promise<Uint8Array> {
    const url = `${this.root}/studies/${ref.studyInstanceUid}/series/${ref.seriesInstanceUid}/instances/${ref.sopInstanceUid}`;
    const response = await this.request(url, WADO_ACCEPT, 'WADO-RS retrieve');
    const type = mediaType(response.contentType);
    if (type === 'application/dicom') return response.body;
    if (type !== 'multipart/related') throw new DicomWebError(`PACS at ${url} answered WADO-RS with ${response.contentType || 'no Content-Type'}, not multipart/related`, url, response.status);
    let parts;
    try {
      parts = parseMultipart(response.body, response.contentType);
    } catch (error) {
      throw new DicomWebError(`PACS at ${url}: ${(error as Error).message}`, url, response.status);
    }
    const dicom = parts.filter((p) => mediaType(p.headers['content-type'] ?? 'application/dicom') === 'application/dicom');
    if (dicom.length !== 1 || parts.length !== 1) {
      throw new DicomWebError(`PACS at ${url} answered WADO-RS for one instance with ${parts.length} parts (${dicom.length} DICOM); expected exactly one`, url, response.status);
    }
    return (dicom[0] as { body: Uint8Array }).body;
  }

  /** Whether the PACS answers a QIDO-RS search with these credentials (for `doctor`). */
  async ping(): Promise<void> {
    await this.request(`${this.root}/studies?limit=1`, 'application/dicom+json', 'QIDO-RS search');
  }

  private async request(url: string, accept: string, what: string): Promise<{ status: number; contentType: string; body: Uint8Array }> {
    const headers: Record<string, string> = { accept };
    if (this.options.authorization !== undefined) headers['authorization'] = this.options.authorization;
    for (let attempt = 0; ; attempt++) {
      this.requests++;
      let failure: DicomWebError;
      let retryAfterMs: number | undefined;
      try {
        const response = await this.fetchImpl(url, { headers, signal: AbortSignal.timeout(this.timeoutMs) });
        if (response.ok) {
          const body = new Uint8Array(await response.arrayBuffer());
          return { status: response.status, contentType: response.headers.get('content-type') ?? '', body };
        }
        // The body is drained so the connection can be reused; its text is not shown (it may echo the request).
        await response.arrayBuffer().catch(() => undefined);
        failure = this.statusError(url, response.status, what);
        if (!retryableStatus(response.status)) throw failure;
        const retryAfter = Number(response.headers.get('retry-after'));
        if (Number.isFinite(retryAfter) && retryAfter > 0) retryAfterMs = Math.min(retryAfter, 60) * 1000;
      } catch (error) {
        if (error instanceof DicomWebError) throw error;
        failure = this.networkError(url, error, what);
      }
      if (attempt >= this.retries) throw failure;
      const delay = retryAfterMs ?? this.backoffMs * 2 ** attempt * (0.5 + Math.random() / 2);
      log.warn({ url, attempt: attempt + 1, retries: this.retries, delayMs: Math.round(delay), status: failure.status }, `PACS ${what} failed, retrying: ${failure.message}`);
      await sleep(delay);
    }
  }

  private statusError(url: string, status: number, what: string): DicomWebError {
    if (status === 401 || status === 403) {
      const creds = this.options.authDescription ?? (this.options.authorization ? 'the configured credentials' : 'no credentials');
      return new DicomWebError(
        `PACS at ${url} refused the ${what} (HTTP ${status}) with ${creds}: check data.source.auth (user name, password or token) and that this user may query and retrieve over DICOMweb`,
        url,
        status,
      );
    }
    if (status === 404 && what.startsWith('QIDO')) {
      return new DicomWebError(`PACS at ${url} has no DICOMweb QIDO-RS endpoint there (HTTP 404): check data.source.url, the DICOMweb root (e.g. http://pacs:8042/dicom-web)`, url, status);
    }
    return new DicomWebError(`PACS at ${url} answered the ${what} with HTTP ${status}`, url, status);
  }

  private networkError(url: string, error: unknown, what: string): DicomWebError {
    const err = error as Error & { cause?: { code?: string; message?: string } };
    if (err.name === 'TimeoutError') return new DicomWebError(`PACS at ${url} did not answer the ${what} within ${this.timeoutMs / 1000} s (data.source.timeoutSeconds)`, url, undefined);
    const detail = err.cause?.code ?? err.cause?.message ?? err.message;
    return new DicomWebError(`cannot reach the PACS at ${url} (${detail}): check data.source.url and that the PACS is reachable from this host`, url, undefined);
  }
}

function instanceRefOf(match: Record<string, { Value?: unknown[] | undefined }>, url: string): InstanceRef {
  const uid = (name: keyof typeof TAGS): string => {
    const tag = TAGS[name];
    const value = (match[tag] ?? match[tag.toLowerCase()])?.Value?.[0];
    const parsed = dicomUidSchema.safeParse(typeof value === 'string' ? value.trim() : value);
    if (!parsed.success) throw new DicomWebError(`PACS at ${url} answered the QIDO-RS search with a match whose ${name} (${tag}) is missing or not a UID`, url, 200);
    return parsed.data;
  };
  return { studyInstanceUid: uid('studyInstanceUid'), seriesInstanceUid: uid('seriesInstanceUid'), sopInstanceUid: uid('sopInstanceUid') };
}
