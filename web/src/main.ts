import './style.css';
import { apiKey, setApiKey } from './api';
import { AppState } from './appState';
import { h } from './dom';
import { chatTab } from './tabs/chatTab';
import { modelTab } from './tabs/modelTab';
import { notebookTab } from './tabs/notebookTab';
import { paramsPanel } from './tabs/paramsPanel';
import { load, save } from './storage';

/** Layout: header with tabs and the model badge; the tab; the Parameters panel beside it (below on phones). */
const state = new AppState();
const tabs = { chat: chatTab(state), model: modelTab(state), notebook: notebookTab(state) } as const;
type TabName = keyof typeof tabs;

const badge = h('span', { class: 'badge', id: 'model-badge' });
const showModel = (): void => {
  badge.textContent = state.model ? state.model.id : 'no model';
  badge.classList.toggle('off', !state.model);
};
state.onChange(showModel);
showModel();

const nav = h('nav', { role: 'tablist' });
const select = (name: TabName): void => {
  for (const [n, el] of Object.entries(tabs)) el.hidden = n !== name;
  for (const b of nav.querySelectorAll('button')) b.setAttribute('aria-selected', String(b.dataset.tab === name));
  save('tab', name);
};
for (const name of Object.keys(tabs) as TabName[]) {
  nav.append(h('button', { role: 'tab', id: `tab-button-${name}`, 'data-tab': name, onclick: () => select(name) }, name[0].toUpperCase() + name.slice(1)));
}

const key = h('input', { id: 'api-key', type: 'password', placeholder: 'API key (if the server has one)', value: apiKey(), autocomplete: 'off' });
key.addEventListener('change', () => setApiKey(key.value));

document.querySelector('#app')?.append(
  h('header', {}, h('h1', {}, 'qllama'), nav, badge, key),
  h('main', {}, h('div', { class: 'tabs' }, ...Object.values(tabs)), paramsPanel(state)),
);
const saved = load('tab', (v) => (typeof v === 'string' && v in tabs ? (v as TabName) : null), 'model');
select(saved);

