/**
 * A tiny element builder. Every piece of data reaches the page as a text node or an attribute value, never as
 * HTML, so a study name or an audit detail cannot inject markup (and no inline script could run anyway: CSP).
 */

type Child = Node | string | number | null | undefined | false;
type Attributes = Record<string, string | number | boolean | null | undefined | EventListener>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attributes: Attributes = {}, ...children: Array<Child | Child[]>): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (typeof value === 'function') element.addEventListener(name.replace(/^on/, ''), value);
    else if (value === true) element.setAttribute(name, '');
    else element.setAttribute(name, String(value));
  }
  append(element, ...children);
  return element;
}

export function append(parent: Node, ...children: Array<Child | Child[]>): void {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(typeof child === 'string' || typeof child === 'number' ? document.createTextNode(String(child)) : child);
  }
}

/** Replaces an element's content. */
export function replace(parent: Element, ...children: Array<Child | Child[]>): void {
  parent.replaceChildren();
  append(parent, ...children);
}

/** A table from a header row and body rows. */
export function table(headers: string[], rows: HTMLTableRowElement[], attributes: Attributes = {}): HTMLTableElement {
  return h('table', attributes, h('thead', {}, h('tr', {}, headers.map((title) => h('th', { scope: 'col' }, title)))), h('tbody', {}, rows));
}

/** A small coloured label for a status word. */
export function badge(text: string, tone: 'ok' | 'bad' | 'warn' | 'info' | 'muted' = 'muted'): HTMLSpanElement {
  return h('span', { class: `badge badge-${tone}` }, text);
}

/** The tone a study or round status is shown in. */
export function statusTone(status: string): 'ok' | 'bad' | 'warn' | 'info' | 'muted' {
  if (status === 'completed' || status === 'closed' || status === 'reported') return 'ok';
  if (status === 'failed' || status === 'cancelled' || status === 'refused' || status === 'dropped') return 'bad';
  if (status === 'paused' || status === 'aggregating' || status === 'switching' || status === 'waiting') return 'warn';
  if (status === 'running' || status === 'open') return 'info';
  return 'muted';
}

/** A progress bar with a label; `fraction` in [0, 1]. */
export function progressBar(label: string, fraction: number, attributes: Attributes = {}): HTMLDivElement {
  const fill = h('div', { class: 'progress-fill' });
  fill.style.width = `${Math.round(Math.max(0, Math.min(1, fraction)) * 1000) / 10}%`;
  return h(
    'div',
    { class: 'progress', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': Math.round(fraction * 100), ...attributes },
    h('div', { class: 'progress-label' }, label),
    h('div', { class: 'progress-track' }, fill),
  );
}

/** A message box for errors and notices. */
export function notice(text: string, tone: 'error' | 'info' | 'ok' = 'error', attributes: Attributes = {}): HTMLDivElement {
  return h('div', { class: `notice notice-${tone}`, role: tone === 'error' ? 'alert' : 'status', ...attributes }, text);
}
