import { join } from 'node:path';
import {
  generateConsortiumCkksKeys,
  parseCoordinatorConfig,
  provisionConsortium,
  startCoordinator,
  type RunningCoordinator,
} from '@federa/coordinator';

/**
 * A provisioned consortium (real CA and CKKS key set, kits under `dir/kits`) and a coordinator running from its
 * kit over mutual TLS, on free loopback ports. `names` replaces the coordinator certificate's names (DNS localhost
 * and IP 127.0.0.1 by default), e.g. to test a certificate that does not name the address sites use.
 */
export async function startProvisionedCoordinator(
  dir: string,
  siteIds: string[],
  names: { hostnames: string[]; ips: string[] } = { hostnames: ['localhost'], ips: ['127.0.0.1'] },
  /** PostgreSQL instead of the embedded database. */
  databaseUrl?: string,
): Promise<{ kits: string; coordinator: RunningCoordinator }> {
  const kits = join(dir, 'kits');
  await provisionConsortium({
    config: {
      consortium: { name: 'test consortium' },
      coordinator: names,
      sites: siteIds.map((id) => ({ id })),
    },
    outDir: kits,
    generateCkksKeys: generateConsortiumCkksKeys,
  });
  const coordinator = await startCoordinator(
    parseCoordinatorConfig({ kitDir: join(kits, 'coordinator'), httpPort: 0, grpcPort: 0, dataDir: join(dir, 'coordinator'), ...(databaseUrl ? { databaseUrl } : {}) }),
  );
  return { kits, coordinator };
}
