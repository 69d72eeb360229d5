import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog } from '../audit/audit-log.js';
import { openDatabase, type Database } from '../persistence/index.js';
import { Tokens, tokenHash } from './tokens.js';

describe('REST tokens', () => {
  let dir: string;
  let db: Database;
  let tokens: Tokens;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'federa-tokens-'));
    db = await openDatabase({ dataDir: dir });
    tokens = new Tokens(db, new AuditLog(db, null));
  });
  afterAll(async () => {
    await db.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps only the hash of a 256-bit secret, and authenticates by it', async () => {
    const issued = await tokens.issue({ name: 'alice', role: 'researcher', expiresInDays: 30 }, 'cli', 365);
    const secret = issued.token.slice('fed_'.length + 12 + 1);
    expect(Buffer.from(secret, 'base64url')).toHaveLength(32);
    const row = await db.prisma.apiToken.findUniqueOrThrow({ where: { id: issued.id } });
    expect(row.secretHash).toBe(tokenHash(issued.token));
    expect(JSON.stringify(row)).not.toContain(secret);
    expect(await tokens.authenticate(issued.token)).toMatchObject({ ok: true, principal: { tokenId: issued.id, name: 'alice', role: 'researcher', actor: `token:${issued.id}` } });
    // Right id, wrong secret; a malformed string.
    expect(await tokens.authenticate(`fed_${issued.id}_${'A'.repeat(43)}`)).toMatchObject({ ok: false, reason: 'unknown token' });
    expect(await tokens.authenticate('Bearer nonsense')).toMatchObject({ ok: false, reason: 'malformed token' });
  });

  it('refuses an expired or a revoked token, and audits issue and revocation', async () => {
    const issued = await tokens.issue({ name: 'bob', role: 'auditor', expiresInDays: 1 }, 'cli', 365);
    await db.prisma.apiToken.update({ where: { id: issued.id }, data: { expiresAt: new Date(Date.now() - 1000) } });
    expect(await tokens.authenticate(issued.token)).toMatchObject({ ok: false, tokenId: issued.id, reason: expect.stringMatching(/^token expired/) });
    const other = await tokens.issue({ name: 'carol', role: 'admin' }, 'cli', 365);
    await tokens.revoke(other.id, 'token:someone');
    expect(await tokens.authenticate(other.token)).toMatchObject({ ok: false, reason: expect.stringMatching(/^token revoked/) });
    expect((await tokens.list()).find((t) => t.id === other.id)).toMatchObject({ status: 'revoked', revokedBy: 'token:someone' });
    const kinds = (await new AuditLog(db, null).records()).map((r) => [r.kind, r.details.name]);
    expect(kinds).toEqual(expect.arrayContaining([['token.issued', 'carol'], ['token.revoked', 'carol']]));
    // Lifetime within the coordinator's limit; default 90 days.
    await expect(tokens.issue({ name: 'dave', role: 'admin', expiresInDays: 400 }, 'cli', 365)).rejects.toThrow(/tokenMaxLifetimeDays/);
    const defaulted = await tokens.issue({ name: 'erin', role: 'admin' }, 'cli', 365);
    // One live token per name (studies belong to names); after a revocation the name is free again.
    await expect(tokens.issue({ name: 'erin', role: 'researcher' }, 'cli', 365)).rejects.toThrow(/already called "erin"/);
    await tokens.revoke(defaulted.id, 'cli');
    expect((await tokens.issue({ name: 'erin', role: 'admin' }, 'cli', 365)).name).toBe('erin');
    expect(new Date(defaulted.expiresAt).getTime() - Date.now()).toBeGreaterThan(89 * 86_400_000);
  });

  it('appends concurrent audit records as one unbroken chain', async () => {
    const audit = new AuditLog(db, null);
    await Promise.all(Array.from({ length: 25 }, (_, i) => audit.append({ kind: 'test.parallel', actor: 'system', details: { i } })));
    const records = await audit.records();
    records.forEach((record, i) => {
      expect(record.seq).toBe(i + 1);
      if (i > 0) expect(record.prevHash).toBe(records[i - 1]!.hash);
    });
  });
});
