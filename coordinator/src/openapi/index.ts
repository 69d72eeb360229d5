import type { INestApplication } from '@nestjs/common';
import { OpenApiController } from './docs.controller.js';
import { buildOpenApiDocument, type ControllerClass } from './document.js';

export { ApiDoc, type ApiBodyDoc, type ApiContent, type ApiDocOptions, type ErrorStatus } from './api-doc.js';
export { apiSchema } from './schemas.js';
export { OpenApiController };

/**
 * Builds the OpenAPI document of these controllers and serves it (with Swagger UI) at /api/docs. Call before the
 * server listens; `controllers` must include OpenApiController.
 */
export function serveOpenApi(app: INestApplication, controllers: ReadonlyArray<ControllerClass>): void {
  app.get(OpenApiController).publish(buildOpenApiDocument(app, controllers));
}

/**
 * True when A and B are the same shape (each assignable to the other): `Expect<SameShape<z.output<typeof s>, View>>`
 * in an `*.api.ts` file makes a schema that drifts from what its handler returns a type error.
 */
export type SameShape<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
export type Expect<T extends true> = T;
