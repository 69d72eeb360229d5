import { SetMetadata, type CustomDecorator } from '@nestjs/common';
import type { z } from 'zod';

export const API_DOC_METADATA = 'federa:api-doc';

/** A response (or request) body: JSON described by a zod schema, or text/bytes of another content type. */
export interface ApiContent {
  description: string;
  /** application/json unless said otherwise. */
  contentType?: string;
  /** What the JSON holds: the schema the handler validates with, or the one its `*.api.ts` gives its result. */
  schema?: z.ZodType;
  /** Response headers the handler sets, each with what it says. */
  headers?: Record<string, string>;
}

export interface ApiBodyDoc {
  description: string;
  /** The schema the handler validates the body with; omitted for a body that is not JSON. */
  schema?: z.ZodType;
  /** application/json unless said otherwise; several when the handler reads more than one. */
  contentTypes?: string[];
  /** False when the handler takes no body as well as one. */
  required?: boolean;
}

/** Statuses a handler (not the guard) answers with the error body, beyond 401/403/429, which every route documents. */
export type ErrorStatus = 400 | 403 | 404 | 409 | 413 | 415 | 429 | 503;

export interface ApiDocOptions {
  summary: string;
  description?: string;
  /** Path parameters by name, with what each is (every `:name` in the path is documented, described or not). */
  params?: Record<string, string>;
  /** The schema the handler validates its query string with. */
  query?: z.ZodObject;
  body?: ApiBodyDoc;
  /** Responses by status: the successes, and any refusal whose body is not the error body. */
  responses: Record<number, ApiContent>;
  /** Refusals by status, each with when it happens; all carry the error body. */
  errors?: Partial<Record<ErrorStatus, string>>;
}

/**
 * Documents a route in the OpenAPI document at /api/docs. Who may call it is not written here: the document takes
 * it from the route's `@Roles(...)` or `@Public()` (description, `x-federa-roles`, bearer security, 401/403).
 */
export function ApiDoc(options: ApiDocOptions): CustomDecorator<string> {
  return SetMetadata(API_DOC_METADATA, options);
}
