import { Body, Controller, Get, HttpCode, Inject, Param, Post, Put, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { z } from 'zod';
import { parseStudyYaml, StudyFileError, textSchema } from '@federa/shared';
import { BLOB_STORE } from '../app/tokens.js';
import { Caller } from '../auth/caller.decorator.js';
import { Roles, type Principal } from '../auth/roles.js';
import type { BlobStore } from '../blobs/index.js';
import { StudiesService, StudyInputError } from './studies.service.js';

const reasonSchema = z.object({ reason: textSchema(500).optional() }).strict();

/** The optional `reason` of a stop, pause, resume or drop (kept in the audit log). */
function reasonOf(body: unknown): string {
  const parsed = reasonSchema.safeParse(body ?? {});
  if (!parsed.success) throw new StudyInputError(parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`));
  return parsed.data.reason ?? 'no reason given';
}

/**
 * A definition sent as JSON, or as YAML (content-type application/yaml: the body arrives as text), which is read with
 * the same parser as `federa study validate`, so its errors carry line and column.
 */
function definitionOf(body: unknown): unknown {
  if (typeof body !== 'string') return body;
  try {
    return parseStudyYaml(body, 'the request body');
  } catch (error) {
    if (error instanceof StudyFileError) throw new StudyInputError(error.issues);
    throw error;
  }
}

/**
 * REST for researchers (define, change, start, stop and watch studies, fetch published artifacts), for auditors
 * (read studies and their definitions; never artifacts) and admins (read, and the sites).
 */
@Controller('api/v1')
export class StudiesController {
  constructor(
    @Inject(StudiesService) private readonly studies: StudiesService,
    @Inject(BLOB_STORE) private readonly blobs: BlobStore,
  ) {}

  @Post('studies')
  @Roles('researcher')
  create(@Body() body: unknown, @Caller() caller: Principal) {
    return this.studies.create(definitionOf(body), caller);
  }

  /** Replaces a draft's definition (and so its hash: sites must approve it again). */
  @Put('studies/:id')
  @Roles('researcher')
  change(@Param('id') id: string, @Body() body: unknown, @Caller() caller: Principal) {
    return this.studies.change(id, definitionOf(body), caller);
  }

  @Get('studies')
  @Roles('researcher', 'auditor', 'admin')
  list() {
    return this.studies.list();
  }

  @Get('studies/:id')
  @Roles('researcher', 'auditor', 'admin')
  status(@Param('id') id: string) {
    return this.studies.status(id);
  }

  /** The definition exactly as sites receive it, with the hash they approve. */
  @Get('studies/:id/definition')
  @Roles('researcher', 'auditor', 'admin')
  definition(@Param('id') id: string) {
    return this.studies.definition(id);
  }

  /** Per round: each contributing site's metrics on its held-out data and the overall figures, with their counts. */
  @Get('studies/:id/evaluation')
  @Roles('researcher', 'auditor', 'admin')
  evaluation(@Param('id') id: string) {
    return this.studies.evaluation(id);
  }

  @Post('studies/:id/start')
  @HttpCode(200)
  @Roles('researcher')
  start(@Param('id') id: string, @Caller() caller: Principal) {
    return this.studies.start(id, caller);
  }

  @Post('studies/:id/stop')
  @HttpCode(200)
  @Roles('researcher', 'admin')
  stop(@Param('id') id: string, @Body() body: unknown, @Caller() caller: Principal) {
    return this.studies.stop(id, caller, reasonOf(body));
  }

  /** The round in progress finishes; no new round opens until the study is resumed. */
  @Post('studies/:id/pause')
  @HttpCode(200)
  @Roles('researcher', 'admin')
  pause(@Param('id') id: string, @Body() body: unknown, @Caller() caller: Principal) {
    return this.studies.pause(id, caller, reasonOf(body));
  }

  @Post('studies/:id/resume')
  @HttpCode(200)
  @Roles('researcher', 'admin')
  resume(@Param('id') id: string, @Body() body: unknown, @Caller() caller: Principal) {
    reasonOf(body);
    return this.studies.resume(id, caller);
  }

  /** The site is never assigned again; the round in progress stops waiting for it; it is told the study ended for it. */
  @Post('studies/:id/sites/:siteId/drop')
  @HttpCode(200)
  @Roles('researcher', 'admin')
  dropSite(@Param('id') id: string, @Param('siteId') siteId: string, @Body() body: unknown, @Caller() caller: Principal) {
    return this.studies.dropSite(id, siteId, caller, reasonOf(body));
  }

  /**
   * The round's published artifact: float32 little-endian weights in the model spec's parameter order, or the
   * encrypted aggregate (x-federa-model-kind says which). The SHA-256 is in a header. Every download is audited.
   */
  @Get('studies/:id/models/:round')
  @Roles('researcher')
  async model(
    @Param('id') id: string,
    @Param('round') roundText: string,
    @Caller() caller: Principal,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    const round = Number(roundText);
    if (!/^[0-9]{1,9}$/.test(roundText) || !Number.isInteger(round)) {
      throw new StudyInputError([`round: must be a whole number >= 0, got "${roundText.slice(0, 40)}"`]);
    }
    // HEAD reads the headers only: no artifact leaves, so there is no download to audit.
    const { sha256, kind } = await this.studies.modelBlob(id, round, caller, req.method !== 'HEAD');
    const bytes = await this.blobs.get(sha256);
    res.setHeader('content-type', 'application/octet-stream');
    res.setHeader('x-federa-sha256', sha256);
    res.setHeader('x-federa-model-kind', kind);
    res.send(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }

  @Get('sites')
  @Roles('admin', 'researcher', 'auditor')
  sites() {
    return this.studies.sites();
  }
}
