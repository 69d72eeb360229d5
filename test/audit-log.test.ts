import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditRecordHash, extendsEarlier, verifyAuditChain, type AuditCheckpoint, type AuditRecord } from '@federa/shared';
import {
  generateConsortiumCkksKeys,
  openDatabase,
  parseCoordinatorConfig,
  provisionConsortium,
  startCoordinator,
  type Database,
} from '@federa/coordinator';
import { isolatedSchema, postgresReachable } from './postgres.js';
import { rest, studyBody, tokenFor } from './support/raw-site.js';

const run = promisify(execFile);
const FEDERA = resolve(dirname(fileURLToPath(import.meta.url)), '../coordinator/dist/cli/federa.js');
const withPostgres = await postgresReachable();
const spec = { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 1 };

type Row = { seq: number; at: Date; kind: string; actor: string; studyId: string | null; round: number | null; siteId: string | null; details: string; prevHash: string; hash: string };
const recordOf = (row: Row): AuditRecord => ({ ...row, at: row.at.toISOString(), details: JSON.parse(row.details) as Record<string, unknown> });

/**
 * The audit log against someone with the database in hand. The database itself refuses UPDATE, DELETE and TRUNCATE
 * on it; whoever can switch that off (the table's owner) still cannot edit, delete, insert or reorder a record, or
 * rewrite the chain from some record on, without verification naming the record.
 */
describe.each([{ database: 'pglite' as const }, ...(withPostgres ? [{ database: 'postgresql' as const }] : [])])('the audit log ($database)', ({ database }) => {
  let dir: string;
  let kits: string;
  let schema: Awaited<ReturnType<typeof isolatedSchema>> | undefined;
  let db: Database;
  let checkpoints: AuditCheckpoint[];
  let length: number;
  const config = () => ({ dataDir: join(dir, 'coordinator'), ...(schema ? { databaseUrl: schema.url } : {}) });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'federa-audit-'));
    schema = database === 'postgresql' ? await isolatedSchema('federa_audit') : undefined;
    kits = join(dir, 'kits');
    await provisionConsortium({
      config: { consortium: { name: 'audit test' }, coordinator: { hostnames: ['localhost'], ips: ['127.0.0.1'] }, sites: [{ id: 'hospital-a' }] },
      outDir: kits,
      generateCkksKeys: generateConsortiumCkksKeys,
    });
    const coordinator = await startCoordinator(parseCoordinatorConfig({ kitDir: join(kits, 'coordinator'), httpPort: 0, grpcPort: 0, ...config() }));
    try {
      // A few events of different kinds: tokens issued, refusals, studies created and changed.
      for (let i = 0; i < 4; i++) {
        const created = await rest(coordinator, 'POST', '/studies', studyBody(spec, { name: `study ${i}`, minSites: 3 }));
        await rest(coordinator, 'PUT', `/studies/${created.body.id as string}`, studyBody(spec, { name: `study ${i}b`, minSites: 3 }));
      }
      await fetch(`http://127.0.0.1:${coordinator.httpPort}/api/v1/studies`);
      const exported = await fetch(`http://127.0.0.1:${coordinator.httpPort}/api/v1/audit/export`, {
        headers: { authorization: `Bearer ${await tokenFor(coordinator, 'auditor')}` },
      });
      expect(exported.status).toBe(200);
      await writeFile(join(dir, 'export.jsonl'), await exported.text());
    } finally {
      await coordinator.close();
    }
    db = await openDatabase(config());
    checkpoints = (await db.prisma.auditCheckpoint.findMany({ orderBy: { seq: 'asc' } })).map((c) => ({ ...c, at: c.at.toISOString() }));
    length = await db.prisma.auditRecord.count();
  }, 120_000);

  afterAll(async () => {
    await db?.close();
    await schema?.drop();
    await rm(dir, { recursive: true, force: true });
  });

  it('holds a chain that verifies, with signed checkpoints', async () => {
    const records = (await db.prisma.auditRecord.findMany({ orderBy: { seq: 'asc' } })).map(recordOf);
    expect(records.length).toBeGreaterThanOrEqual(12);
    const ca = await readFile(join(kits, 'coordinator', 'ca.pem'), 'utf8');
    const verification = verifyAuditChain(records, { checkpoints, caPem: ca });
    expect(verification).toMatchObject({ ok: true, firstBad: null });
    // The export's checkpoint and the one made at shutdown.
    expect(verification.checkpoints.verified).toBeGreaterThanOrEqual(1);
    expect(records.map((r) => r.kind)).toEqual(expect.arrayContaining(['token.issued', 'study.created', 'study.changed', 'token.refused', 'audit.exported']));
  });

  it('is refused UPDATE, DELETE and TRUNCATE by the database itself', async () => {
    for (const sql of [
      `UPDATE audit_record SET actor = 'system' WHERE seq = 3`,
      `DELETE FROM audit_record WHERE seq = 3`,
      `TRUNCATE audit_record`,
      `UPDATE audit_checkpoint SET hash = 'x'`,
      `DELETE FROM audit_checkpoint`,
    ]) {
      await expect(db.prisma.$executeRawUnsafe(sql), sql).rejects.toThrow(/append-only/);
    }
    expect(await db.prisma.auditRecord.count()).toBe(length);
  });

  /** Tampers as the table's owner would (triggers off, in a transaction that is rolled back) and verifies what is left. */
  const tampered = async (sql: (records: AuditRecord[]) => string[]): Promise<ReturnType<typeof verifyAuditChain>> => {
    const rollback = new Error('rollback');
    let result: ReturnType<typeof verifyAuditChain> | undefined;
    await db.prisma
      .$transaction(async (tx) => {
        const before = (await tx.auditRecord.findMany({ orderBy: { seq: 'asc' } })).map(recordOf);
        await tx.$executeRawUnsafe('ALTER TABLE audit_record DISABLE TRIGGER audit_record_append_only');
        await tx.$executeRawUnsafe('DROP INDEX audit_record_prev_hash_key');
        await tx.$executeRawUnsafe('DROP INDEX audit_record_hash_key');
        for (const statement of sql(before)) await tx.$executeRawUnsafe(statement);
        const after = (await tx.auditRecord.findMany({ orderBy: { seq: 'asc' } })).map(recordOf);
        result = verifyAuditChain(after, { checkpoints });
        throw rollback;
      })
      .catch((error: unknown) => {
        if (error !== rollback) throw error;
      });
    return result!;
  };
  const quote = (value: string) => `'${value.replaceAll("'", "''")}'`;

  it.each([
    ['an edit', (r: AuditRecord[]) => [`UPDATE audit_record SET details = ${quote(JSON.stringify({ ...r[4]!.details, name: 'other' }))} WHERE seq = 5`], 5],
    ['an edit with its hash recomputed', (r: AuditRecord[]) => {
      const body = { ...r[4]!, actor: 'system' };
      return [`UPDATE audit_record SET actor = 'system', hash = ${quote(auditRecordHash(body))} WHERE seq = 5`];
      // The break shows at the next record, whose prevHash still names the original: its reason names record 5.
    }, 6],
    ['a deletion', () => ['DELETE FROM audit_record WHERE seq = 5'], 5],
    ['a deletion covered by renumbering', () => ['DELETE FROM audit_record WHERE seq = 5', 'UPDATE audit_record SET seq = seq - 1 + 100000 WHERE seq > 5', 'UPDATE audit_record SET seq = seq - 100000 WHERE seq > 100000'], 5],
    ['an insertion, correctly linked, with the later records renumbered', (r: AuditRecord[]) => {
      const forged = { ...r[4]!, kind: 'token.revoked', details: { tokenId: 'x' } };
      const hash = auditRecordHash(forged);
      return [
        'UPDATE audit_record SET seq = seq + 100001 WHERE seq >= 5',
        'UPDATE audit_record SET seq = seq - 100000 WHERE seq > 100000',
        `INSERT INTO audit_record (seq, at, kind, actor, study_id, round, site_id, details, prev_hash, hash) VALUES (5, ${quote(forged.at)}, 'token.revoked', ${quote(forged.actor)}, NULL, NULL, NULL, '{"tokenId":"x"}', ${quote(forged.prevHash)}, ${quote(hash)})`,
      ];
    }, 5],
    ['a reordering', (r: AuditRecord[]) => [
      'UPDATE audit_record SET seq = 100000 WHERE seq = 5',
      'UPDATE audit_record SET seq = 5 WHERE seq = 6',
      'UPDATE audit_record SET seq = 6 WHERE seq = 100000',
      ...(r.length > 0 ? [] : []),
    ], 5],
    ['a truncation of the tail', (r: AuditRecord[]) => [`DELETE FROM audit_record WHERE seq > ${r.length - 3}`], 'truncated'],
  ] as const)('names the record after %s', async (_what, sql, expected) => {
    const result = await tampered(sql as (r: AuditRecord[]) => string[]);
    expect(result.ok).toBe(false);
    if (expected === 'truncated') {
      expect(result.checkpoints.failures.map((f) => f.reason).join('\n')).toMatch(/deleted/);
      expect(result.firstBad?.seq).toBe(length - 2);
    } else {
      expect(result.firstBad?.seq, result.firstBad?.reason).toBe(expected);
      if (expected === 6) expect(result.firstBad?.reason).toMatch(/record 5 was changed or replaced/);
    }
  });

  it('names a chain rewritten consistently from a record on, by the checkpoint signed before', async () => {
    const result = await tampered((records) => {
      // Change record 5 and recompute every hash after it: the chain checks out, the signed checkpoint does not.
      const out: string[] = [];
      let previous = records[3]!.hash;
      for (const record of records.slice(4)) {
        const body = { ...record, prevHash: previous, ...(record.seq === 5 ? { actor: 'system' } : {}) };
        const hash = auditRecordHash(body);
        out.push(`UPDATE audit_record SET actor = ${quote(body.actor)}, prev_hash = ${quote(previous)}, hash = ${quote(hash)} WHERE seq = ${record.seq}`);
        previous = hash;
      }
      return out;
    });
    expect(result.ok).toBe(false);
    expect(result.firstBad?.seq).toBeLessThanOrEqual(5);
    expect(result.checkpoints.failures.length).toBeGreaterThan(0);
  });

  it('catches a whole rewrite, checkpoints and all, against an export kept elsewhere', async () => {
    const earlier = await readFile(join(dir, 'export.jsonl'), 'utf8');
    const head = JSON.parse(earlier.trim().split('\n').filter((l) => l.includes('"type":"record"')).at(-1)!) as AuditRecord;
    const rollback = new Error('rollback');
    let rewritten: ReturnType<typeof verifyAuditChain> | undefined;
    let continuity: ReturnType<typeof extendsEarlier> | undefined;
    await db.prisma
      .$transaction(async (tx) => {
        const records = (await tx.auditRecord.findMany({ orderBy: { seq: 'asc' } })).map(recordOf);
        for (const table of ['audit_record', 'audit_checkpoint']) await tx.$executeRawUnsafe(`ALTER TABLE ${table} DISABLE TRIGGER ${table}_append_only`);
        await tx.$executeRawUnsafe('DROP INDEX audit_record_prev_hash_key');
        await tx.$executeRawUnsafe('DROP INDEX audit_record_hash_key');
        await tx.$executeRawUnsafe('DELETE FROM audit_checkpoint');
        let previous = records[1]!.hash;
        for (const record of records.slice(2)) {
          const body = { ...record, prevHash: previous, ...(record.seq === 3 ? { actor: 'system' } : {}) };
          const hash = auditRecordHash(body);
          await tx.$executeRawUnsafe(`UPDATE audit_record SET actor = ${quote(body.actor)}, prev_hash = ${quote(previous)}, hash = ${quote(hash)} WHERE seq = ${record.seq}`);
          previous = hash;
        }
        const after = (await tx.auditRecord.findMany({ orderBy: { seq: 'asc' } })).map(recordOf);
        rewritten = verifyAuditChain(after, {});
        continuity = extendsEarlier(after, { seq: head.seq, hash: head.hash });
        throw rollback;
      })
      .catch((error: unknown) => {
        if (error !== rollback) throw error;
      });
    // With every checkpoint gone the chain alone looks fine; the export kept by an auditor does not match it.
    expect(rewritten?.ok).toBe(true);
    expect(rewritten?.checkpoints.total).toBe(0);
    expect(continuity?.ok).toBe(false);
    expect(continuity?.reason).toMatch(/the log was rewritten/);
  });

  it('verifies the signed export offline with only the CA, and names an edited record in it', async () => {
    const ca = join(kits, 'coordinator', 'ca.pem');
    const bundle = join(dir, 'export.jsonl');
    const good = await run(process.execPath, [FEDERA, 'audit', 'verify', '--bundle', bundle, '--ca', ca]);
    expect(good.stdout).toMatch(/audit log OK/);
    const lines = (await readFile(bundle, 'utf8')).split('\n');
    lines[5] = lines[5]!.replace('"kind":"', '"kind":"x');
    await writeFile(join(dir, 'edited.jsonl'), lines.join('\n'));
    const bad = await run(process.execPath, [FEDERA, 'audit', 'verify', '--bundle', join(dir, 'edited.jsonl'), '--ca', ca]).catch((error: { code: number; stdout: string }) => error);
    expect((bad as { code: number }).code).toBe(1);
    expect((bad as { stdout: string }).stdout).toMatch(/signature/i);
    expect((bad as { stdout: string }).stdout).toMatch(/record 5|seq 5/);
  });

  it('has `federa audit verify` name the first bad record of a tampered database', async () => {
    // Commit an edit (as the table owner could) to a copy, and check it with the command an auditor runs.
    await db.prisma.$transaction(async (tx) => {
      await tx.$executeRawUnsafe('ALTER TABLE audit_record DISABLE TRIGGER audit_record_append_only');
      await tx.$executeRawUnsafe(`UPDATE audit_record SET actor = 'system' WHERE seq = 7`);
      await tx.$executeRawUnsafe('ALTER TABLE audit_record ENABLE TRIGGER audit_record_append_only');
    });
    await db.close();
    const copy = join(dir, 'copy');
    if (!schema) await cp(join(dir, 'coordinator'), copy, { recursive: true });
    const args = [FEDERA, 'audit', 'verify', ...(schema ? ['--database-url', schema.url] : ['--data-dir', copy]), '--ca', join(kits, 'coordinator', 'ca.pem')];
    const result = await run(process.execPath, [...args, '--previous', join(dir, 'export.jsonl')]).catch((error: { code: number; stdout: string }) => error);
    expect((result as { code: number }).code).toBe(1);
    expect((result as { stdout: string }).stdout).toMatch(/BROKEN at record 7/);
    // The stored hashes are untouched, so the log still extends the export; the edit shows in the walk.
    expect((result as { stdout: string }).stdout).toMatch(/^extends the earlier export/m);
    db = await openDatabase(config());
  });
});
