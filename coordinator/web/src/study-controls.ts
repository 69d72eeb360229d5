import { api, describeError } from './api.js';
import { h, notice, replace } from './dom.js';
import type { StudyStatus, StudySummary } from './types.js';
import { CAN, type AppContext } from './view.js';

type Action = 'start' | 'pause' | 'resume' | 'stop';

const LABELS: Record<Action, string> = { start: 'Start', pause: 'Pause', resume: 'Resume', stop: 'Stop' };

/** The actions a study's status allows, as the server's state machine does (study-control.ts). */
function actionsFor(status: string): Action[] {
  if (status === 'draft') return ['start', 'stop'];
  if (status === 'running') return ['pause', 'stop'];
  if (status === 'paused') return ['resume', 'stop'];
  return [];
}

/**
 * Start, pause, resume and stop buttons for a study, shown to whoever may use them: start to its owner, the others
 * to its owner or an admin. The server's answer (the new status, or its refusal) is shown as is.
 */
export function studyControls(context: AppContext, study: StudySummary, onChanged: (study: StudyStatus) => void, options: { withReason?: boolean } = {}): HTMLElement | null {
  const { me } = context;
  const allowed = actionsFor(study.status).filter((action) => (action === 'start' ? CAN.startStudy(me, study.owner) : CAN.steerStudy(me, study.owner)));
  if (allowed.length === 0) return null;
  const message = h('div', { class: 'control-message' });
  const reason = options.withReason ? h('input', { type: 'text', class: 'reason', placeholder: 'reason (kept in the audit log)', maxlength: 500, 'aria-label': 'Reason' }) : null;
  const buttons = allowed.map((action) => {
    const button = h('button', { type: 'button', class: action === 'stop' ? 'danger' : action === 'start' ? 'primary' : 'secondary', 'data-action': action }, LABELS[action]);
    button.addEventListener('click', () => {
      if (action === 'stop' && !window.confirm(`Stop "${study.name}"? A stopped study cannot be restarted.`)) return;
      const text = reason?.value.trim() ?? '';
      for (const b of buttons) b.disabled = true;
      replace(message);
      api<StudyStatus>('POST', `/studies/${encodeURIComponent(study.id)}/${action}`, { json: action === 'start' || text === '' ? {} : { reason: text } })
        .then((updated) => {
          if (reason) reason.value = '';
          onChanged(updated);
        })
        .catch((error: unknown) => replace(message, notice(describeError(error))))
        .finally(() => {
          for (const b of buttons) b.disabled = false;
        });
    });
    return button;
  });
  return h('div', { class: 'study-controls', 'data-study': study.id }, reason, buttons, message);
}
