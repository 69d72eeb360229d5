import { isIP } from 'node:net';
import { makeClientConstructor, status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import type { SiteConfig } from '../config/index.js';
import { CoordinatorRefusal, FederationClient, siteTransport, type SiteTransport } from '../client/index.js';
import { describeNames, probeCoordinatorTls, splitAddress, type CertificateNames, type TlsProbe } from './tls-probe.js';
import type { DoctorCheck } from './types.js';

/**
 * The coordinator's three checks share one transport and one TLS probe: whether its certificate names the address
 * (or serverName), whether it serves the federation service, and whether it still accepts this site's certificate.
 */
export async function checkCoordinatorAll(config: SiteConfig): Promise<DoctorCheck[]> {
  let transport: SiteTransport;
  try {
    transport = await siteTransport(config);
  } catch (error) {
    const hint = 'fix the site kit first';
    return [
      { name: 'coordinator certificate', ok: false, detail: (error as Error).message, hint },
      { name: 'coordinator', ok: false, detail: 'not checked: the site kit cannot be used', hint },
      { name: 'revocation', ok: false, detail: 'not checked: the site kit cannot be used', hint },
    ];
  }
  const probe = transport.kit ? await probeCoordinatorTls(config.coordinator.address, transport.kit, config.coordinator.serverName) : null;
  return [checkCoordinatorName(config, probe), await checkCoordinator(config, transport, probe), await checkRevocation(config, transport, probe)];
}

/** What to change in site.yaml when the certificate does not name what the agent checks it against. */
export function serverNameFix(config: SiteConfig, names: CertificateNames): string {
  const { host } = splitAddress(config.coordinator.address);
  if (names.dns.length > 0) {
    const others = names.dns.length > 1 ? ` (or another name it holds: ${names.dns.slice(1).join(', ')})` : '';
    return `set coordinator.serverName: ${names.dns[0]} in site.yaml${others}; the address can stay ${host}`;
  }
  return `the certificate holds no DNS name: set coordinator.address to one of its IPs (${names.ips.join(', ')}), or ask the consortium operator for \`federa provision renew coordinator --ip ${host}\``;
}

export function checkCoordinatorName(config: SiteConfig, probe: TlsProbe | null): DoctorCheck {
  const name = 'coordinator certificate';
  if (!probe) return { name, ok: true, detail: 'not checked: insecure development mode (no TLS)' };
  if (probe.kind === 'unreachable') {
    return { name, ok: true, warning: true, detail: `not checked: ${probe.message}`, hint: 'see the coordinator check' };
  }
  if (probe.kind === 'tls-failed') {
    return {
      name,
      ok: false,
      detail: `TLS with ${config.coordinator.address} failed: ${probe.message}`,
      hint: probe.untrusted
        ? 'the server at coordinator.address is not this consortium\'s coordinator, or the kit is from another consortium: check the address, and ask the consortium operator'
        : 'check that coordinator.address is the coordinator\'s gRPC port and that the coordinator runs with its kit (not --insecure)',
    };
  }
  const holds = describeNames(probe.names);
  if (probe.nameError === null) {
    return { name, ok: true, detail: `issued by the consortium CA, names ${probe.expected} (it holds ${holds})` };
  }
  const { host } = splitAddress(config.coordinator.address);
  const what = config.coordinator.serverName ? `coordinator.serverName ${probe.expected}` : isIP(host) ? `the IP address ${host}` : `the host ${host}`;
  return { name, ok: false, detail: `the coordinator's certificate does not name ${what}; it holds ${holds}`, hint: serverNameFix(config, probe.names) };
}

type HealthClient = {
  check(
    request: { service: string },
    options: { deadline: number },
    callback: (error: ServiceError | null, response: { status: string | number }) => void,
  ): void;
  close(): void;
};

const ALTNAME_ERROR = /altname|ERR_TLS_CERT_ALTNAME_INVALID|does not match certificate/i;

export async function checkCoordinator(config: SiteConfig, transport: SiteTransport, probe: TlsProbe | null): Promise<DoctorCheck> {
  const name = 'coordinator';
  const Health = makeClientConstructor(healthService, 'grpc.health.v1.Health');
  const client = new Health(config.coordinator.address, transport.credentials, {
    ...(config.coordinator.serverName ? { 'grpc.ssl_target_name_override': config.coordinator.serverName } : {}),
  }) as unknown as HealthClient;
  try {
    const status = await new Promise<string | number>((resolveStatus, reject) =>
      client.check({ service: 'federa.v1.FederationService' }, { deadline: Date.now() + 5_000 }, (error, response) =>
        error ? reject(error) : resolveStatus(response.status),
      ),
    );
    const serving = status === 'SERVING' || status === 1;
    return {
      name,
      ok: serving,
      detail: `${config.coordinator.address} answers over ${transport.kit ? 'mutual TLS' : 'plaintext (insecure mode)'}: ${String(status)}`,
      ...(serving ? {} : { hint: 'the coordinator is up but not serving the federation service yet; retry shortly' }),
    };
  } catch (error) {
    const details = (error as ServiceError).details ?? (error as Error).message;
    // A name mismatch is a one-line fix in site.yaml, not a firewall problem: say that instead.
    const misnamed = probe?.kind === 'connected' && (probe.nameError !== null || ALTNAME_ERROR.test(details));
    return {
      name,
      ok: false,
      detail: `${config.coordinator.address}: ${details}`,
      hint: misnamed
        ? serverNameFix(config, probe.names)
        : probe?.kind === 'tls-failed'
          ? 'fix the coordinator certificate check first'
          : transport.kit
            ? 'check the address and firewall, that the coordinator runs with its kit, and that both kits come from the same consortium (a TLS failure shows as UNAVAILABLE)'
            : 'check the address and that the coordinator runs with --insecure',
    };
  } finally {
    client.close();
  }
}

/**
 * Revocation lives in the coordinator kit's revoked.json, not in the site kit: only the coordinator can say
 * whether this certificate is still accepted. ListStudies is asked because it checks the caller's certificate
 * like every federation call but changes nothing (no registration, nothing recorded for an accepted call).
 */
export async function checkRevocation(config: SiteConfig, transport: SiteTransport, probe: TlsProbe | null): Promise<DoctorCheck> {
  const name = 'revocation';
  const kit = transport.kit;
  if (!kit) return { name, ok: true, detail: 'not checked: insecure development mode (no certificate)' };
  const serial = kit.manifest.certificate.serialNumber;
  if (probe?.kind !== 'connected' || probe.nameError !== null) {
    return { name, ok: true, warning: true, detail: `not checked: the coordinator cannot be reached over mutual TLS yet (certificate serial ${serial})`, hint: 'fix the coordinator checks above, then run doctor again' };
  }
  const client = new FederationClient({
    address: config.coordinator.address,
    credentials: transport.credentials,
    ...(config.coordinator.serverName ? { serverName: config.coordinator.serverName } : {}),
  });
  try {
    await client.listStudies(5_000);
    return { name, ok: true, detail: `the coordinator accepts this site's certificate (serial ${serial})` };
  } catch (error) {
    const message = (error as Error).message;
    if (error instanceof CoordinatorRefusal && error.code === GrpcStatus.PERMISSION_DENIED && /revoked/.test(message)) {
      const revokedSerial = /certificate ([0-9A-F]+) of site/.exec(message)?.[1] ?? serial;
      return {
        name,
        ok: false,
        detail: `this site's certificate (serial ${revokedSerial}) was revoked: ask the consortium operator for a new kit (federa provision renew ${kit.siteId})`,
        hint: `the coordinator refuses this site ("${message}"); install the new kit, point coordinator.kit at it, and run doctor again`,
      };
    }
    if (error instanceof CoordinatorRefusal && (error.code === GrpcStatus.UNAUTHENTICATED || error.code === GrpcStatus.PERMISSION_DENIED)) {
      return {
        name,
        ok: false,
        detail: `the coordinator refuses this site's certificate (serial ${serial}): ${message}`,
        hint: 'ask the consortium operator: the coordinator and this site must use kits of the same consortium',
      };
    }
    return { name, ok: true, warning: true, detail: `not checked: ${message}`, hint: 'retry once the coordinator check passes' };
  } finally {
    client.close();
  }
}
