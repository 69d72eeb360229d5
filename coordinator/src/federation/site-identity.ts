import type { Metadata } from '@grpc/grpc-js';
import { siteIdSchema } from '@federa/shared';
import { FederationError, GrpcStatus } from './federation-error.js';

export const SITE_ID_METADATA = 'x-federa-site-id';

/**
 * Who is calling. Under mutual TLS this is the site certificate's identity; in the explicit insecure
 * development mode the site names itself in metadata, which is why that mode is never the default.
 */
export function siteIdFromMetadata(metadata: Metadata): string {
  const values = metadata.get(SITE_ID_METADATA);
  const raw = values.length === 1 ? values[0] : undefined;
  if (typeof raw !== 'string') {
    throw new FederationError(
      GrpcStatus.UNAUTHENTICATED,
      `call carries no site identity: send exactly one "${SITE_ID_METADATA}" metadata value`,
    );
  }
  const parsed = siteIdSchema.safeParse(raw);
  if (!parsed.success) {
    throw new FederationError(GrpcStatus.UNAUTHENTICATED, `"${SITE_ID_METADATA}" is not a valid site id: ${parsed.error.issues[0]?.message}`);
  }
  return parsed.data;
}
