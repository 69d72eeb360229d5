import { Controller, Get, HttpException, HttpStatus, Inject, Param, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { createLogger } from '@federa/shared';
import { Roles } from '../auth/roles.js';
import { ApiDoc } from '../openapi/index.js';
import { STUDY_PARAMS } from './studies.api.js';
import { StudiesService } from './studies.service.js';

/** Statuses after which nothing about a study changes: the stream says `end` and closes. */
export const FINAL_STUDY_STATUSES: ReadonlySet<string> = new Set(['completed', 'failed', 'cancelled']);
/** How often a stream reads the study; the watcher sees a change at most this late. */
const POLL_MS = 1000;
/** A comment line now and then, so proxies and idle timeouts do not cut a quiet stream. */
const KEEP_ALIVE_MS = 15_000;
/**
 * After a study ends, its sites still score the last published model: `end` waits for their evaluation (or this
 * long), so a watcher's final picture has the final figures.
 */
const EVALUATION_WAIT_MS = 120_000;
/** Each open stream reads the database every POLL_MS; past this many, a watcher is told to poll instead. */
export const MAX_EVENT_STREAMS = 64;

const log = createLogger('study-events');

/**
 * Server-sent events for `federa study watch` and the dashboard: the study's status (the same JSON as
 * GET /studies/:id) and the sites (as GET /sites), each sent once at connect and again whenever it changes, then
 * `end` when the study is final. Read from the database, not from this process's memory, so a stream shows the same
 * thing whichever coordinator process serves it, and survives a restart by reconnecting.
 */
@Controller('api/v1')
export class StudyEventsController {
  private open = 0;

  constructor(@Inject(StudiesService) private readonly studies: StudiesService) {}

  @Get('studies/:id/events')
  @Roles('researcher', 'auditor', 'admin')
  @ApiDoc({
    summary: "A study's live progress as server-sent events",
    description:
      '`event: status` with the JSON of GET /studies/{id}, and `event: sites` with the JSON of GET /sites, each once at ' +
      'connect and again whenever it changes (read every second); `event: end` with `{"status": ...}` when the study is ' +
      'completed, failed or cancelled and the sites have scored its last model (or 2 minutes later), after which the server ' +
      'closes the stream. Comment lines keep a quiet stream open. ' +
      'A client that loses the stream reconnects and gets the whole status again.',
    params: STUDY_PARAMS,
    responses: { 200: { description: 'An endless text/event-stream until the study ends.', contentType: 'text/event-stream' } },
    errors: { 404: 'No such study.', 429: `The coordinator already serves ${MAX_EVENT_STREAMS} event streams.` },
  })
  async events(@Param('id') id: string, @Req() req: Request, @Res() res: Response): Promise<void> {
    // Unknown study: a plain 404 before any stream starts.
    const first = await this.studies.status(id);
    if (this.open >= MAX_EVENT_STREAMS) {
      throw new HttpException(
        { statusCode: 429, error: 'Too Many Requests', message: `the coordinator already serves ${this.open} event streams; close another watcher or poll GET /api/v1/studies/${id}` },
        HttpStatus.TOO_MANY_REQUESTS,
      );
    }
    this.open += 1;
    res.status(200);
    res.setHeader('content-type', 'text/event-stream; charset=utf-8');
    res.setHeader('cache-control', 'no-cache, no-transform');
    res.setHeader('connection', 'keep-alive');
    // nginx and similar proxies buffer responses unless told not to; a buffered stream is not live.
    res.setHeader('x-accel-buffering', 'no');
    res.flushHeaders();

    let closed = false;
    let lastStatus = '';
    let lastSites = '';
    let lastWrite = Date.now();
    let finalSince: number | null = null;
    let timer: NodeJS.Timeout | undefined;
    const send = (event: string, json: string): void => {
      res.write(`event: ${event}\ndata: ${json}\n\n`);
      lastWrite = Date.now();
    };
    const finish = (): void => {
      if (closed) return;
      closed = true;
      this.open -= 1;
      if (timer) clearTimeout(timer);
      res.end();
    };
    req.on('close', finish);
    res.write('retry: 2000\n\n');

    const publish = async (status?: Awaited<ReturnType<StudiesService['status']>>): Promise<void> => {
      const [current, sites] = await Promise.all([status ?? this.studies.status(id), this.studies.sites()]);
      if (closed) return;
      const statusJson = JSON.stringify(current);
      if (statusJson !== lastStatus) send('status', (lastStatus = statusJson));
      const sitesJson = JSON.stringify(sites);
      if (sitesJson !== lastSites) send('sites', (lastSites = sitesJson));
      if (Date.now() - lastWrite >= KEEP_ALIVE_MS) {
        res.write(': keep-alive\n\n');
        lastWrite = Date.now();
      }
      if (FINAL_STUDY_STATUSES.has(current.status)) {
        finalSince ??= Date.now();
        const pending = current.rounds.at(-1)?.evaluation?.pendingSites.length ?? 0;
        if (pending === 0 || Date.now() - finalSince >= EVALUATION_WAIT_MS) {
          send('end', JSON.stringify({ status: current.status }));
          finish();
        }
      }
    };
    const tick = (): void => {
      timer = setTimeout(() => {
        publish().then(
          () => {
            if (!closed) tick();
          },
          (error: unknown) => {
            // A database hiccup: the stream stays open and the next tick tries again; the watcher sees no change.
            log.warn({ err: error, studyId: id }, 'could not read a study for its event stream');
            if (!closed) tick();
          },
        );
      }, POLL_MS);
    };
    try {
      await publish(first);
    } catch (error) {
      log.warn({ err: error, studyId: id }, 'could not read the sites for an event stream');
    }
    if (!closed) tick();
  }
}
