import { SetMetadata, type CustomDecorator } from '@nestjs/common';

export const ROLES = ['admin', 'researcher', 'auditor'] as const;
export type Role = (typeof ROLES)[number];

/** Metadata key of a route's declared access: a list of roles, or 'public'. */
export const ACCESS_METADATA = 'federa:access';
export type RouteAccess = readonly Role[] | 'public';

/**
 * Who may call a route. Every route declares this (or `@Public()`); the guard refuses a route that does not, and
 * a test lists the router's routes and fails on any without a declaration, so a new route cannot ship open.
 */
export function Roles(...roles: [Role, ...Role[]]): CustomDecorator<string> {
  return SetMetadata(ACCESS_METADATA, roles);
}

/** A route anyone may call without credentials (the health check). */
export function Public(): CustomDecorator<string> {
  return SetMetadata(ACCESS_METADATA, 'public');
}

/** Who is calling, once the guard has checked the bearer token. */
export interface Principal {
  tokenId: string;
  name: string;
  role: Role;
  /** `token:<id>`, the audit log's actor. */
  actor: string;
}
