import type { INestApplication } from '@nestjs/common';
import { METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants.js';
import { RequestMethod } from '@nestjs/common';
import { ACCESS_METADATA, type RouteAccess } from './roles.js';

export interface RouteDescription {
  method: string;
  /** Express pattern, e.g. /api/v1/studies/:id. */
  path: string;
  /** Null: the route declares nothing (the guard refuses it; the route table test fails on it). */
  access: RouteAccess | null;
}

/** A route as its controller declares it, with the handler (whose metadata the API document reads). */
export interface DeclaredRoute extends RouteDescription {
  handler: (...args: never[]) => unknown;
}

type ControllerClass = new (...args: never[]) => unknown;

interface ExpressLayer {
  route?: { path: string; methods: Record<string, boolean> };
}

/**
 * Every handler of these controllers with its method, path and declared access (the handler's, else the class's).
 * The one reading of `@Roles`/`@Public`: the route table and the API document both take access from here.
 */
export function declaredRoutes(controllers: ReadonlyArray<ControllerClass>): DeclaredRoute[] {
  const routes: DeclaredRoute[] = [];
  for (const controller of controllers) {
    const base = normalise(String(Reflect.getMetadata(PATH_METADATA, controller) ?? ''));
    const classAccess = Reflect.getMetadata(ACCESS_METADATA, controller) as RouteAccess | undefined;
    for (const name of Object.getOwnPropertyNames(controller.prototype)) {
      const handler = (controller.prototype as Record<string, unknown>)[name];
      if (typeof handler !== 'function' || name === 'constructor') continue;
      const path = Reflect.getMetadata(PATH_METADATA, handler) as string | undefined;
      const method = Reflect.getMetadata(METHOD_METADATA, handler) as RequestMethod | undefined;
      if (path === undefined || method === undefined) continue;
      const access = (Reflect.getMetadata(ACCESS_METADATA, handler) as RouteAccess | undefined) ?? classAccess ?? null;
      routes.push({ method: RequestMethod[method], path: normalise(`${base}/${path}`), access, handler: handler as DeclaredRoute['handler'] });
    }
  }
  return routes;
}

/**
 * Every route the HTTP server actually serves (read from Express's router), each with the access its handler
 * declares. What the role matrix test runs through, so a route added anywhere is covered without listing it.
 */
export function routeTable(app: INestApplication, controllers: ReadonlyArray<ControllerClass>): RouteDescription[] {
  const declared = new Map(declaredRoutes(controllers).map((route) => [`${route.method} ${route.path}`, route.access]));
  const express = app.getHttpAdapter().getInstance() as { router: { stack: ExpressLayer[] } };
  const routes: RouteDescription[] = [];
  for (const layer of express.router.stack) {
    if (!layer.route) continue;
    for (const [method, on] of Object.entries(layer.route.methods)) {
      if (!on || method === '_all') continue;
      const upper = method.toUpperCase();
      routes.push({ method: upper, path: layer.route.path, access: declared.get(`${upper} ${normalise(layer.route.path)}`) ?? null });
    }
  }
  return routes;
}

function normalise(path: string): string {
  return `/${path.split('/').filter((part) => part.length > 0).join('/')}`;
}
