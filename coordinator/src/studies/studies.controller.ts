import { Body, Controller, Get, HttpCode, Inject, Param, Post, Put, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { z } from 'zod';
import { parseStudyYaml, StudyFileError, textSchema } from '@federa/shared';
import { BLOB_STORE } from '../app/tokens.js';
import { Caller } from '../auth/caller.decorator.js';
import { Roles, type Principal } from '../auth/roles.js';
import type { BlobStore } from '../blobs/index.js';
import { ApiDoc } from '../openapi/index.js';
import { StudiesService, StudyInputError } from './studies.service.js';
import {
  droppedSiteSchema,
  siteViewsSchema,
  studyDefinitionApiSchema,
  studyDefinitionViewSchema,
  studyEvaluationSchema,
  STUDY_PARAMS,
  studyStatusSchema,
  studySummariesSchema,
} from './studies.api.js';

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
  @ApiDoc({
    summary: 'Define a study (a draft)',
    description: 'The caller owns it: only they change or start it. Sites see it once it runs, and must approve its hash.',
    body: {
      description: 'The study definition, as JSON or as the YAML file `federa study validate` checks.',
      schema: studyDefinitionApiSchema,
      contentTypes: ['application/json', 'application/yaml'],
    },
    responses: { 201: { description: 'The study as GET /studies/{id} shows it.', schema: studyStatusSchema } },
    errors: { 400: 'The definition is invalid (each field named in `issues`), or asks for CKKS without a coordinator kit.' },
  })
  create(@Body() body: unknown, @Caller() caller: Principal) {
    return this.studies.create(definitionOf(body), caller);
  }

  /** Replaces a draft's definition (and so its hash: sites must approve it again). */
  @Put('studies/:id')
  @Roles('researcher')
  @ApiDoc({
    summary: "Replace a draft's definition",
    description: 'Its hash changes, so sites that approved the old definition must approve again.',
    params: STUDY_PARAMS,
    body: { description: 'The new definition, as JSON or YAML.', schema: studyDefinitionApiSchema, contentTypes: ['application/json', 'application/yaml'] },
    responses: { 200: { description: 'The study as GET /studies/{id} shows it.', schema: studyStatusSchema } },
    errors: { 400: 'The definition is invalid, or the study is no longer a draft.', 403: 'The study belongs to another researcher.', 404: 'No such study.' },
  })
  change(@Param('id') id: string, @Body() body: unknown, @Caller() caller: Principal) {
    return this.studies.change(id, definitionOf(body), caller);
  }

  @Get('studies')
  @Roles('researcher', 'auditor', 'admin')
  @ApiDoc({ summary: 'List studies, newest first', responses: { 200: { description: 'Every study.', schema: studySummariesSchema } } })
  list() {
    return this.studies.list();
  }

  @Get('studies/:id')
  @Roles('researcher', 'auditor', 'admin')
  @ApiDoc({
    summary: 'A study with its rounds, sites and refusals',
    params: STUDY_PARAMS,
    responses: { 200: { description: 'The study.', schema: studyStatusSchema } },
    errors: { 404: 'No such study.' },
  })
  status(@Param('id') id: string) {
    return this.studies.status(id);
  }

  /** The definition exactly as sites receive it, with the hash they approve. */
  @Get('studies/:id/definition')
  @Roles('researcher', 'auditor', 'admin')
  @ApiDoc({
    summary: "A study's definition as sites receive it",
    description: 'With the canonical JSON and the hash sites approve.',
    params: STUDY_PARAMS,
    responses: { 200: { description: 'The definition.', schema: studyDefinitionViewSchema } },
    errors: { 404: 'No such study.' },
  })
  definition(@Param('id') id: string) {
    return this.studies.definition(id);
  }

  /** Per round: each contributing site's metrics on its held-out data and the overall figures, with their counts. */
  @Get('studies/:id/evaluation')
  @Roles('researcher', 'auditor', 'admin')
  @ApiDoc({
    summary: "A study's federated evaluation, round by round",
    description: "Per round: each contributing site's metrics on its held-out data and the overall figures, with their counts.",
    params: STUDY_PARAMS,
    responses: { 200: { description: 'The evaluation.', schema: studyEvaluationSchema } },
    errors: { 404: 'No such study.' },
  })
  evaluation(@Param('id') id: string) {
    return this.studies.evaluation(id);
  }

  @Post('studies/:id/start')
  @HttpCode(200)
  @Roles('researcher')
  @ApiDoc({
    summary: 'Start a draft study',
    description: 'Creates the initial model (round 0) and opens round 1.',
    params: STUDY_PARAMS,
    responses: { 200: { description: 'The study as GET /studies/{id} shows it.', schema: studyStatusSchema } },
    errors: { 403: 'The study belongs to another researcher.', 404: 'No such study.', 409: 'The study is not a draft.' },
  })
  start(@Param('id') id: string, @Caller() caller: Principal) {
    return this.studies.start(id, caller);
  }

  @Post('studies/:id/stop')
  @HttpCode(200)
  @Roles('researcher', 'admin')
  @ApiDoc({
    summary: 'Stop a study for good',
    description: 'An open round is abandoned (nothing of it is aggregated) and sites are told.',
    params: STUDY_PARAMS,
    body: { description: 'Why (kept in the audit log).', schema: reasonSchema, required: false },
    responses: { 200: { description: 'The study as GET /studies/{id} shows it.', schema: studyStatusSchema } },
    errors: { 400: 'The reason is invalid.', 403: 'The study belongs to another researcher (its owner or an admin may steer it).', 404: 'No such study.', 409: 'The study has already ended.' },
  })
  stop(@Param('id') id: string, @Body() body: unknown, @Caller() caller: Principal) {
    return this.studies.stop(id, caller, reasonOf(body));
  }

  /** The round in progress finishes; no new round opens until the study is resumed. */
  @Post('studies/:id/pause')
  @HttpCode(200)
  @Roles('researcher', 'admin')
  @ApiDoc({
    summary: 'Pause a running study at the round boundary',
    description: 'The round in progress finishes; no new round opens until the study is resumed.',
    params: STUDY_PARAMS,
    body: { description: 'Why (kept in the audit log).', schema: reasonSchema, required: false },
    responses: { 200: { description: 'The study as GET /studies/{id} shows it.', schema: studyStatusSchema } },
    errors: { 400: 'The reason is invalid.', 403: 'The study belongs to another researcher (its owner or an admin may steer it).', 404: 'No such study.', 409: 'The study is not running.' },
  })
  pause(@Param('id') id: string, @Body() body: unknown, @Caller() caller: Principal) {
    return this.studies.pause(id, caller, reasonOf(body));
  }

  @Post('studies/:id/resume')
  @HttpCode(200)
  @Roles('researcher', 'admin')
  @ApiDoc({
    summary: 'Resume a paused study',
    description: 'Its next round opens as soon as enough sites are connected.',
    params: STUDY_PARAMS,
    body: { description: 'Why (kept in the audit log).', schema: reasonSchema, required: false },
    responses: { 200: { description: 'The study as GET /studies/{id} shows it.', schema: studyStatusSchema } },
    errors: { 400: 'The reason is invalid.', 403: 'The study belongs to another researcher (its owner or an admin may steer it).', 404: 'No such study.', 409: 'The study is not paused.' },
  })
  resume(@Param('id') id: string, @Body() body: unknown, @Caller() caller: Principal) {
    reasonOf(body);
    return this.studies.resume(id, caller);
  }

  /** The site is never assigned again; the round in progress stops waiting for it; it is told the study ended for it. */
  @Post('studies/:id/sites/:siteId/drop')
  @HttpCode(200)
  @Roles('researcher', 'admin')
  @ApiDoc({
    summary: 'Drop a site from a running or paused study',
    description: 'The site is never assigned again; the round in progress stops waiting for it; it is told the study ended for it.',
    params: { ...STUDY_PARAMS, siteId: 'The site to drop.' },
    body: { description: 'Why (kept in the audit log).', schema: reasonSchema, required: false },
    responses: { 200: { description: 'The study, and whether an update the site already sent was counted.', schema: droppedSiteSchema } },
    errors: {
      400: 'The reason or the site id is invalid.',
      403: 'The study belongs to another researcher (its owner or an admin may steer it).',
      404: 'No such study, or the site takes no part in it.',
      409: 'The study is not running or paused, or the site was already dropped.',
    },
  })
  dropSite(@Param('id') id: string, @Param('siteId') siteId: string, @Body() body: unknown, @Caller() caller: Principal) {
    return this.studies.dropSite(id, siteId, caller, reasonOf(body));
  }

  /**
   * The round's published artifact: float32 little-endian weights in the model spec's parameter order, or the
   * encrypted aggregate (x-federa-model-kind says which). The SHA-256 is in a header. Every download is audited.
   */
  @Get('studies/:id/models/:round')
  @Roles('researcher')
  @ApiDoc({
    summary: "Download a round's published model",
    description:
      "Float32 little-endian weights in the model spec's parameter order, or the CKKS-encrypted aggregate only sites can decrypt. " +
      'Every download is audited (HEAD is not).',
    params: { ...STUDY_PARAMS, round: 'The round: 0 is the initial model.' },
    responses: {
      200: {
        description: 'The artifact.',
        contentType: 'application/octet-stream',
        headers: { 'x-federa-sha256': 'SHA-256 of the body.', 'x-federa-model-kind': "'weights', 'encrypted_aggregate' or 'multiparty_aggregate'." },
      },
    },
    errors: { 400: 'The round is not a whole number.', 404: 'No such study, or no model for that round (yet).' },
  })
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
  @ApiDoc({ summary: 'List the sites with their connection and latest dataset summary', responses: { 200: { description: 'Every site.', schema: siteViewsSchema } } })
  sites() {
    return this.studies.sites();
  }
}
