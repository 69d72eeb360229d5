import { api, describeError, forgetToken, setUnauthorizedHandler, storedToken } from './api.js';
import { auditView } from './audit.js';
import { h, notice, replace } from './dom.js';
import { loginView } from './login.js';
import { sitesView } from './sites.js';
import { studiesView } from './studies.js';
import { studyDetailView } from './study-detail.js';
import type { Principal, Role } from './types.js';
import { CAN, type AppContext, type View } from './view.js';

/** The navigation a role sees. Hiding is a courtesy: a view opened anyway gets the API's own refusal. */
const NAV: Array<{ hash: string; label: string; visible: (role: Role) => boolean }> = [
  { hash: '#/studies', label: 'Studies', visible: () => true },
  { hash: '#/sites', label: 'Sites', visible: () => true },
  { hash: '#/audit', label: 'Audit', visible: CAN.audit },
];

const root = document.getElementById('app');
if (!root) throw new Error('the page has no #app element');
const app: HTMLElement = root;
let current: View | null = null;
let me: Principal | null = null;

function show(view: View): void {
  current?.dispose?.();
  current = view;
  replace(app, view.element);
}

function signOut(message: string | null): void {
  forgetToken();
  me = null;
  current?.dispose?.();
  current = null;
  show(loginView(signedIn, message));
}

function signedIn(principal: Principal): void {
  me = principal;
  if (!location.hash || location.hash === '#/' || location.hash === '#') location.hash = '#/studies';
  else route();
}

function shell(principal: Principal, active: string, content: View): View {
  const nav = h(
    'nav',
    { class: 'nav', 'aria-label': 'Views' },
    NAV.filter((item) => item.visible(principal.role)).map((item) =>
      h('a', { href: item.hash, class: active === item.hash ? 'active' : null, 'data-nav': item.hash.slice(2) }, item.label),
    ),
  );
  const logout = h('button', { id: 'logout', type: 'button', class: 'secondary' }, 'Sign out');
  logout.addEventListener('click', () => signOut('Signed out.'));
  const header = h(
    'header',
    { class: 'topbar' },
    h('div', { class: 'brand' }, h('span', { class: 'brand-mark' }, 'Federa'), h('span', { class: 'brand-sub' }, 'consortium dashboard')),
    nav,
    h('div', { class: 'user' }, h('span', { id: 'whoami' }, principal.name, ' · ', h('span', { class: 'role', 'data-role': principal.role }, principal.role)), logout),
  );
  return {
    element: h('div', { class: 'shell' }, header, h('main', { class: 'content' }, content.element)),
    ...(content.dispose ? { dispose: content.dispose } : {}),
  };
}

function route(): void {
  if (!me) return;
  const principal = me;
  const context: AppContext = { me: principal, navigate: (hash) => (location.hash = hash) };
  const hash = location.hash || '#/studies';
  const study = /^#\/studies\/([A-Za-z0-9-]{1,64})$/.exec(hash);
  let active = hash;
  let content: View;
  if (study?.[1]) {
    active = '#/studies';
    content = studyDetailView(context, study[1]);
  } else if (hash === '#/studies') {
    content = studiesView(context);
  } else if (hash === '#/sites') {
    content = sitesView(context);
  } else if (hash === '#/audit') {
    content = auditView(context);
  } else {
    content = { element: notice(`There is no view ${hash}.`) };
  }
  show(shell(principal, active, content));
}

setUnauthorizedHandler((message) => signOut(`Your token no longer works: ${message}`));
window.addEventListener('hashchange', route);

const token = storedToken();
if (token === null) {
  show(loginView(signedIn));
} else {
  api<Principal>('GET', '/whoami', { token })
    .then(signedIn)
    .catch((error: unknown) => signOut(describeError(error)));
}
