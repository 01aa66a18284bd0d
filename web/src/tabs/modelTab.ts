import { getJson, postJson, streamEvents } from '../api';
import type { AppState } from '../appState';
import { field, h } from '../dom';

interface Settings {
  format: string; bits: number; groupSize: number | null; actOrder: boolean; weights: string;
  contextLength: number; layers: number; vocabSize: number; template: string; templateReason: string;
}
interface LocalModel { id: string; dir: string; embedded: boolean; settings?: Settings; error?: string }
interface Current { id: string; template: string; templateReason: string; contextLength: number; loadSeconds: number }
interface ModelsReply { models_dir: string; current: Current | null; loading: string | null; models: LocalModel[] }
interface Job { id: string; status: string; progress: { file: string; bytes: number; total: number } | null; dir: string | null; error: string | null }

/**
 * text-generation-webui's Model tab: download `user/repo[:branch]` (all, or one file from the
 * list), Refresh, pick from the dropdown, see the detected settings, Load / Unload.
 */
export function modelTab(state: AppState): HTMLElement {
  const select = h('select', { id: 'model-select', 'aria-label': 'model' });
  const template = h('select', { id: 'model-template', 'aria-label': 'template' });
  const ctx = h('input', { id: 'model-ctx', type: 'number', min: 16, placeholder: 'model maximum' });
  const settings = h('dl', { class: 'settings', id: 'model-settings' });
  const status = h('p', { class: 'status', id: 'model-status', role: 'status' });
  const loadBtn = h('button', { id: 'model-load', class: 'primary' }, 'Load');
  const unloadBtn = h('button', { id: 'model-unload' }, 'Unload');
  const refreshBtn = h('button', { id: 'model-refresh', title: 'read the models folder again' }, '⟳ Refresh');
  const ref = h('input', { id: 'download-ref', placeholder: 'TheBloke/stable-vicuna-13B-GPTQ:latest', spellcheck: false });
  const downloadBtn = h('button', { id: 'download-start' }, 'Download');
  const listBtn = h('button', { id: 'download-list' }, 'Get file list');
  const files = h('ul', { class: 'files', id: 'download-files' });
  const bar = h('progress', { id: 'download-progress', max: 1, value: 0, hidden: true });
  const dlStatus = h('p', { class: 'status', id: 'download-status' });
  let models: LocalModel[] = [];

  const show = (m: LocalModel | undefined): void => {
    settings.replaceChildren();
    if (!m) return;
    if (m.error) {
      settings.append(h('dt', {}, 'problem'), h('dd', { class: 'error' }, m.error));
      return;
    }
    const s = m.settings;
    if (!s) return;
    const rows: [string, string][] = [
      ['format', s.format === 'gptq' ? 'GPTQ' : s.format], ['bits', String(s.bits)], ['groupsize', s.groupSize === null ? '—' : String(s.groupSize)],
      ['act-order', s.actOrder ? 'yes' : 'no'], ['weights', s.weights], ['layers', String(s.layers)], ['vocab', String(s.vocabSize)],
      ['context', String(s.contextLength)], ['template', `${s.template} — ${s.templateReason}`],
    ];
    for (const [k, v] of rows) settings.append(h('dt', {}, k), h('dd', {}, v));
    template.value = s.template;
    ctx.placeholder = String(s.contextLength);
  };

  const refresh = async (): Promise<void> => {
    try {
      const reply = await getJson<ModelsReply>('/api/models');
      models = reply.models;
      const keep = select.value;
      select.replaceChildren(...models.map((m) => h('option', { value: m.id }, `${m.id}${m.embedded ? ' (embedded)' : ''}${m.error ? ' ⚠' : ''}`)));
      select.value = reply.current?.id ?? (models.some((m) => m.id === keep) ? keep : (models[0]?.id ?? ''));
      show(models.find((m) => m.id === select.value));
      applyCurrent(reply.current, reply.loading);
    } catch (err) {
      status.textContent = `could not list models: ${(err as Error).message}`;
    }
  };

  const applyCurrent = (cur: Current | null, loading: string | null = null): void => {
    state.setModel(cur ? { id: cur.id, template: cur.template, contextLength: cur.contextLength } : null);
    status.textContent = loading ? `loading ${loading}…` : cur
      ? `Loaded ${cur.id} (template ${cur.template}, context ${cur.contextLength}) in ${cur.loadSeconds.toFixed(1)} s`
      : 'No model loaded.';
  };

  loadBtn.addEventListener('click', async () => {
    const id = select.value;
    if (!id) return;
    loadBtn.disabled = true;
    status.textContent = `loading ${id}…`;
    try {
      const body: Record<string, unknown> = { id, template: template.value };
      if (ctx.value !== '') body.context_length = Number(ctx.value);
      const reply = await postJson<{ current: Current }>('/api/models/load', body);
      applyCurrent(reply.current);
    } catch (err) {
      status.textContent = `loading ${id} failed: ${(err as Error).message}`;
    } finally {
      loadBtn.disabled = false;
    }
  });
  unloadBtn.addEventListener('click', async () => {
    await postJson('/api/models/unload', {}).catch((err: Error) => { status.textContent = err.message; });
    applyCurrent(null);
  });
  refreshBtn.addEventListener('click', () => void refresh());
  select.addEventListener('change', () => show(models.find((m) => m.id === select.value)));

  const download = async (only?: string): Promise<void> => {
    dlStatus.textContent = 'starting…';
    bar.hidden = false;
    bar.value = 0;
    try {
      const { job } = await postJson<{ job: Job }>('/api/downloads', { ref: ref.value, ...(only ? { files: [only] } : {}) });
      let last: Job = job;
      await streamEvents(`/api/downloads/${job.id}/events`, {}, (_name, data) => {
        last = JSON.parse(data) as Job;
        const p = last.progress;
        if (p && p.total > 0) {
          bar.value = p.bytes / p.total;
          dlStatus.textContent = `${p.file}: ${(p.bytes / 1e6).toFixed(1)} / ${(p.total / 1e6).toFixed(1)} MB`;
        }
      });
      dlStatus.textContent = last.status === 'done' ? `Done: ${last.dir}. Pick it in the dropdown.` : `Download ${last.status}: ${last.error ?? ''}`;
      if (last.status === 'done') bar.value = 1;
      await refresh();
    } catch (err) {
      dlStatus.textContent = `download failed: ${(err as Error).message}`;
    }
  };
  downloadBtn.addEventListener('click', () => void download());
  listBtn.addEventListener('click', async () => {
    files.replaceChildren();
    dlStatus.textContent = 'listing…';
    try {
      const reply = await postJson<{ files: { path: string; size: number }[] }>('/api/hub/files', { ref: ref.value });
      dlStatus.textContent = `${reply.files.length} files`;
      files.append(...reply.files.map((f) => h('li', {},
        h('span', {}, `${f.path} (${(f.size / 1e6).toFixed(1)} MB)`),
        h('button', { class: 'small', onclick: () => void download(f.path) }, 'Download'))));
    } catch (err) {
      dlStatus.textContent = `listing failed: ${(err as Error).message}`;
    }
  });

  void getJson<{ templates: string[] }>('/api/templates').then((r) => {
    template.replaceChildren(...r.templates.map((t) => h('option', { value: t }, t)));
    show(models.find((m) => m.id === select.value));
  }).catch(() => undefined);
  // Also shows a model the server already has (--model) in the header, whichever tab is open.
  void refresh();

  return h('section', { class: 'tab', id: 'tab-model' },
    h('div', { class: 'card' },
      h('h2', {}, 'Model'),
      h('div', { class: 'row' }, select, refreshBtn),
      h('div', { class: 'row' }, field('template', template), field('context length', ctx)),
      h('div', { class: 'row' }, loadBtn, unloadBtn),
      status,
      h('h3', {}, 'Detected settings'),
      h('p', { class: 'hint' }, 'Read from the files (quantize_config.json, the tensors, config.json): bits, groupsize and act-order need no flags. Template and context length can be changed before loading.'),
      settings),
    h('div', { class: 'card' },
      h('h2', {}, 'Download'),
      field('Hub model (user/repo or user/repo:branch)', ref, 'The act-order file of TheBloke/stable-vicuna-13B-GPTQ lives on branch "latest".'),
      h('div', { class: 'row' }, downloadBtn, listBtn),
      bar, dlStatus, files));
}
