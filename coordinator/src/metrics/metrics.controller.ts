import { Controller, Get, Inject, Res } from '@nestjs/common';
import type { Response } from 'express';
import { Roles } from '../auth/roles.js';
import { ApiDoc } from '../openapi/index.js';
import { CoordinatorMetrics } from './coordinator-metrics.js';

/**
 * Prometheus scrapes here (at /metrics, where it looks by default). Not public: round counts and timings, upload
 * refusals and studies by status show what the consortium is doing, so it takes a bearer token like the rest of the
 * API (Prometheus sends one with `authorization: { credentials_file: ... }`). Admin, or auditor for a read-only
 * monitoring token.
 */
@Controller()
export class MetricsController {
  constructor(@Inject(CoordinatorMetrics) private readonly metrics: CoordinatorMetrics) {}

  @Get('metrics')
  @Roles('admin', 'auditor')
  @ApiDoc({
    summary: 'Prometheus metrics',
    description:
      'Process metrics and Federa\'s: federa_rounds_total{outcome}, federa_round_phase_seconds{phase}, federa_uploads_total{outcome,reason}, ' +
      'federa_upload_bytes_received_total, federa_site_refusals_total{task,reason}, federa_site_round_failures_total{reason}, ' +
      'federa_connected_sites, federa_studies{status}.',
    responses: { 200: { description: 'The Prometheus text exposition format.', contentType: 'text/plain; version=0.0.4' } },
  })
  async scrape(@Res() res: Response): Promise<void> {
    const { contentType, body } = await this.metrics.scrape();
    res.status(200).type(contentType).send(body);
  }
}
