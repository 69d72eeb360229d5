import { credentials, type ChannelCredentials } from '@grpc/grpc-js';
import { createLogger, KitError, readSiteKit, type SiteKit } from '@federa/shared';
import type { SiteConfig } from '../config/index.js';

export class SiteKitError extends Error {
  override readonly name = 'SiteKitError';
}

export interface SiteTransport {
  credentials: ChannelCredentials;
  /** Set in the insecure development mode only. */
  declaredSiteId?: string;
  kit?: SiteKit;
}

/**
 * The site's side of mutual TLS: it presents its certificate and accepts only a coordinator whose certificate
 * chains to the consortium CA in its kit (grpc-js also checks the address against the certificate's names).
 */
export async function siteTransport(config: SiteConfig): Promise<SiteTransport> {
  const log = createLogger('site-agent').child({ siteId: config.site.id });
  if (!config.coordinator.kit) {
    log.warn('connecting WITHOUT TLS (insecure development mode): the coordinator is not authenticated');
    return { credentials: credentials.createInsecure(), declaredSiteId: config.site.id };
  }
  let kit: SiteKit;
  try {
    kit = await readSiteKit(config.coordinator.kit);
  } catch (error) {
    if (error instanceof KitError) throw new SiteKitError(`site kit ${config.coordinator.kit}: ${error.message}`);
    throw error;
  }
  if (kit.siteId !== config.site.id) {
    throw new SiteKitError(
      `site kit ${config.coordinator.kit} belongs to site "${kit.siteId}" but the config says site.id "${config.site.id}"`,
    );
  }
  for (const warning of kit.warnings) log.warn({ kit: config.coordinator.kit }, warning);
  return {
    credentials: credentials.createSsl(Buffer.from(kit.caPem), Buffer.from(kit.privateKeyPem), Buffer.from(kit.certificatePem)),
    kit,
  };
}
