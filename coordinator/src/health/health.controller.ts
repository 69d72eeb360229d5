import { Controller, Get, Inject, Res } from '@nestjs/common';
import type { Response } from 'express';
import { BLOB_STORE, DATABASE } from '../app/tokens.js';
import { Public } from '../auth/roles.js';
import type { BlobStore } from '../blobs/index.js';
import { ApiDoc } from '../openapi/index.js';
import type { Database } from '../persistence/index.js';
import { healthViewSchema } from './health.api.js';

export interface HealthView {
  status: 'ok' | 'failing';
  database: 'ok' | string;
  blobStore: 'ok' | string;
}

/**
 * For load balancers and service managers: 200 only when the database answers and the blob store takes a write
 * (a read-only or full disk stops rounds), 503 with what is wrong otherwise. Says nothing else, so it can be open.
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
    summary: 'Health check for load balancers',
    description: 'Ok only when the database answers and the blob store takes a write.',
    responses: {
      200: { description: 'Healthy.', schema: healthViewSchema },
      503: { description: 'Unhealthy: the same body, saying what is wrong.', schema: healthViewSchema },
    },
  })
  async health(@Res() res: Response): Promise<void> {
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
    const view: HealthView = { status: ok ? 'ok' : 'failing', database, blobStore };
    res.status(ok ? 200 : 503).json(view);
  }
}
