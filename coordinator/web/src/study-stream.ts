import { ApiError, api, request } from './api.js';
import { FINAL_STATUSES, type SiteView, type StudyStatus } from './types.js';

export type StreamState = 'connecting' | 'live' | 'reconnecting' | 'polling' | 'ended';

export interface StreamHandlers {
  status(study: StudyStatus): void;
  sites(sites: SiteView[]): void;
  state(state: StreamState, detail: string): void;
  /** A refusal that retrying cannot fix (the study does not exist, the role may not watch it). */
  fatal(error: ApiError): void;
}

/** Server-sent keep-alives come every 15 s; this long without a byte means the connection is dead but not closed. */
const SILENCE_MS = 45_000;
const MAX_BACKOFF_MS = 30_000;
/** When the server has no stream to spare (429), the page polls the study at this pace instead, for a while. */
const POLL_MS = 3_000;
const POLLS_BEFORE_RETRY = 20;
/**
 * A study is final before its last round's federated evaluation is in (sites evaluate after the round closes). The
 * stream waits for it before `end`; a page that learnt the end by polling instead reads the study at this pace until
 * no site is pending.
 */
const SETTLE_POLL_MS = 2_000;
const SETTLE_FOR_MS = 120_000;

const evaluationPending = (study: StudyStatus | null): boolean => study?.rounds.some((r) => (r.evaluation?.pendingSites.length ?? 0) > 0) ?? false;

/**
 * Follows a study live over GET /studies/:id/events. EventSource cannot send an Authorization header, so this reads
 * the stream with fetch. A dropped stream is reopened with exponential backoff (from the server's `retry:`), and
 * the study is read once between attempts so the page is not left stale; the stream ends for good at `end`.
 */
export function watchStudy(studyId: string, handlers: StreamHandlers): { close(): void } {
  let closed = false;
  let last: StudyStatus | null = null;
  let connection: AbortController | null = null;
  let wake: (() => void) | null = null;
  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const timer = setTimeout(() => {
        wake = null;
        resolve();
      }, ms);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  const path = `/studies/${encodeURIComponent(studyId)}`;

  /** One GET of the study: the stream's stand-in while it is down. */
  const refresh = async (): Promise<boolean> => {
    try {
      const study = await api<StudyStatus>('GET', path);
      if (closed) return true;
      last = study;
      handlers.status(study);
      return FINAL_STATUSES.has(study.status);
    } catch {
      return false;
    }
  };

  /** After the end: follows the last round's evaluation until every site asked has answered (or a while passed). */
  const settle = async (): Promise<void> => {
    const until = Date.now() + SETTLE_FOR_MS;
    while (!closed && evaluationPending(last) && Date.now() < until) {
      await sleep(SETTLE_POLL_MS);
      if (!closed) await refresh();
    }
  };

  const run = async (): Promise<void> => {
    let retryMs = 2_000;
    let attempt = 0;
    while (!closed) {
      handlers.state(attempt === 0 ? 'connecting' : 'reconnecting', 'opening the live stream');
      connection = new AbortController();
      let outcome: 'ended' | 'dropped' | 'busy' = 'dropped';
      try {
        const response = await request('GET', `${path}/events`, { accept: 'text/event-stream', signal: connection.signal });
        outcome = await readEvents(response, connection, {
          onEvent: (event, data) => {
            attempt = 0;
            handlers.state('live', 'live');
            if (event === 'status') handlers.status((last = JSON.parse(data) as StudyStatus));
            else if (event === 'sites') handlers.sites(JSON.parse(data) as SiteView[]);
          },
          onRetry: (ms) => (retryMs = ms),
        });
      } catch (error) {
        if (closed) return;
        if (error instanceof ApiError && (error.status === 401 || error.status === 403 || error.status === 404)) {
          handlers.fatal(error);
          return;
        }
        if (error instanceof ApiError && error.status === 429) outcome = 'busy';
      }
      if (closed) return;
      if (outcome === 'ended') {
        handlers.state('ended', 'the study is finished');
        return;
      }
      if (outcome === 'busy') {
        // No stream to spare: poll for a while, then ask for a stream again.
        for (let i = 0; i < POLLS_BEFORE_RETRY && !closed; i++) {
          handlers.state('polling', `the coordinator has no live stream free; refreshing every ${POLL_MS / 1000} s`);
          if (await refresh()) {
            handlers.state('ended', 'the study is finished');
            await settle();
            return;
          }
          await sleep(POLL_MS);
        }
        continue;
      }
      const delay = Math.min(MAX_BACKOFF_MS, retryMs * 2 ** attempt);
      attempt += 1;
      handlers.state('reconnecting', `connection lost; reconnecting in ${Math.round(delay / 1000)} s`);
      if (await refresh()) {
        handlers.state('ended', 'the study is finished');
        await settle();
        return;
      }
      await sleep(delay);
    }
  };
  run().catch((error: unknown) => handlers.state('reconnecting', `live updates stopped: ${error instanceof Error ? error.message : String(error)}`));
  return {
    close: () => {
      closed = true;
      connection?.abort();
      wake?.();
    },
  };
}

/** Reads `event:`/`data:` blocks until the server says `end` (resolves 'ended') or the stream stops ('dropped'). */
async function readEvents(
  response: Response,
  connection: AbortController,
  on: { onEvent: (event: string, data: string) => void; onRetry: (ms: number) => void },
): Promise<'ended' | 'dropped'> {
  if (!response.body) return 'dropped';
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let silence = setTimeout(() => connection.abort(), SILENCE_MS);
  let buffer = '';
  let event = 'message';
  let data: string[] = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return 'dropped';
      clearTimeout(silence);
      silence = setTimeout(() => connection.abort(), SILENCE_MS);
      buffer += value;
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop() ?? '';
      for (const line of lines) {
        if (line === '') {
          if (data.length > 0) {
            if (event === 'end') return 'ended';
            on.onEvent(event, data.join('\n'));
          } else if (event === 'end') {
            return 'ended';
          }
          event = 'message';
          data = [];
          continue;
        }
        if (line.startsWith(':')) continue; // keep-alive comment
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') event = text;
        else if (field === 'data') data.push(text);
        else if (field === 'retry' && /^\d+$/.test(text)) on.onRetry(Number(text));
      }
    }
  } catch (error) {
    if (error instanceof DOMException && error.name === 'AbortError') return 'dropped';
    throw error;
  } finally {
    clearTimeout(silence);
    reader.cancel().catch(() => undefined);
  }
}
