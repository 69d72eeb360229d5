import { Body, Controller, Get, HttpCode, Inject, Param, Post, Res } from '@nestjs/common';
import type { Response } from 'express';
import { BLOB_STORE } from '../app/tokens.js';
import type { BlobStore } from '../blobs/index.js';
import { StudiesService, StudyInputError } from './studies.service.js';

/** REST for researchers: define, start and watch studies, fetch plaintext global models. */
@Controller('api/v1')
export class StudiesController {
  constructor(
    @Inject(StudiesService) private readonly studies: StudiesService,
    @Inject(BLOB_STORE) private readonly blobs: BlobStore,
  ) {}

  @Post('studies')
  create(@Body() body: unknown) {
    return this.studies.create(body);
  }

  @Get('studies')
  list() {
    return this.studies.list();
  }

  @Get('studies/:id')
  status(@Param('id') id: string) {
    return this.studies.status(id);
  }

  /** Per round: each contributing site's metrics on its held-out data and the overall figures, with their counts. */
  @Get('studies/:id/evaluation')
  evaluation(@Param('id') id: string) {
    return this.studies.evaluation(id);
  }

  @Post('studies/:id/start')
  @HttpCode(200)
  start(@Param('id') id: string) {
    return this.studies.start(id);
  }

  /**
   * The round's published artifact: float32 little-endian weights in the model spec's parameter order, or the
   * encrypted aggregate (x-federa-model-kind says which). The SHA-256 is in a header.
   */
  @Get('studies/:id/models/:round')
  async model(@Param('id') id: string, @Param('round') roundText: string, @Res() res: Response): Promise<void> {
    const round = Number(roundText);
    if (!Number.isInteger(round) || round < 0) throw new StudyInputError([`round: must be a whole number >= 0, got "${roundText}"`]);
    const { sha256, kind } = await this.studies.modelBlob(id, round);
    const bytes = await this.blobs.get(sha256);
    res.setHeader('content-type', 'application/octet-stream');
    res.setHeader('x-federa-sha256', sha256);
    res.setHeader('x-federa-model-kind', kind);
    res.send(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }

  @Get('sites')
  sites() {
    return this.studies.sites();
  }

  @Get('health')
  health() {
    return { status: 'ok' };
  }
}
