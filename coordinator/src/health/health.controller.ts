import { Controller, Get, Inject, Res } from '@nestjs/common';
import type { Response } from 'express';
import { BLOB_STORE, DATABASE } from '../app/tokens.js';
import { Public } from '../auth/roles.js';
import type { BlobStore } from '../blobs/index.js';
import { ApiDoc } from '../openapi/index.js';
import type { Database } from '../persistence/index.js';
import { livenessViewSchema, readinessViewSchema } from './health.api.js';

export interface LivenessView {
  status: 'ok';
  uptimeSeconds: number;
}

export interface ReadinessView {
  status: 'ok' | 'failing';
  database: 'ok' | string;
  blobStore: 'ok' | string;
}

/**
 * For service managers and load balancers, split the usual way. Liveness (/health) says only that the process
 * answers, touching nothing, so a database outage does not get a healthy process restarted (rounds wait outages
 * out by themselves). Readiness (/ready) says whether the coordinator can do its work now: the database answers
 * and the blob store takes a write (a read-only or full disk stops rounds). Neither says anything else, so both can
 * be open.
 */
@Controller('api/v1')
export class HealthController {
  constructor(
    @Inject(DATABASE) private readonly db: Database,
    @Inject(BLOB_STORE) private readonly blobs: BlobStore,
  ) {}

  @Get('health')
  @Public()
  @ApiDoc({
    summary: 'Liveness: the process answers',
    description: 'Always 200 while the coordinator serves requests; checks nothing else (see /api/v1/ready for that).',
    responses: { 200: { description: 'The process is alive.', schema: livenessViewSchema } },
  })
  health(): LivenessView {
    return { status: 'ok', uptimeSeconds: Math.round(process.uptime()) };
  }

  @Get('ready')
  @Public()
  @ApiDoc({
    summary: 'Readiness: the database answers and the blob store takes a write',
    description: 'For load balancers and service managers: 200 when the coordinator can run rounds now, 503 saying what is wrong otherwise.',
    responses: {
      200: { description: 'Ready.', schema: readinessViewSchema },
      503: { description: 'Not ready: the same body, saying what is wrong.', schema: readinessViewSchema },
    },
  })
  async ready(@Res() res: Response): Promise<void> {
    const [database, blobStore] = await Promise.all([
      this.db.prisma.$queryRawUnsafe('SELECT 1').then(
        () => 'ok' as const,
        (error: unknown) => `database does not answer: ${(error as Error).message.split('\n')[0]}`,
      ),
      this.blobs.checkWritable().then(
        () => 'ok' as const,
        (error: unknown) => `blob store is not writable: ${(error as Error).message}`,
      ),
    ]);
    const ok = database === 'ok' && blobStore === 'ok';
    const view: ReadinessView = { status: ok ? 'ok' : 'failing', database, blobStore };
    res.status(ok ? 200 : 503).json(view);
  }
}
