import { streamEvents } from '../api';
import type { AppState } from '../appState';
import { h } from '../dom';
import { requestFields } from '../params';
import { load, save } from '../storage';

interface CompletionChunk { choices?: { text?: string; finish_reason?: string | null }[]; error?: { message: string } }

/** The Notebook tab: free text, completed in place (POST /v1/completions, no template). */
export function notebookTab(state: AppState): HTMLElement {
  const text = h('textarea', { id: 'notebook-text', rows: 18, spellcheck: false });
  text.value = load('notebook', (v) => (typeof v === 'string' ? v : null), '### Human: Write a haiku about autumn.\n### Assistant:');
  const generate = h('button', { id: 'notebook-generate', class: 'primary' }, 'Generate');
  const stop = h('button', { id: 'notebook-stop', disabled: true }, 'Stop');
  const status = h('p', { class: 'status', id: 'notebook-status', role: 'status' });
  let controller: AbortController | null = null;

  text.addEventListener('input', () => save('notebook', text.value));
  stop.addEventListener('click', () => controller?.abort());
  generate.addEventListener('click', async () => {
    if (!state.model) {
      status.textContent = 'Load a model in the Model tab first.';
      return;
    }
    controller = new AbortController();
    generate.disabled = true;
    stop.disabled = false;
    status.textContent = 'generating…';
    try {
      await streamEvents('/v1/completions', { body: { model: state.model.id, prompt: text.value, stream: true, ...requestFields(state.params) }, signal: controller.signal }, (_n, data) => {
        const chunk = JSON.parse(data) as CompletionChunk;
        if (chunk.error) throw new Error(chunk.error.message);
        const piece = chunk.choices?.[0]?.text;
        if (piece) {
          text.value += piece;
          text.scrollTop = text.scrollHeight;
        }
      });
      status.textContent = 'Done.';
    } catch (err) {
      status.textContent = controller.signal.aborted ? 'Stopped.' : `Error: ${(err as Error).message}`;
    } finally {
      controller = null;
      generate.disabled = false;
      stop.disabled = true;
      save('notebook', text.value);
    }
  });
  return h('section', { class: 'tab', id: 'tab-notebook' },
    h('div', { class: 'card' }, text, h('div', { class: 'row buttons' }, generate, stop), status));
}
