import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Controller, Get, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { createLogger } from '@federa/shared';
import { Public } from '../auth/roles.js';
import { ApiDoc } from '../openapi/index.js';
import { dashboardBuilt, dashboardFile, dashboardRoots, type DashboardRoots } from './dashboard-assets.js';

const log = createLogger('dashboard');

/**
 * The web dashboard: a page and its static files, public because they hold no data (every data call the page makes
 * carries the user's bearer token and is checked like any other API call). Everything is served from this origin,
 * as files, so it runs under the strict content security policy helmet sets: no inline script, no CDN.
 */
@Controller()
export class DashboardController {
  private readonly roots: DashboardRoots = dashboardRoots();

  @Get()
  @Public()
  @ApiDoc({
    summary: 'The web dashboard',
    description: 'The page holds no data: it asks for an API token and calls this API with it.',
    responses: {
      200: { description: 'The dashboard page.', contentType: 'text/html' },
      503: { description: 'The dashboard was not built (npm run build).', contentType: 'text/plain' },
    },
  })
  async index(@Res() res: Response): Promise<void> {
    if (!dashboardBuilt(this.roots)) {
      res.status(503).type('text/plain').send('The dashboard is not built: run `npm run build` (tsc -b compiles coordinator/web).\n');
      return;
    }
    await this.send(res, join(this.roots.static, 'index.html'));
  }

  @Get('dashboard/*path')
  @Public()
  @ApiDoc({
    summary: "The dashboard's scripts and style sheets",
    params: { path: 'app/<module>.js, vendor/uPlot.iife.min.js or uPlot.min.css, or <name>.css' },
    responses: { 200: { description: 'The file (JavaScript or CSS).', contentType: 'text/javascript' } },
    errors: { 404: 'No such dashboard file.' },
  })
  async asset(@Req() req: Request, @Res() res: Response): Promise<void> {
    const file = dashboardFile(this.roots, req.path.replace(/^\/dashboard\//, ''));
    if (file === null) {
      res.status(404).json({ error: `no dashboard file ${req.path.slice(0, 120)}` });
      return;
    }
    await this.send(res, file);
  }

  private async send(res: Response, file: string): Promise<void> {
    const found = await stat(file).then((s) => s.isFile(), () => false);
    if (!found) {
      res.status(404).json({ error: 'no such dashboard file' });
      return;
    }
    // Revalidated on every load (ETag), so an upgraded coordinator never runs a stale mix of old and new modules.
    res.setHeader('cache-control', 'no-cache');
    await new Promise<void>((resolve) => {
      res.sendFile(file, { dotfiles: 'deny' }, (error: Error | undefined) => {
        if (error && !res.headersSent) res.status(500).json({ error: 'could not read a dashboard file' });
        if (error) log.warn({ err: error, file }, 'could not send a dashboard file');
        resolve();
      });
    });
  }
}
