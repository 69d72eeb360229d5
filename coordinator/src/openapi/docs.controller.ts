import { Controller, Get, Header, NotFoundException, Param, Res, ServiceUnavailableException } from '@nestjs/common';
import type { OpenAPIObject } from '@nestjs/swagger';
import type { Response } from 'express';
import { z } from 'zod';
import { Public } from '../auth/roles.js';
import { ApiDoc } from './api-doc.js';
import { DOCS_ASSET_NAMES, docsAsset, SWAGGER_PAGE } from './swagger-ui.js';

const openApiDocumentSchema = z.looseObject({
  openapi: z.string(),
  info: z.looseObject({ title: z.string(), version: z.string() }),
  paths: z.record(z.string(), z.unknown()),
  components: z.record(z.string(), z.unknown()),
});

/**
 * The API's own description: Swagger UI and the OpenAPI document. Public, since a description of the API is not a
 * secret (every operation in it still says who may call it), and declared like every route, so the guard and the
 * route table treat it like any other.
 */
@Controller('api/docs')
export class OpenApiController {
  private document: OpenAPIObject | null = null;

  /** Called once at start-up (serveOpenApi), before the server listens. */
  publish(document: OpenAPIObject): void {
    this.document = document;
  }

  @Get()
  @Public()
  @Header('content-type', 'text/html; charset=utf-8')
  @ApiDoc({
    summary: 'This API in Swagger UI',
    description: 'Served with its scripts from this coordinator (no CDN). "Authorize" takes a bearer token for "Try it out".',
    responses: { 200: { description: 'The Swagger UI page.', contentType: 'text/html' } },
  })
  page(): string {
    return SWAGGER_PAGE;
  }

  @Get('openapi.json')
  @Public()
  @ApiDoc({
    summary: 'This API as an OpenAPI 3 document',
    description: 'Built from the code at start-up: routes, their roles and the zod schemas the handlers validate with.',
    responses: { 200: { description: 'The OpenAPI document.', schema: openApiDocumentSchema } },
    errors: { 503: 'The coordinator is still starting.' },
  })
  openapi(): OpenAPIObject {
    if (!this.document) throw new ServiceUnavailableException('the API document is not built yet');
    return this.document;
  }

  @Get('assets/:file')
  @Public()
  @ApiDoc({
    summary: 'A script, style sheet or icon of the Swagger UI page',
    params: { file: `One of ${DOCS_ASSET_NAMES.join(', ')}.` },
    responses: { 200: { description: 'The file.', contentType: 'text/javascript' } },
    errors: { 404: 'Not a file the page uses.' },
  })
  asset(@Param('file') file: string, @Res() res: Response): void {
    const asset = docsAsset(file);
    if (!asset) throw new NotFoundException(`the docs page has no asset ${JSON.stringify(file.slice(0, 80))}`);
    res.setHeader('content-type', asset.contentType);
    res.setHeader('cache-control', 'public, max-age=3600');
    res.send(asset.body);
  }
}
