import { Catch, HttpException, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import type { Response } from 'express';
import { createLogger, ReconcileError } from '@federa/shared';
import { TokenError } from '../auth/tokens.js';
import { FederationError, GrpcStatus } from '../federation/federation-error.js';
import { SettingsInputError } from '../settings/settings.js';
import { StudyAccessError, StudyInputError, StudyNotFoundError } from '../studies/studies.service.js';
import type { ErrorBody } from './error-body.js';
import { InputError } from './input-error.js';

/**
 * Turns domain errors into HTTP answers with a body that says what was wrong and where:
 * `{ "error": "...", "issues": ["field.path: message", ...] }`. Anything unexpected is a logged 500.
 */
@Catch()
export class HttpErrorFilter implements ExceptionFilter {
  private readonly log = createLogger('http');

  catch(exception: unknown, host: ArgumentsHost): void {
    const response = host.switchToHttp().getResponse<Response>();
    const [status, body] = this.describe(exception);
    if (status >= 500) this.log.error({ err: exception }, 'request failed');
    if (status === 401) response.setHeader('www-authenticate', 'Bearer realm="federa"');
    response.status(status).json(body);
  }

  private describe(exception: unknown): [number, ErrorBody] {
    if (exception instanceof StudyInputError) return [400, { error: 'invalid study definition', issues: exception.issues }];
    if (exception instanceof InputError) return [400, { error: exception.summary, issues: exception.issues }];
    if (exception instanceof ReconcileError) return [400, { error: `the ledger cannot be reconciled: ${exception.message}` }];
    if (exception instanceof SettingsInputError) return [400, { error: 'invalid settings', issues: exception.issues }];
    if (exception instanceof StudyNotFoundError) return [404, { error: exception.message }];
    if (exception instanceof StudyAccessError) return [403, { error: exception.message }];
    if (exception instanceof TokenError) return [exception.status, { error: exception.message }];
    if (exception instanceof FederationError) {
      const status =
        exception.code === GrpcStatus.NOT_FOUND
          ? 404
          : exception.code === GrpcStatus.FAILED_PRECONDITION || exception.code === GrpcStatus.ALREADY_EXISTS
            ? 409
            : 400;
      return [status, { error: exception.message }];
    }
    if (exception instanceof HttpException) {
      const payload = exception.getResponse();
      const message =
        typeof payload === 'string'
          ? payload
          : typeof (payload as { message?: unknown }).message === 'string'
            ? ((payload as { message: string }).message)
            : exception.message;
      return [exception.getStatus(), { error: message }];
    }
    // Body-parser errors (bad JSON, too large) carry their HTTP status.
    const status = (exception as { status?: unknown; type?: unknown } | null)?.status;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      return [status, { error: status === 413 ? 'request body too large' : `malformed request body: ${(exception as Error).message}` }];
    }
    return [500, { error: 'internal error; see the coordinator log' }];
  }
}
