import { api, describeError, download } from './api.js';
import { reconcileCard } from './audit-reconcile.js';
import { badge, h, notice, replace, table } from './dom.js';
import { formatTime, shortHash } from './format.js';
import type { AuditCheckpoint, AuditRecord, AuditRecordsPage, AuditVerification } from './types.js';
import type { AppContext, View } from './view.js';

const PAGE = 50;
const FILTERS = [
  ['kind', 'kind, e.g. study.created'],
  ['actor', 'actor, e.g. site:hospital-a'],
  ['studyId', 'study id'],
  ['siteId', 'site id'],
] as const;

/**
 * For auditors (and admins): the coordinator's own verification of its hash-chained log and signed checkpoints,
 * shown first and plainly; the records a page at a time, with a flagged record marked where it is; the checkpoints;
 * reconciliation of a site's ledger; the signed export.
 */
export function auditView(_context: AppContext): View {
  let verification: AuditVerification | null = null;
  let checkpoints: AuditCheckpoint[] = [];
  /** afterSeq of each page shown so far, for "previous". */
  const pages: number[] = [0];

  const status = h('div', { id: 'verification-status' }, h('p', { class: 'muted' }, 'Verifying…'));
  const verifyButton = h('button', { type: 'button', class: 'primary', id: 'verify' }, 'Verify again');
  const exportButton = h('button', { type: 'button', class: 'secondary', id: 'export' }, 'Download signed export');
  const exportMessage = h('span', { class: 'control-message' });
  const records = h('div', { id: 'audit-records-body' });
  const pager = h('div', { class: 'pager' });
  const checkpointBody = h('div', { id: 'checkpoints-body' });
  const filters = FILTERS.map(([name, placeholder]) => h('input', { type: 'text', name, placeholder, 'aria-label': placeholder }));
  const filterForm = h('form', { class: 'filters', id: 'audit-filters' }, filters, h('button', { type: 'submit', class: 'secondary' }, 'Filter'));

  const query = (afterSeq: number): string => {
    const params = new URLSearchParams({ limit: String(PAGE) });
    if (afterSeq > 0) params.set('afterSeq', String(afterSeq));
    for (const input of filters) if (input.value.trim() !== '') params.set(input.name, input.value.trim());
    return params.toString();
  };

  const loadRecords = (afterSeq: number): void => {
    api<AuditRecordsPage>('GET', `/audit/records?${query(afterSeq)}`)
      .then((page) => {
        replace(records, recordsTable(page.records, verification));
        const previous = h('button', { type: 'button', class: 'secondary', disabled: pages.length <= 1 }, '← Previous');
        const next = h('button', { type: 'button', class: 'secondary', disabled: page.nextAfterSeq === null, id: 'records-next' }, 'Next →');
        previous.addEventListener('click', () => {
          pages.pop();
          loadRecords(pages.at(-1) ?? 0);
        });
        next.addEventListener('click', () => {
          if (page.nextAfterSeq === null) return;
          pages.push(page.nextAfterSeq);
          loadRecords(page.nextAfterSeq);
        });
        const first = page.records[0]?.seq;
        const last = page.records.at(-1)?.seq;
        replace(pager, previous, h('span', { class: 'muted' }, first === undefined ? 'no records' : `records ${first}–${last}`), next);
      })
      .catch((error: unknown) => replace(records, notice(describeError(error))));
  };

  const showPageOf = (seq: number): void => {
    for (const input of filters) input.value = '';
    const start = Math.max(0, seq - 5);
    pages.splice(0, pages.length, 0, start);
    loadRecords(start);
  };

  const verify = (): void => {
    verifyButton.disabled = true;
    replace(status, h('p', { class: 'muted' }, 'Verifying the whole chain…'));
    Promise.all([api<AuditVerification>('GET', '/audit/verify'), api<AuditCheckpoint[]>('GET', '/audit/checkpoints')])
      .then(([result, list]) => {
        verification = result;
        checkpoints = list;
        replace(status, verificationBanner(result, showPageOf));
        replace(checkpointBody, checkpointsTable(checkpoints, result));
        if (result.firstBad) showPageOf(result.firstBad.seq);
        else loadRecords(pages.at(-1) ?? 0);
      })
      .catch((error: unknown) => replace(status, notice(describeError(error))))
      .finally(() => (verifyButton.disabled = false));
  };

  verifyButton.addEventListener('click', verify);
  filterForm.addEventListener('submit', (event) => {
    event.preventDefault();
    pages.splice(0, pages.length, 0);
    loadRecords(0);
  });
  exportButton.addEventListener('click', () => {
    exportButton.disabled = true;
    replace(exportMessage);
    download('/audit/export', 'federa-audit.jsonl')
      .then(() => replace(exportMessage, 'Saved. Check it offline: federa audit verify --bundle FILE --ca ca.pem'))
      .catch((error: unknown) => replace(exportMessage, notice(describeError(error))))
      .finally(() => (exportButton.disabled = false));
  });
  verify();

  return {
    element: h(
      'div',
      { class: 'view', id: 'audit-view' },
      h('div', { class: 'view-head' }, h('h1', {}, 'Audit'), h('div', { class: 'controls' }, exportMessage, exportButton)),
      h('section', { class: 'card', id: 'verification' }, h('div', { class: 'card-head' }, h('h2', {}, 'Verification'), verifyButton), status),
      h('section', { class: 'card wide', id: 'audit-records' }, h('h2', {}, 'Records'), filterForm, records, pager),
      h('section', { class: 'card', id: 'checkpoints' }, h('h2', {}, 'Signed checkpoints'), checkpointBody),
      reconcileCard(),
    ),
  };
}

function verificationBanner(v: AuditVerification, show: (seq: number) => void): HTMLElement {
  const checkpointText =
    v.checkpoints.total === 0
      ? 'no signed checkpoints (a coordinator without a kit signs none)'
      : `${v.checkpoints.verified} of ${v.checkpoints.total} signed checkpoints verified, latest at seq ${v.checkpoints.latest?.seq ?? '-'} (${formatTime(v.checkpoints.latest?.at)})`;
  const lines = [
    `${v.records} records; head seq ${v.head?.seq ?? '-'} ${shortHash(v.head?.hash)}`,
    checkpointText,
    v.uncheckpointed > 0 ? `${v.uncheckpointed} records after the latest checkpoint: only the hash chain vouches for them` : 'every record is covered by a signed checkpoint',
  ];
  if (v.ok) {
    return h('div', { class: 'banner banner-ok', 'data-ok': 'true' }, h('div', { class: 'banner-title' }, '✓ Audit log intact'), h('ul', {}, lines.map((l) => h('li', {}, l))));
  }
  const jump = v.firstBad ? h('button', { type: 'button', class: 'secondary', id: 'show-flagged' }, `Show record ${v.firstBad.seq}`) : null;
  const firstBad = v.firstBad;
  if (jump && firstBad) jump.addEventListener('click', () => show(firstBad.seq));
  return h(
    'div',
    { class: 'banner banner-bad', 'data-ok': 'false', 'data-first-bad': v.firstBad?.seq ?? '' },
    h('div', { class: 'banner-title' }, v.firstBad ? `✗ Audit log BROKEN at record ${v.firstBad.seq}` : '✗ Audit log checkpoints do not verify'),
    v.firstBad ? h('p', { class: 'banner-reason', id: 'first-bad-reason' }, v.firstBad.reason) : null,
    v.checkpoints.failures.length > 0
      ? h('div', {}, h('strong', {}, 'Checkpoint failures'), h('ul', { id: 'checkpoint-failures' }, v.checkpoints.failures.map((f) => h('li', {}, `checkpoint at seq ${f.seq}: ${f.reason}`))))
      : null,
    h('ul', {}, lines.map((l) => h('li', {}, l))),
    jump,
  );
}

function recordsTable(records: AuditRecord[], verification: AuditVerification | null): HTMLElement {
  if (records.length === 0) return h('p', { class: 'empty' }, 'No records match.');
  const bad = verification?.firstBad ?? null;
  const rows = records.flatMap((record) => {
    const flagged = bad !== null && record.seq === bad.seq;
    const details = JSON.stringify(record.details);
    const row = h(
      'tr',
      { 'data-seq': record.seq, class: flagged ? 'flagged' : null },
      h('td', { class: 'num' }, record.seq),
      h('td', { class: 'nowrap' }, formatTime(record.at)),
      h('td', {}, h('code', {}, record.kind)),
      h('td', { class: 'mono' }, record.actor),
      h('td', { class: 'mono', title: record.studyId ?? '' }, record.studyId ? shortHash(record.studyId, 8) : '-'),
      h('td', { class: 'num' }, record.round ?? '-'),
      h('td', {}, record.siteId ?? '-'),
      h('td', { class: 'details' }, details.length > 140 ? h('details', {}, h('summary', {}, `${details.slice(0, 120)}…`), h('pre', {}, JSON.stringify(record.details, null, 2))) : h('code', {}, details)),
      h('td', { class: 'mono', title: record.hash }, flagged ? badge('flagged', 'bad') : shortHash(record.hash, 10)),
    );
    return flagged && bad ? [row, h('tr', { class: 'flagged-reason', 'data-flagged': record.seq }, h('td', { colspan: 9 }, `⚠ ${bad.reason}`))] : [row];
  });
  return table(['Seq', 'At', 'Kind', 'Actor', 'Study', 'Round', 'Site', 'Details', 'Hash'], rows, { class: 'records', id: 'records' });
}

function checkpointsTable(checkpoints: AuditCheckpoint[], verification: AuditVerification): HTMLElement {
  if (checkpoints.length === 0) return h('p', { class: 'empty' }, 'No signed checkpoints yet.');
  const rows = [...checkpoints].reverse().map((c) => {
    const failure = verification.checkpoints.failures.find((f) => f.seq === c.seq);
    return h(
      'tr',
      { 'data-seq': c.seq, class: failure ? 'flagged' : null },
      h('td', { class: 'num' }, c.seq),
      h('td', { class: 'nowrap' }, formatTime(c.at)),
      h('td', {}, c.consortium),
      h('td', { class: 'mono', title: c.certificateFingerprint }, shortHash(c.certificateFingerprint, 23)),
      h('td', { class: 'mono', title: c.hash }, shortHash(c.hash, 12)),
      h('td', {}, failure ? h('span', {}, badge('fails', 'bad'), ` ${failure.reason}`) : badge('verified', 'ok')),
    );
  });
  return table(['Seq', 'Signed', 'Consortium', 'Certificate', 'Head hash', 'Signature'], rows, { id: 'checkpoint-table' });
}
