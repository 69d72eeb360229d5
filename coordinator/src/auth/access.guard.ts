import { ForbiddenException, Inject, Injectable, UnauthorizedException, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request } from 'express';
import { createLogger } from '@federa/shared';
import { AuditLog } from '../audit/audit-log.js';
import { ACCESS_METADATA, type Principal, type RouteAccess } from './roles.js';
import { Tokens } from './tokens.js';

export interface AuthenticatedRequest extends Request {
  principal?: Principal;
}

const AUTH_HINT =
  'send "Authorization: Bearer <token>"; an admin issues tokens (POST /api/v1/tokens), and the first admin token comes from `federa token create --role admin`';

/**
 * Default deny for REST: a route without a declaration is refused, a public route passes, every other route needs
 * a valid bearer token whose role the route names. 401 for missing or bad credentials, 403 for the wrong role; each
 * refusal is an audit record.
 */
@Injectable()
export class AccessGuard implements CanActivate {
  private readonly log = createLogger('access');

  constructor(
    @Inject(Reflector) private readonly reflector: Reflector,
    @Inject(Tokens) private readonly tokens: Tokens,
    @Inject(AuditLog) private readonly audit: AuditLog,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    if (context.getType() !== 'http') return true;
    const access = this.reflector.getAllAndOverride<RouteAccess | undefined>(ACCESS_METADATA, [context.getHandler(), context.getClass()]);
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    const route = routeOf(request);
    if (access === undefined) {
      this.log.error({ route }, 'refused a request to a route that declares no roles');
      await this.refuse(request, 403, 'anonymous', 'route declares no roles', null);
      throw new ForbiddenException('this route declares no roles, so nobody may call it');
    }
    if (access === 'public') return true;

    const header = request.headers.authorization;
    if (header === undefined) {
      await this.refuse(request, 401, 'anonymous', 'no credentials', null);
      throw new UnauthorizedException(`authentication required: ${AUTH_HINT}`);
    }
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match?.[1]) {
      await this.refuse(request, 401, 'anonymous', 'malformed Authorization header', null);
      throw new UnauthorizedException(`the Authorization header is not "Bearer <token>": ${AUTH_HINT}`);
    }
    const result = await this.tokens.authenticate(match[1]);
    if (!result.ok) {
      await this.refuse(request, 401, result.tokenId ? `token:${result.tokenId}` : 'anonymous', result.reason, result.tokenId);
      throw new UnauthorizedException('the token is invalid, expired or revoked: ask an admin for a new one');
    }
    const { principal } = result;
    if (!access.includes(principal.role)) {
      await this.refuse(request, 403, principal.actor, `role ${principal.role} is not one of ${access.join(', ')}`, principal.tokenId);
      throw new ForbiddenException(`a ${principal.role} token may not call ${route}; this route is for ${access.join(' or ')}`);
    }
    request.principal = principal;
    return true;
  }

  private async refuse(request: Request, status: 401 | 403, actor: string, reason: string, tokenId: string | null): Promise<void> {
    try {
      await this.audit.append({
        kind: 'token.refused',
        actor,
        details: { status, route: routeOf(request), reason, tokenId, ip: request.ip ?? null },
      });
    } catch (error) {
      // The refusal stands even when it cannot be recorded; the log says so.
      this.log.error({ err: error }, 'could not audit a refused request');
    }
  }
}

/** "GET /api/v1/studies/:id": the route pattern, not the raw URL (bounded, and free of whatever a caller typed). */
function routeOf(request: Request): string {
  const pattern = (request.route as { path?: unknown } | undefined)?.path;
  const path = typeof pattern === 'string' ? pattern : request.path.slice(0, 200);
  return `${request.method} ${path}`;
}
