import { certificateFingerprint } from '../pki/certificate.js';
import { verifyCanonical } from '../pki/signing.js';
import { verifyCertificate } from '../pki/verify.js';
import { describeIssues } from '../study/definition.js';
import {
  AUDIT_GENESIS_HASH,
  auditCheckpointSchema,
  auditRecordHash,
  auditRecordSchema,
  checkpointSignedBody,
  type AuditCheckpoint,
  type AuditRecord,
} from './record.js';

/**
 * Offline verification of the coordinator's audit log: the hash chain proves every record is where and what it
 * was when written, up to a consistent rewrite; signed checkpoints prove the chain was not rewritten or truncated
 * before the moment they were signed.
 */
export interface AuditVerification {
  ok: boolean;
  records: number;
  head: { seq: number; hash: string } | null;
  /** The first record that is wrong or missing; `position` is its 0-based index in storage order. */
  firstBad: { seq: number; position: number; reason: string } | null;
  checkpoints: {
    total: number;
    verified: number;
    latest: { seq: number; at: string } | null;
    failures: Array<{ seq: number; reason: string }>;
  };
  /** Records after the latest verified checkpoint: only the hash chain vouches for them. */
  uncheckpointed: number;
}

export interface VerifyAuditChainOptions {
  checkpoints?: AuditCheckpoint[];
  /** The consortium CA: checkpoint certificates must chain to it. */
  caPem?: string;
  /** The consortium name every checkpoint must carry. */
  consortium?: string;
}

type BadRecord = NonNullable<AuditVerification['firstBad']>;

/** How far a renumbered record's original seq is searched for, to tell an insertion or deletion from an edit. */
const RENUMBER_SEARCH = 16;
/** Characters of a hash shown in reasons: enough to find it, short enough to read. */
const HASH_SHOWN = 12;

export function shortHash(hash: string | null | undefined): string {
  if (hash === null || hash === undefined) return '(none)';
  return hash.length > HASH_SHOWN ? `${hash.slice(0, HASH_SHOWN)}...` : hash;
}

export function verifyAuditChain(records: AuditRecord[], options: VerifyAuditChainOptions = {}): AuditVerification {
  const parsed = records.map((record) => auditRecordSchema.safeParse(record));
  const valid = parsed.map((result) => (result.success ? result.data : null));
  let firstBad = walkChain(records, parsed, valid);

  const last = records.at(-1);
  const head = typeof last?.seq === 'number' && typeof last.hash === 'string' ? { seq: last.seq, hash: last.hash } : null;

  const checked = checkCheckpoints(valid, options);
  // A record the walk pins is evidence; a checkpoint mismatch only bounds where a consistent rewrite may start, so it
  // names the first bad record only when the chain itself shows nothing.
  if (checked.firstBad !== null && firstBad === null) firstBad = checked.firstBad;
  const latestSeq = checked.latest?.seq ?? 0;
  const uncheckpointed = valid.filter((record) => record === null || record.seq > latestSeq).length;
  return {
    ok: firstBad === null && checked.failures.length === 0,
    records: records.length,
    head,
    firstBad,
    checkpoints: { total: checked.total, verified: checked.verified, latest: checked.latest, failures: checked.failures },
    uncheckpointed,
  };
}

function walkChain(
  raw: AuditRecord[],
  parsed: Array<ReturnType<typeof auditRecordSchema.safeParse>>,
  valid: Array<AuditRecord | null>,
): BadRecord | null {
  for (let i = 0; i < valid.length; i += 1) {
    const expectedSeq = i + 1;
    const bad = (reason: string): BadRecord => ({ seq: expectedSeq, position: i, reason });
    const record = valid[i];
    const result = parsed[i];
    if (record === null || record === undefined || result === undefined) {
      const issues = result !== undefined && !result.success ? describeIssues(result.error).join('; ') : 'unreadable';
      const claimed = typeof raw[i]?.seq === 'number' ? `seq ${raw[i]!.seq}` : `seq ${expectedSeq}`;
      return bad(`record ${claimed} at position ${i} is malformed: ${issues}`);
    }
    if (record.seq !== expectedSeq) return bad(seqProblem(valid, i, record.seq));

    const computed = auditRecordHash(record);
    if (computed !== record.hash) {
      // Records inserted before this one (and the rest renumbered): the first inserted seq is the bad record.
      const original = renumberedFrom(record);
      const reason = hashProblem(valid, i, record, computed);
      return original !== null && original < record.seq ? { seq: original, position: original - 1, reason } : bad(reason);
    }

    const previous = i === 0 ? null : valid[i - 1]!;
    const expectedPrev = previous === null ? AUDIT_GENESIS_HASH : previous.hash;
    if (record.prevHash !== expectedPrev) {
      const follows = i > 1 ? valid.slice(0, i - 1).findLastIndex((earlier) => earlier?.hash === record.prevHash) : -1;
      const reason = prevHashProblem(valid, i, record);
      return follows >= 0 ? { seq: follows + 2, position: follows + 1, reason } : bad(reason);
    }
  }
  return null;
}

function seqProblem(valid: Array<AuditRecord | null>, i: number, seq: number): string {
  const expected = i + 1;
  if (seq > expected) {
    // A record that turns up right after means the two were swapped rather than one lost.
    if (valid[i + 1]?.seq === expected) {
      return `seq ${seq} comes before seq ${expected} at position ${i}: the records were reordered`;
    }
    const missing = seq === expected + 1 ? `seq ${expected} missing` : `seqs ${expected}..${seq - 1} missing`;
    return i === 0 ? `${missing}: the log starts at seq ${seq}` : `${missing}: seq ${expected - 1} is followed by seq ${seq}`;
  }
  return `seq ${seq} appears again at position ${i}, after seq ${expected - 1}: a record was inserted or duplicated`;
}

/** The seq under which the record's content hashes to its stored hash, when that is not its own seq. */
function renumberedFrom(record: AuditRecord): number | null {
  for (let d = 1; d <= RENUMBER_SEARCH; d += 1) {
    for (const candidate of [record.seq - d, record.seq + d]) {
      if (candidate >= 1 && auditRecordHash({ ...record, seq: candidate }) === record.hash) return candidate;
    }
  }
  return null;
}

function hashProblem(valid: Array<AuditRecord | null>, i: number, record: AuditRecord, computed: string): string {
  const original = renumberedFrom(record);
  if (original === null) {
    return `hash mismatch: seq ${record.seq} stores hash ${shortHash(record.hash)} but its content hashes to ${shortHash(computed)}: the record was edited after it was written`;
  }
  const prefix = `seq ${record.seq} was renumbered: its stored hash matches its content as seq ${original}`;
  const offset = original - record.seq;
  if (offset > 0) {
    const partner = valid[i + offset];
    if (partner && renumberedFrom(partner) === record.seq) {
      return `${prefix}, and seq ${partner.seq} hashes as seq ${record.seq}: the records were swapped (reordered)`;
    }
    return `${prefix}, so ${offset} record(s) before it were deleted and the later ones renumbered`;
  }
  return `${prefix}, so ${-offset} record(s) were inserted before it (seq ${original}..${record.seq - 1} are not original)`;
}

function prevHashProblem(valid: Array<AuditRecord | null>, i: number, record: AuditRecord): string {
  if (i === 0) {
    return `seq ${record.seq} has prevHash ${shortHash(record.prevHash)}, not the genesis hash: the start of the log was replaced`;
  }
  const before = valid[i - 1]!;
  for (let j = i - 2; j >= 0; j -= 1) {
    const earlier = valid[j];
    if (earlier?.hash === record.prevHash) {
      return `seq ${record.seq} follows seq ${earlier.seq} by its prevHash, not seq ${before.seq}: seq ${earlier.seq + 1}..${before.seq} were inserted before it`;
    }
  }
  return (
    `prevHash mismatch: seq ${record.seq} has prevHash ${shortHash(record.prevHash)} but seq ${before.seq} (the record before it) has hash ` +
    `${shortHash(before.hash)}: record ${before.seq} was changed or replaced (its own hash recomputed to hide it), or seq ${record.seq} was forged or moved here`
  );
}

interface CheckpointResult {
  total: number;
  verified: number;
  latest: { seq: number; at: string } | null;
  failures: Array<{ seq: number; reason: string }>;
  firstBad: BadRecord | null;
}

/** Why a checkpoint cannot testify (bad signature, wrong consortium, untrusted certificate), or null. */
function checkpointAuthenticity(cp: AuditCheckpoint, options: VerifyAuditChainOptions): string | null {
  const parsed = auditCheckpointSchema.safeParse(cp);
  if (!parsed.success) return `malformed checkpoint: ${describeIssues(parsed.error).join('; ')}`;
  let fingerprint: string;
  try {
    fingerprint = certificateFingerprint(cp.certificatePem);
  } catch (error) {
    return `its certificate is unreadable: ${(error as Error).message}`;
  }
  if (fingerprint !== cp.certificateFingerprint) {
    return `it names certificate ${cp.certificateFingerprint} but carries certificate ${fingerprint}`;
  }
  let signed: boolean;
  try {
    signed = verifyCanonical(checkpointSignedBody(cp), cp.signature, cp.certificatePem);
  } catch (error) {
    return `its signature cannot be checked: ${(error as Error).message}`;
  }
  if (!signed) return 'its signature does not verify with its certificate: the checkpoint was altered or forged';
  if (options.caPem !== undefined) {
    const trusted = verifyCertificate(cp.certificatePem, options.caPem, { purpose: 'server', at: new Date(cp.at) });
    if (!trusted.ok) return `its certificate is not trusted at ${cp.at}: ${trusted.reason}`;
  }
  if (options.consortium !== undefined && cp.consortium !== options.consortium) {
    return `it was signed for consortium "${cp.consortium}", not "${options.consortium}"`;
  }
  return null;
}

function checkCheckpoints(valid: Array<AuditRecord | null>, options: VerifyAuditChainOptions): CheckpointResult {
  const checkpoints = [...(options.checkpoints ?? [])].sort((a, b) => a.seq - b.seq || a.at.localeCompare(b.at));
  const bySeq = new Map<number, { record: AuditRecord; position: number }>();
  let lastSeq = 0;
  valid.forEach((record, position) => {
    if (record === null) return;
    if (!bySeq.has(record.seq)) bySeq.set(record.seq, { record, position });
    lastSeq = Math.max(lastSeq, record.seq);
  });

  const result: CheckpointResult = { total: checkpoints.length, verified: 0, latest: null, failures: [], firstBad: null };
  let lastMatched: AuditCheckpoint | null = null;
  for (const cp of checkpoints) {
    const fail = (reason: string): void => {
      result.failures.push({ seq: cp.seq, reason });
    };
    const unauthentic = checkpointAuthenticity(cp, options);
    if (unauthentic !== null) {
      fail(`checkpoint for seq ${cp.seq} signed at ${cp.at} is not valid: ${unauthentic}`);
      continue;
    }
    if (cp.seq > lastSeq) {
      const deleted = cp.seq === lastSeq + 1 ? `record ${cp.seq} was deleted` : `records ${lastSeq + 1}..${cp.seq} were deleted`;
      const reason =
        lastSeq === 0
          ? `the log is empty but a checkpoint signed at ${cp.at} covers seq ${cp.seq}: ${deleted}`
          : `the log ends at seq ${lastSeq} but a checkpoint signed at ${cp.at} covers seq ${cp.seq}: ${deleted}`;
      fail(reason);
      result.firstBad ??= { seq: lastSeq + 1, position: valid.length, reason };
      continue;
    }
    const found = bySeq.get(cp.seq);
    if (found === undefined) {
      fail(`the checkpoint signed at ${cp.at} covers seq ${cp.seq}, which is missing from the log`);
      continue;
    }
    if (found.record.hash !== cp.hash) {
      const since = lastMatched === null ? 1 : lastMatched.seq + 1;
      const confirmed =
        lastMatched === null
          ? 'no earlier checkpoint confirms any record, so any record from seq 1 on may have been rewritten'
          : `the checkpoint for seq ${lastMatched.seq} (signed at ${lastMatched.at}) still matches, so the rewrite starts after seq ${lastMatched.seq}`;
      const reason =
        `the checkpoint for seq ${cp.seq} signed at ${cp.at} says its hash is ${shortHash(cp.hash)}, but the log's seq ${cp.seq} has ` +
        `${shortHash(found.record.hash)}: the log was rewritten consistently after the checkpoint was signed; ${confirmed}`;
      fail(reason);
      if (result.firstBad === null) {
        const position = bySeq.get(since)?.position ?? since - 1;
        result.firstBad = { seq: since, position, reason };
      }
      continue;
    }
    result.verified += 1;
    lastMatched = cp;
    result.latest = { seq: cp.seq, at: cp.at };
  }
  return result;
}

/** A few lines for people: the verdict first, then what proves it or what broke. */
export function formatAuditVerification(v: AuditVerification): string {
  const lines: string[] = [];
  const head = v.head === null ? 'empty' : `head seq ${v.head.seq} ${shortHash(v.head.hash)}`;
  const summary = `${v.records} records, ${head}`;
  if (v.firstBad !== null) {
    lines.push(`audit log BROKEN at record ${v.firstBad.seq} (position ${v.firstBad.position}): ${v.firstBad.reason}`);
    lines.push(`  ${summary}`);
  } else if (!v.ok) {
    lines.push(`audit log NOT VERIFIED: ${v.checkpoints.failures.length} checkpoint(s) failed; ${summary}`);
  } else {
    const cps = v.checkpoints;
    const proof =
      cps.latest === null
        ? 'no signed checkpoint (a consistent rewrite of the whole log would go unnoticed)'
        : `${cps.verified} signed checkpoint(s) verified (latest seq ${cps.latest.seq} at ${cps.latest.at}), ${v.uncheckpointed} record(s) after it`;
    lines.push(`audit log OK: ${summary}, ${proof}`);
  }
  for (const failure of v.checkpoints.failures) {
    if (failure.reason === v.firstBad?.reason) continue; // already the headline
    lines.push(`  checkpoint seq ${failure.seq}: ${failure.reason}`);
  }
  return lines.join('\n');
}

/**
 * Whether a log still holds an earlier export's records unchanged. The chain links every record to the one before,
 * so finding the earlier head's seq and hash as they were proves everything before it is as it was: what a whole
 * rewrite (checkpoints and all) by someone with the database cannot fake against an export kept elsewhere.
 */
export function extendsEarlier(records: readonly AuditRecord[], earlierHead: { seq: number; hash: string } | null): { ok: boolean; reason: string } {
  if (!earlierHead) return { ok: true, reason: 'the earlier export was empty' };
  const now = records[earlierHead.seq - 1];
  if (!now) return { ok: false, reason: `the log ends before seq ${earlierHead.seq}, where the earlier export ended: records were deleted` };
  if (now.seq !== earlierHead.seq || now.hash !== earlierHead.hash) {
    return {
      ok: false,
      reason: `seq ${earlierHead.seq} now has hash ${shortHash(now.hash)}, the earlier export had ${shortHash(earlierHead.hash)}: the log was rewritten`,
    };
  }
  return { ok: true, reason: `its seq ${earlierHead.seq} is unchanged` };
}
