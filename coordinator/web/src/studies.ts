import { ApiError, api, describeError } from './api.js';
import { badge, h, notice, progressBar, replace, statusTone, table } from './dom.js';
import { formatTime, shortHash } from './format.js';
import { studyControls } from './study-controls.js';
import type { StudyStatus, StudySummary } from './types.js';
import { CAN, type AppContext, type View } from './view.js';

/** The list has no event stream (that is per study): it refreshes itself at this pace while open. */
const REFRESH_MS = 10_000;

const EXAMPLE = `# A small study (the fields and schema of examples/studies/*.yaml and POST /api/v1/studies).
name: lesion screening, small CNN
model:
  architecture: small-cnn
  inputSize: 32          # images are resized to 32x32
  channels: 1            # grey
  classes: 2
  seed: 1
classNames: [normal, lesion]

rounds: 3
minSites: 2
localEpochs: 1
batchSize: 8
learningRate: 0.01
`;

/** Rounds done of the total: a closed round counts, the one in progress does not. */
export function roundsDone(study: StudySummary & { rounds?: StudyStatus['rounds'] }): number {
  if (study.status === 'completed') return study.totalRounds;
  if (study.rounds) return study.rounds.filter((r) => r.status === 'closed').length;
  return Math.max(0, study.currentRound - (study.status === 'running' || study.status === 'paused' ? 1 : 0));
}

export function studiesView(context: AppContext): View {
  const listBody = h('div', { id: 'study-list' }, h('p', { class: 'muted' }, 'Loading studies…'));
  const refreshButton = h('button', { type: 'button', class: 'secondary', id: 'refresh-studies' }, 'Refresh');
  let timer: number | undefined;

  const load = (): void => {
    api<StudySummary[]>('GET', '/studies')
      .then((studies) => replace(listBody, studiesTable(context, studies, load)))
      .catch((error: unknown) => replace(listBody, notice(describeError(error))));
  };
  refreshButton.addEventListener('click', load);
  load();
  timer = window.setInterval(load, REFRESH_MS);

  const element = h(
    'div',
    { class: 'view', id: 'studies-view' },
    h('div', { class: 'view-head' }, h('h1', {}, 'Studies'), refreshButton),
    h('section', { class: 'card' }, listBody),
    CAN.createStudies(context.me.role) ? createForm(context) : null,
  );
  return {
    element,
    dispose: () => {
      if (timer !== undefined) window.clearInterval(timer);
      timer = undefined;
    },
  };
}

function studiesTable(context: AppContext, studies: StudySummary[], reload: () => void): HTMLElement {
  if (studies.length === 0) return h('p', { class: 'empty' }, CAN.createStudies(context.me.role) ? 'No studies yet: define one below.' : 'No studies yet.');
  const rows = studies.map((study) => {
    const done = roundsDone(study);
    return h(
      'tr',
      { 'data-study': study.id },
      h('td', {}, h('a', { href: `#/studies/${study.id}`, class: 'study-link' }, study.name)),
      h('td', {}, badge(study.status, statusTone(study.status))),
      h('td', { class: 'rounds' }, progressBar(`round ${Math.min(study.currentRound, study.totalRounds)} of ${study.totalRounds}`, done / Math.max(1, study.totalRounds), { class: 'progress compact' })),
      h('td', {}, study.owner ?? '-'),
      h('td', { class: 'nowrap' }, formatTime(study.createdAt)),
      h('td', { class: 'mono', title: study.specHash }, shortHash(study.specHash)),
      h('td', {}, studyControls(context, study, reload)),
    );
  });
  return table(['Study', 'Status', 'Progress', 'Owner', 'Created', 'Hash', ''], rows, { class: 'studies' });
}

/** Which format a pasted definition is in: JSON if it looks like an object, otherwise YAML (comments welcome). */
function bodyOf(text: string): { json: unknown } | { text: { body: string; contentType: string } } {
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) {
    try {
      return { json: JSON.parse(trimmed) as unknown };
    } catch (error) {
      throw new ApiError(400, 'the definition is not valid JSON', [`(JSON): ${error instanceof Error ? error.message : String(error)}`]);
    }
  }
  return { text: { body: text, contentType: 'application/yaml' } };
}

/**
 * Define a study by pasting its YAML or JSON. The server validates it with the schema sites use; its issues (field,
 * and for YAML line and column) are listed next to the text.
 */
function createForm(context: AppContext): HTMLElement {
  const textarea = h('textarea', { id: 'definition', name: 'definition', rows: 22, spellcheck: 'false', placeholder: 'Paste YAML or JSON here, or insert the example.', 'aria-describedby': 'definition-issues' });
  const issues = h('div', { id: 'definition-issues', class: 'issues', 'aria-live': 'polite' }, h('p', { class: 'muted' }, 'The definition is checked by the coordinator when you create the study; problems show here.'));
  const submit = h('button', { type: 'submit', class: 'primary', id: 'create-study' }, 'Create study');
  const example = h('button', { type: 'button', class: 'secondary', id: 'insert-example' }, 'Insert example');
  example.addEventListener('click', () => {
    textarea.value = EXAMPLE;
    textarea.focus();
  });
  const form = h(
    'form',
    { class: 'card', id: 'create-form' },
    h('h2', {}, 'New study'),
    h('p', { class: 'muted' }, 'Paste a study definition in YAML or JSON (see examples/studies/). Sites train only after each hospital approves the study by its hash.'),
    h('div', { class: 'definition-layout' }, h('div', { class: 'definition-input' }, textarea, h('div', { class: 'form-actions' }, submit, example)), issues),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (textarea.value.trim() === '') {
      replace(issues, notice('Paste a definition first.'));
      return;
    }
    submit.disabled = true;
    replace(issues, notice('Checking…', 'info'));
    Promise.resolve()
      .then(() => api<StudyStatus>('POST', '/studies', bodyOf(textarea.value)))
      .then((study) => {
        replace(issues, notice(`Created "${study.name}".`, 'ok'));
        context.navigate(`#/studies/${study.id}`);
      })
      .catch((error: unknown) => {
        const list = error instanceof ApiError && error.issues.length > 0 ? h('ul', { class: 'issue-list' }, error.issues.map((issue) => h('li', {}, issue))) : null;
        replace(issues, notice(describeError(error)), list);
      })
      .finally(() => {
        submit.disabled = false;
      });
  });
  return form;
}
