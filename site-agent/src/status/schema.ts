import { isIP } from 'node:net';
import { z } from 'zod';

/** Loopback: reachable from this machine only (localhost, 127.0.0.0/8, ::1). */
export function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1' || host === '[::1]') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}

/**
 * The optional status endpoint (`status:` in site.yaml): GET /health and GET /metrics for the hospital's monitoring.
 * It has no authentication, so it binds to loopback unless the hospital says otherwise with `allowRemote: true`
 * (then its firewall decides who reaches it).
 */
export const statusConfigSchema = z
  .object({
    port: z.int().min(1).max(65_535),
    host: z.string().min(1).default('127.0.0.1'),
    /** Serve on a non-loopback address: the endpoint has no authentication, so only where the network is trusted. */
    allowRemote: z.boolean().default(false),
  })
  .strict()
  .superRefine((status, ctx) => {
    if (!status.allowRemote && !isLoopback(status.host)) {
      ctx.addIssue({
        code: 'custom',
        path: ['host'],
        message: `${status.host} is not a loopback address; the status endpoint has no authentication, so set allowRemote: true to serve it beyond this machine`,
      });
    }
  });

export type StatusConfig = z.output<typeof statusConfigSchema>;
