import { Controller, Get, Inject, Query } from '@nestjs/common';
import { z } from 'zod';
import { describeIssues, STUDY_ID } from '@federa/shared';
import { Roles } from '../auth/roles.js';
import { InputError } from '../http/input-error.js';
import { ApiDoc } from '../openapi/index.js';
import { StudiesService } from '../studies/studies.service.js';
import { SiteActivityService, type SiteActivity } from './site-activity.js';
import { siteActivitySchema } from './sites.api.js';

const activityQuerySchema = z.object({ studyId: z.string().regex(STUDY_ID, 'must be a study id').optional() }).strict();

/** Read-only site health figures for the dashboard and operators; GET /sites itself stays in the studies controller. */
@Controller('api/v1')
export class SitesController {
  constructor(
    @Inject(SiteActivityService) private readonly activity: SiteActivityService,
    @Inject(StudiesService) private readonly studies: StudiesService,
  ) {}

  /** Per site: rounds assigned, updates and bytes sent, time from round open to update, refusals and failures. */
  @Get('sites/activity')
  @Roles('admin', 'researcher', 'auditor')
  @ApiDoc({
    summary: "What each site did in rounds: updates, bytes, round times, refusals, failures",
    description:
      'Per site: rounds assigned, accepted updates and their bytes, seconds from a round opening to the update arriving ' +
      '(mean, median, slowest, last), and the count and latest of its refusals and round failures. Every registered ' +
      'site, or with studyId only the sites that took part in that study.',
    query: activityQuerySchema,
    responses: { 200: { description: 'The figures per site.', schema: siteActivitySchema } },
    errors: { 400: 'A query parameter that is not allowed or not well formed.', 404: 'No such study.' },
  })
  async siteActivity(@Query() query: Record<string, unknown>): Promise<SiteActivity> {
    const parsed = activityQuerySchema.safeParse(query);
    if (!parsed.success) throw new InputError('invalid site activity query', describeIssues(parsed.error));
    const studyId = parsed.data.studyId ?? null;
    // An unknown study is a 404, not an empty answer that looks like a study nobody took part in.
    if (studyId !== null) await this.studies.definition(studyId);
    return this.activity.activity(studyId);
  }
}
