import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { PeerCertificate } from 'node:tls';
import type { Metadata } from '@grpc/grpc-js';
import {
  createLogger,
  extractSiteId,
  findRevocation,
  KIT_FILES,
  parseRevocationList,
  siteIdSchema,
  type RevocationEntry,
  verifyCertificate,
  type CoordinatorKit,
} from '@federa/shared';
import { FederationError, GrpcStatus } from './federation-error.js';

export const SITE_ID_METADATA = 'x-federa-site-id';

/** What the handlers need from a call to know who is calling. */
export interface CallerInfo {
  metadata: Metadata;
  getAuthContext(): { sslPeerCertificate?: PeerCertificate } | null;
}

/** Decides who is calling: every federation call goes through exactly one of these. */
export interface SiteIdentity {
  siteOf(call: CallerInfo): string;
  /** Called with the entries a reloaded revocation list adds (for the audit log, and to drop the site). */
  onRevocations?(listener: (added: readonly RevocationEntry[]) => void): void;
  /** The consortium CA and the revocations in force, which signed key shares and contributions are checked against; none without a kit. */
  trust?(): { caPem: string; revoked: readonly RevocationEntry[] } | null;
  close?(): void;
}

/**
 * Under mutual TLS the site is its client certificate: the TLS handshake already refused certificates that do
 * not chain to the consortium CA or are outside their validity; here the certificate is checked again (purpose,
 * site identity) and against the coordinator kit's revocation list. Whatever the call's metadata claims is ignored.
 */
export class CertificateSiteIdentity implements SiteIdentity {
  private readonly log = createLogger('site-identity');
  /** Verified certificates by fingerprint, so each connection's certificate is parsed once, not per call. */
  private readonly verified = new Map<string, string>();
  private revoked: readonly RevocationEntry[];
  private revokedMtimeMs = 0;
  private revokedCheckedAt = 0;
  private revocationListeners: Array<(added: readonly RevocationEntry[]) => void> = [];
  private watcher: NodeJS.Timeout | undefined;

  constructor(private readonly kit: CoordinatorKit) {
    this.revoked = kit.revoked;
    this.revokedMtimeMs = this.revocationFileMtime() ?? 0;
  }

  /** Listens for revocations; the list is also re-read every few seconds, so a revocation acts without any call. */
  onRevocations(listener: (added: readonly RevocationEntry[]) => void): void {
    this.revocationListeners.push(listener);
    if (!this.watcher) {
      this.watcher = setInterval(() => this.currentRevocations(), REVOCATION_RECHECK_MS);
      this.watcher.unref();
    }
  }

  trust(): { caPem: string; revoked: readonly RevocationEntry[] } {
    return { caPem: this.kit.caPem, revoked: this.currentRevocations() };
  }

  close(): void {
    if (this.watcher) clearInterval(this.watcher);
    this.watcher = undefined;
  }

  siteOf(call: CallerInfo): string {
    const peer = call.getAuthContext()?.sslPeerCertificate;
    if (!peer?.raw) {
      throw new FederationError(GrpcStatus.UNAUTHENTICATED, 'no client certificate: connect with the site kit from `federa provision`');
    }
    const revoked = findRevocation(this.currentRevocations(), { fingerprint256: peer.fingerprint256 });
    if (revoked) {
      this.log.warn({ siteId: revoked.siteId, serial: revoked.serialNumber }, 'refused a revoked certificate');
      throw new FederationError(
        GrpcStatus.PERMISSION_DENIED,
        `certificate ${revoked.serialNumber} of site ${revoked.siteId} was revoked${revoked.reason ? ` (${revoked.reason})` : ''}`,
      );
    }
    const known = this.verified.get(peer.fingerprint256);
    if (known) return known;
    const verified = verifyCertificate(peer.raw, this.kit.caPem, { purpose: 'client' });
    if (!verified.ok) throw new FederationError(GrpcStatus.UNAUTHENTICATED, `client certificate refused: ${verified.reason}`);
    let siteId: string;
    try {
      siteId = extractSiteId(peer.raw);
    } catch (error) {
      throw new FederationError(GrpcStatus.UNAUTHENTICATED, `client certificate names no site: ${(error as Error).message}`);
    }
    this.verified.set(peer.fingerprint256, siteId);
    return siteId;
  }

  /**
   * `federa provision revoke` rewrites revoked.json in the coordinator kit; it takes effect within a few seconds,
   * without a restart. A list that no longer parses is logged and the last good one stays in force.
   */
  private currentRevocations(): readonly RevocationEntry[] {
    const now = Date.now();
    if (now - this.revokedCheckedAt < REVOCATION_RECHECK_MS) return this.revoked;
    this.revokedCheckedAt = now;
    const mtime = this.revocationFileMtime();
    if (mtime === undefined || mtime === this.revokedMtimeMs) return this.revoked;
    const path = join(this.kit.dir, KIT_FILES.revoked);
    try {
      const previous = new Set(this.revoked.map((entry) => entry.fingerprint256));
      this.revoked = parseRevocationList(readFileSync(path, 'utf8'), path);
      this.revokedMtimeMs = mtime;
      const added = this.revoked.filter((entry) => !previous.has(entry.fingerprint256));
      if (added.length > 0) for (const listener of this.revocationListeners) listener(added);
      this.log.info({ revoked: this.revoked.length }, 'revocation list reloaded');
    } catch (error) {
      this.log.error({ reason: (error as Error).message }, 'revocation list is unreadable; keeping the previous one');
    }
    return this.revoked;
  }

  private revocationFileMtime(): number | undefined {
    try {
      return statSync(join(this.kit.dir, KIT_FILES.revoked)).mtimeMs;
    } catch {
      return undefined;
    }
  }
}

const REVOCATION_RECHECK_MS = 2_000;

/**
 * Development only: the site names itself in metadata. The coordinator logs a warning at start-up whenever
 * this is in use, and it is never the default.
 */
export class MetadataSiteIdentity implements SiteIdentity {
  siteOf(call: CallerInfo): string {
    const values = call.metadata.get(SITE_ID_METADATA);
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
}
