import { setTimeout as sleep } from 'node:timers/promises';
import type { StudyStatus } from '../studies/studies.service.js';
import { ApiError, type ApiClient } from './api-client.js';
import { readServerSentEvents } from './event-stream.js';
import type { CliIo } from './io.js';
import { describeChanges, describeProgress } from './study-progress.js';

export interface WatchOptions {
  /** One JSON object per event on stdout (NDJSON), for scripts. */
  json: boolean;
  /** Redraw a live view in place (a terminal); otherwise print a line per change. */
  live: boolean;
  /** How long to keep trying to reconnect after the stream drops before giving up. */
  reconnectForMs?: number;
  signal?: AbortSignal;
}

/** Statuses after which the stream ends: a completed study exits 0, the others 1. */
const FINAL = new Set(['completed', 'failed', 'cancelled']);

/**
 * Follows a study's event stream until the study ends. A dropped stream (a coordinator restart, a network blip) is
 * reopened with backoff; the server sends the whole status again on connect, so nothing is missed.
 */
export async function watchStudy(api: ApiClient, id: string, io: CliIo, options: WatchOptions): Promise<number> {
  const reconnectFor = options.reconnectForMs ?? 5 * 60_000;
  let latest: StudyStatus | null = null;
  let drawn = 0;
  let failingSince: number | null = null;
  let backoff = 500;
  const draw = (status: StudyStatus): void => {
    if (options.json) return;
    if (options.live) {
      const lines = describeProgress(status, Date.now());
      // Move to the start of the previous drawing and clear it, then draw anew.
      io.stdout(`${drawn > 0 ? `\x1b[${drawn}F\x1b[0J` : ''}${lines.join('\n')}\n`);
      drawn = lines.length;
    } else {
      for (const line of describeChanges(latest, status)) io.stdout(`${line}\n`);
    }
  };
  // The deadline countdown moves even when nothing else does.
  const ticker = options.live && !options.json ? setInterval(() => latest && draw(latest), 1000) : undefined;
  try {
    for (;;) {
      try {
        const response = await api.request(`/api/v1/studies/${encodeURIComponent(id)}/events`, { signal: options.signal });
        if (!response.body) throw new ApiError('the coordinator sent an empty event stream', response.status);
        for await (const event of readServerSentEvents(response.body)) {
          failingSince = null;
          backoff = 500;
          if (options.json) io.stdout(`${JSON.stringify({ event: event.event, data: safeJson(event.data) })}\n`);
          if (event.event === 'status') {
            const status = JSON.parse(event.data) as StudyStatus;
            draw(status);
            latest = status;
          } else if (event.event === 'end') {
            return finish(latest, io, options);
          }
        }
        if (latest && FINAL.has(latest.status)) return finish(latest, io, options);
      } catch (error) {
        if (options.signal?.aborted) return 130;
        // A refusal or an unknown study does not get better by retrying.
        if (error instanceof ApiError && error.status !== null && error.status < 500 && error.status !== 429) throw error;
        if (error instanceof SyntaxError) throw new ApiError(`the coordinator sent an event that is not JSON (${error.message})`, null);
        failingSince ??= Date.now();
        if (Date.now() - failingSince > reconnectFor) {
          throw new ApiError(`lost the study's event stream for ${Math.round(reconnectFor / 1000)}s: ${(error as Error).message}`, null);
        }
        if (!options.json) io.stderr(`connection to the coordinator lost (${(error as Error).message}); reconnecting ...\n`);
      }
      await sleep(backoff, undefined, { signal: options.signal }).catch(() => undefined);
      if (options.signal?.aborted) return 130;
      backoff = Math.min(backoff * 2, 10_000);
    }
  } finally {
    if (ticker) clearInterval(ticker);
  }
}

function finish(status: StudyStatus | null, io: CliIo, options: WatchOptions): number {
  if (!options.json && status) {
    io.stdout(`study ${status.id} ${status.status}${status.error ? `: ${status.error}` : ''}\n`);
    if (status.status === 'completed') io.stdout(`metrics: federa study metrics ${status.id} --csv; evaluation: federa study evaluation ${status.id}\n`);
  }
  return status?.status === 'completed' ? 0 : 1;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}
