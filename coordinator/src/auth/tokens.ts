import { createHash, randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { AuditLog } from '../audit/audit-log.js';
import type { Database } from '../persistence/index.js';
import { ROLES, type Principal, type Role } from './roles.js';

/**
 * REST bearer tokens: `fed_<id>_<secret>` with a 256-bit random secret. Only the SHA-256 of the whole token is
 * stored (a 256-bit secret needs no slow hash: there is nothing to guess), so a copy of the database lets nobody
 * call the API. The id is public: it names the token in listings and as the audit log's actor.
 */
const TOKEN_PATTERN = /^fed_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$/;

export const tokenRequestSchema = z
  .object({
    name: z.string().trim().min(1).max(100).regex(/^[^\u0000-\u001f\u007f]+$/, 'must not contain control characters'),
    role: z.enum(ROLES, { error: `must be one of ${ROLES.join(', ')}` }),
    /** Lifetime in days; at most the coordinator's tokenMaxLifetimeDays setting. */
    expiresInDays: z.int().min(1).max(3650).optional(),
  })
  .strict();

export type TokenRequest = z.output<typeof tokenRequestSchema>;

export interface IssuedToken {
  id: string;
  name: string;
  role: Role;
  expiresAt: string;
  /** Shown once; only its hash is kept. */
  token: string;
}

export interface TokenView {
  id: string;
  name: string;
  role: Role;
  createdAt: string;
  createdBy: string;
  expiresAt: string;
  revokedAt: string | null;
  revokedBy: string | null;
  lastUsedAt: string | null;
  status: 'active' | 'expired' | 'revoked';
}

export type Authentication = { ok: true; principal: Principal } | { ok: false; reason: string; tokenId: string | null };

export class TokenError extends Error {
  override readonly name = 'TokenError';
  constructor(
    readonly status: 400 | 404,
    message: string,
  ) {
    super(message);
  }
}

export function tokenHash(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export function actorOf(tokenId: string): string {
  return `token:${tokenId}`;
}

const ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

function newTokenId(): string {
  const bytes = randomBytes(12);
  return Array.from(bytes, (b) => ID_ALPHABET[b % ID_ALPHABET.length]).join('');
}

/** Token operations shared by the REST API and the offline `federa token` command; each is audited. */
export class Tokens {
  /** Last-used times are written at most this often per token, not on every request. */
  private static readonly TOUCH_MS = 60_000;
  private readonly touched = new Map<string, number>();

  constructor(
    private readonly db: Database,
    private readonly audit: AuditLog,
  ) {}

  async issue(request: TokenRequest, actor: string, maxLifetimeDays: number): Promise<IssuedToken> {
    const days = request.expiresInDays ?? Math.min(90, maxLifetimeDays);
    if (days > maxLifetimeDays) {
      throw new TokenError(400, `expiresInDays: ${days} is more than the coordinator's tokenMaxLifetimeDays setting (${maxLifetimeDays})`);
    }
    const id = newTokenId();
    const token = `fed_${id}_${randomBytes(32).toString('base64url')}`;
    const expiresAt = new Date(Date.now() + days * 86_400_000);
    await this.audit.transaction(async (tx) => {
      // Names are unique among live tokens: a study belongs to the name of the researcher who made it, so two live
      // tokens of one name would share each other's studies. Renewing means revoking the old token first.
      const live = await tx.apiToken.findFirst({ where: { name: request.name, revokedAt: null, expiresAt: { gt: new Date() } } });
      if (live) {
        throw new TokenError(400, `name: a live token is already called "${request.name}" (id ${live.id}); revoke it first, or choose another name`);
      }
      await tx.apiToken.create({
        data: { id, name: request.name, role: request.role, secretHash: tokenHash(token), createdBy: actor, expiresAt },
      });
      return {
        result: undefined,
        audit: { kind: 'token.issued', actor, details: { tokenId: id, name: request.name, role: request.role, expiresAt: expiresAt.toISOString() } },
      };
    });
    return { id, name: request.name, role: request.role, expiresAt: expiresAt.toISOString(), token };
  }

  /** Checks a presented token; the reason for a failure is for the audit log, never for the caller. */
  async authenticate(presented: string): Promise<Authentication> {
    const match = TOKEN_PATTERN.exec(presented);
    if (!match) return { ok: false, reason: 'malformed token', tokenId: null };
    const row = await this.db.prisma.apiToken.findUnique({ where: { secretHash: tokenHash(presented) } });
    if (!row || row.id !== match[1]) return { ok: false, reason: 'unknown token', tokenId: null };
    if (row.revokedAt) return { ok: false, reason: `token revoked at ${row.revokedAt.toISOString()}`, tokenId: row.id };
    if (row.expiresAt.getTime() <= Date.now()) return { ok: false, reason: `token expired at ${row.expiresAt.toISOString()}`, tokenId: row.id };
    const now = Date.now();
    if (now - (this.touched.get(row.id) ?? 0) > Tokens.TOUCH_MS) {
      this.touched.set(row.id, now);
      await this.db.prisma.apiToken.update({ where: { id: row.id }, data: { lastUsedAt: new Date(now) } });
    }
    return { ok: true, principal: { tokenId: row.id, name: row.name, role: row.role, actor: actorOf(row.id) } };
  }

  async list(): Promise<TokenView[]> {
    const rows = await this.db.prisma.apiToken.findMany({ orderBy: { createdAt: 'asc' } });
    const now = Date.now();
    return rows.map((row) => ({
      id: row.id,
      name: row.name,
      role: row.role,
      createdAt: row.createdAt.toISOString(),
      createdBy: row.createdBy,
      expiresAt: row.expiresAt.toISOString(),
      revokedAt: row.revokedAt?.toISOString() ?? null,
      revokedBy: row.revokedBy,
      lastUsedAt: row.lastUsedAt?.toISOString() ?? null,
      status: row.revokedAt ? 'revoked' : row.expiresAt.getTime() <= now ? 'expired' : 'active',
    }));
  }

  /** Revocation takes effect on the next request: every request looks the token up. */
  async revoke(id: string, actor: string): Promise<TokenView> {
    if (!/^[a-z0-9]{12}$/.test(id)) throw new TokenError(400, `token id: "${id.slice(0, 40)}" is not a token id (12 characters a-z, 0-9)`);
    await this.audit.transaction(async (tx) => {
      const row = await tx.apiToken.findUnique({ where: { id } });
      if (!row) throw new TokenError(404, `token ${id} does not exist`);
      if (row.revokedAt) throw new TokenError(400, `token ${id} was already revoked at ${row.revokedAt.toISOString()}`);
      await tx.apiToken.update({ where: { id }, data: { revokedAt: new Date(), revokedBy: actor } });
      return { result: undefined, audit: { kind: 'token.revoked', actor, details: { tokenId: id, name: row.name, role: row.role } } };
    });
    const view = (await this.list()).find((t) => t.id === id);
    if (!view) throw new TokenError(404, `token ${id} does not exist`);
    return view;
  }
}
