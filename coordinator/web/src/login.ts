import { ApiError, api, describeError, storeToken } from './api.js';
import { h, notice, replace } from './dom.js';
import type { Principal } from './types.js';
import type { View } from './view.js';

/**
 * The sign-in form: a bearer token, checked with GET /whoami before it is kept. A refused token shows the server's
 * reason; nothing is stored until the server accepts it.
 */
export function loginView(onSignedIn: (me: Principal) => void, message: string | null = null): View {
  const input = h('input', {
    id: 'token',
    type: 'password',
    name: 'token',
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: 'fed_…',
    required: true,
    'aria-describedby': 'login-hint',
  });
  const button = h('button', { type: 'submit', class: 'primary', id: 'sign-in' }, 'Sign in');
  const status = h('div', { id: 'login-status' }, message ? notice(message) : null);
  const form = h(
    'form',
    { class: 'card login-card', id: 'login-form', novalidate: true },
    h('h1', {}, 'Sign in to Federa'),
    h(
      'p',
      { id: 'login-hint', class: 'muted' },
      'Paste the API token an administrator issued to you. It is kept in this tab only (session storage) and sent with every request; the server decides what your role may see and do.',
    ),
    h('label', { for: 'token' }, 'API token'),
    input,
    h('div', { class: 'form-actions' }, button),
    status,
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (token === '') {
      replace(status, notice('Enter a token.'));
      return;
    }
    button.disabled = true;
    replace(status, notice('Checking the token…', 'info'));
    api<Principal>('GET', '/whoami', { token })
      .then((me) => {
        storeToken(token);
        onSignedIn(me);
      })
      .catch((error: unknown) => {
        const text = error instanceof ApiError && error.status === 401 ? `Token refused: ${error.message}` : describeError(error);
        replace(status, notice(text));
        input.select();
      })
      .finally(() => {
        button.disabled = false;
      });
  });
  queueMicrotask(() => input.focus());
  return { element: h('div', { class: 'login-page' }, form) };
}
