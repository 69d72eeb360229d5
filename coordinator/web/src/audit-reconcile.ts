import { api, describeError } from './api.js';
import { badge, h, notice, replace, table } from './dom.js';
import { formatTime, shortHash } from './format.js';
import type { ReconcileItem, ReconciliationResult } from './types.js';

/** A site ledger is a few hundred bytes per message; the server takes up to 64 MiB. */
const MAX_LEDGER_BYTES = 64 * 1024 * 1024;

/**
 * Reconciliation: an auditor uploads a site's privacy ledger (state/ledger/ledger.jsonl at the site) and the
 * coordinator matches it with its own records of that site (POST /audit/reconcile). Shown: whether the ledger itself
 * is intact, then every message either side has and the other lacks or has with other bytes.
 */
export function reconcileCard(): HTMLElement {
  const file = h('input', { type: 'file', id: 'ledger-file', accept: '.jsonl,.ndjson,application/x-ndjson,text/plain', 'aria-label': 'Site ledger file' });
  const button = h('button', { type: 'submit', class: 'primary', id: 'reconcile-button' }, 'Reconcile');
  const result = h('div', { id: 'reconcile-result' });
  const form = h(
    'form',
    { class: 'card', id: 'reconcile' },
    h('h2', {}, 'Reconcile a site ledger'),
    h('p', { class: 'muted' }, "Upload a site's ledger file (ledger.jsonl from the site's state folder): what the site says it sent is matched against what this coordinator recorded."),
    h('div', { class: 'form-row' }, file, button),
    result,
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const chosen = file.files?.[0];
    if (!chosen) {
      replace(result, notice('Choose a ledger file first.'));
      return;
    }
    if (chosen.size > MAX_LEDGER_BYTES) {
      replace(result, notice(`The file is ${chosen.size} bytes; the coordinator takes ledgers up to 64 MiB.`));
      return;
    }
    button.disabled = true;
    replace(result, h('p', { class: 'muted' }, `Reconciling ${chosen.name}…`));
    chosen
      .text()
      .then((text) => api<ReconciliationResult>('POST', '/audit/reconcile', { text: { body: text, contentType: 'application/x-ndjson' } }))
      .then((answer) => replace(result, resultElement(chosen.name, answer)))
      .catch((error: unknown) => replace(result, notice(describeError(error))))
      .finally(() => (button.disabled = false));
  });
  return form;
}

function itemsTable(title: string, items: ReconcileItem[]): HTMLElement | null {
  if (items.length === 0) return null;
  const rows = items.map((item) =>
    h(
      'tr',
      {},
      h('td', {}, item.kind),
      h('td', { class: 'mono', title: item.studyId ?? '' }, item.studyId ? shortHash(item.studyId, 8) : '-'),
      h('td', { class: 'num' }, item.round ?? '-'),
      h('td', { class: 'num' }, item.ledgerLine ?? '-'),
      h('td', { class: 'num' }, item.auditSeq ?? '-'),
      h('td', { class: 'nowrap' }, formatTime(item.at)),
      h('td', { class: 'detail' }, item.reason),
    ),
  );
  return h('div', { class: 'reconcile-group', 'data-group': title }, h('h3', {}, `${title} (${items.length})`), table(['Message', 'Study', 'Round', 'Ledger line', 'Audit seq', 'At', 'Why'], rows));
}

function resultElement(name: string, answer: ReconciliationResult): HTMLElement {
  const { ledger, reconciliation: r } = answer;
  const ok = ledger.ok && r.ok;
  const verified = ledger.receipts.filter((x) => x.status === 'verified').length;
  const altered: ReconcileItem[] = r.altered.map((a) => ({
    ...a,
    sha256: a.auditSha256,
    bytes: a.auditBytes,
    reason: `${a.reason} (ledger ${shortHash(a.ledgerSha256)}, coordinator ${shortHash(a.auditSha256)})`,
  }));
  return h(
    'div',
    { class: 'reconcile-answer', 'data-ok': String(ok) },
    h(
      'div',
      { class: `banner ${ok ? 'banner-ok' : 'banner-bad'}` },
      h('div', { class: 'banner-title' }, ok ? `✓ ${r.siteId}: the ledger and the audit log agree` : `✗ ${r.siteId}: the ledger and the audit log disagree`),
      h(
        'ul',
        {},
        h('li', {}, `${name}: ${ledger.entries} entries, chain ${ledger.ok ? 'intact' : 'BROKEN'}; ${verified} receipts verified${ledger.caChecked ? ' against the consortium CA' : ''}`),
        h('li', {}, `${r.matched} messages matched; ${r.auditRecords} audit records about ${r.siteId}`),
        h('li', {}, `missing ${r.missing.length}, extra ${r.extra.length}, altered ${r.altered.length}, refused ${r.refused.length}, not covered ${r.notCovered.length}`),
        r.receipts.failures.length > 0 ? h('li', {}, `${r.receipts.failures.length} receipts failed: ${r.receipts.failures.map((f) => f.reason).join('; ')}`) : null,
      ),
    ),
    ledger.problems.length > 0
      ? h('div', {}, h('h3', {}, 'Ledger problems'), h('ul', {}, ledger.problems.map((p) => h('li', {}, `line ${p.line}${p.seq === null ? '' : ` (seq ${p.seq})`}: ${p.reason}`))))
      : null,
    itemsTable('Missing at the coordinator', r.missing),
    itemsTable('Extra at the coordinator', r.extra),
    itemsTable('Altered', altered),
    itemsTable('Refused by the coordinator', r.refused),
    itemsTable('Not covered by the audit log yet', r.notCovered),
    ok ? badge('reconciled', 'ok') : null,
  );
}
