import { createParamDecorator, InternalServerErrorException, type ExecutionContext } from '@nestjs/common';
import type { AuthenticatedRequest } from './access.guard.js';
import type { Principal } from './roles.js';

/** The authenticated caller of a route with declared roles (set by AccessGuard). */
export const Caller = createParamDecorator((_data: unknown, context: ExecutionContext): Principal => {
  const principal = context.switchToHttp().getRequest<AuthenticatedRequest>().principal;
  // Only reachable on a public route by mistake: fail closed rather than act for nobody.
  if (!principal) throw new InternalServerErrorException('route has no authenticated caller');
  return principal;
});
