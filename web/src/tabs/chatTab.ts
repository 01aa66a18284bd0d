import { streamEvents } from '../api';
import type { AppState } from '../appState';
import { loadChat, parseChat, saveChat, EMPTY_CHAT, type Chat, type Message } from '../chatStore';
import { field, h } from '../dom';
import { requestFields } from '../params';

interface ChunkDelta { choices?: { delta?: { content?: string }; finish_reason?: string | null }[]; error?: { message: string } }

/**
 * The Chat tab: streaming replies through the model's template, Stop, Regenerate, Continue,
 * Remove last, copy, new chat, history in localStorage (download / upload as JSON).
 */
export function chatTab(state: AppState): HTMLElement {
  let chat: Chat = loadChat();
  let controller: AbortController | null = null;
  const log = h('div', { class: 'messages', id: 'chat-log', 'aria-live': 'polite' });
  const input = h('textarea', { id: 'chat-input', rows: 3, placeholder: 'Type a message (Enter to send, Shift+Enter for a new line)' });
  const system = h('textarea', { id: 'chat-system', rows: 2, placeholder: 'the template\'s default' });
  const mode = h('select', { id: 'chat-mode', 'aria-label': 'mode' }, h('option', { value: 'chat' }, 'chat'), h('option', { value: 'instruct' }, 'instruct'));
  const status = h('p', { class: 'status', id: 'chat-status', role: 'status' });
  const send = h('button', { id: 'chat-send', class: 'primary' }, 'Send');
  const stop = h('button', { id: 'chat-stop', disabled: true }, 'Stop');
  const regen = h('button', { id: 'chat-regenerate' }, 'Regenerate');
  const cont = h('button', { id: 'chat-continue' }, 'Continue');
  const removeLast = h('button', { id: 'chat-remove-last' }, 'Remove last');
  const newChat = h('button', { id: 'chat-new' }, 'New chat');
  const exportBtn = h('button', { id: 'chat-export' }, 'Download JSON');
  const importInput = h('input', { id: 'chat-import', type: 'file', accept: 'application/json,.json', hidden: true });
  const importBtn = h('button', { id: 'chat-import-button' }, 'Upload JSON');

  const persist = (): void => saveChat(chat);
  const render = (): void => {
    log.replaceChildren(...chat.messages.map((m, i) => bubble(m, i)));
    log.scrollTop = log.scrollHeight;
    system.value = chat.system;
    mode.value = chat.mode;
  };
  const bubble = (m: Message, i: number): HTMLElement => {
    const copy = h('button', { class: 'small copy', title: 'copy', onclick: () => void copyText(m.content) }, 'copy');
    return h('div', { class: `msg ${m.role}`, 'data-index': i },
      h('div', { class: 'who' }, m.role === 'user' ? 'You' : 'Assistant', copy),
      h('div', { class: 'text' }, m.content));
  };
  const busy = (on: boolean): void => {
    stop.disabled = !on;
    for (const b of [send, regen, cont, removeLast, newChat]) b.disabled = on;
  };

  /** Stream into the last (assistant) message; `continueFinal` extends it instead of starting fresh. */
  const generate = async (continueFinal: boolean): Promise<void> => {
    if (!state.model) {
      status.textContent = 'Load a model in the Model tab first.';
      return;
    }
    const history = chat.mode === 'instruct' ? lastExchange(chat.messages) : chat.messages;
    const target = chat.messages[chat.messages.length - 1];
    const body = {
      model: state.model.id,
      messages: [...(chat.system.trim() ? [{ role: 'system', content: chat.system }] : []), ...history.map((m) => ({ ...m }))],
      stream: true,
      ...(continueFinal ? { continue_final_message: true } : {}),
      ...requestFields(state.params),
    };
    if (!continueFinal) body.messages.pop(); // the empty placeholder is not sent
    controller = new AbortController();
    busy(true);
    status.textContent = 'generating…';
    const textEl = (): Element | null => log.lastElementChild?.querySelector('.text') ?? null;
    let finish = '';
    try {
      await streamEvents('/v1/chat/completions', { body, signal: controller.signal }, (_name, data) => {
        const chunk = JSON.parse(data) as ChunkDelta;
        if (chunk.error) throw new Error(chunk.error.message);
        const choice = chunk.choices?.[0];
        if (choice?.delta?.content) {
          target.content += choice.delta.content;
          const el = textEl();
          if (el) el.textContent = target.content;
          log.scrollTop = log.scrollHeight;
        }
        if (choice?.finish_reason) finish = choice.finish_reason;
      });
      status.textContent = finish === 'length' ? 'Stopped at max new tokens (Continue goes on).' : 'Done.';
    } catch (err) {
      status.textContent = controller.signal.aborted ? 'Stopped.' : `Error: ${(err as Error).message}`;
    } finally {
      controller = null;
      busy(false);
      persist();
      render();
    }
  };

  const submit = (): void => {
    const text = input.value.trim();
    if (!text || controller) return;
    input.value = '';
    chat.messages.push({ role: 'user', content: text }, { role: 'assistant', content: '' });
    persist();
    render();
    void generate(false);
  };

  send.addEventListener('click', submit);
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      submit();
    }
  });
  stop.addEventListener('click', () => controller?.abort());
  regen.addEventListener('click', () => {
    const last = chat.messages[chat.messages.length - 1];
    if (!last || last.role !== 'assistant') return;
    last.content = '';
    render();
    void generate(false);
  });
  cont.addEventListener('click', () => {
    const last = chat.messages[chat.messages.length - 1];
    if (!last || last.role !== 'assistant') return;
    void generate(true);
  });
  removeLast.addEventListener('click', () => {
    chat.messages.pop();
    persist();
    render();
  });
  newChat.addEventListener('click', () => {
    chat = { ...structuredClone(EMPTY_CHAT), system: chat.system, mode: chat.mode };
    persist();
    render();
  });
  system.addEventListener('change', () => { chat.system = system.value; persist(); });
  mode.addEventListener('change', () => { chat.mode = mode.value === 'instruct' ? 'instruct' : 'chat'; persist(); });
  exportBtn.addEventListener('click', () => {
    const url = URL.createObjectURL(new Blob([JSON.stringify(chat, null, 2)], { type: 'application/json' }));
    const a = h('a', { href: url, download: `qllama-chat-${new Date().toISOString().slice(0, 19).replace(/:/g, '-')}.json` });
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  });
  importBtn.addEventListener('click', () => importInput.click());
  importInput.addEventListener('change', async () => {
    const file = importInput.files?.[0];
    if (!file) return;
    try {
      const parsed = parseChat(JSON.parse(await file.text()));
      if (typeof parsed === 'string') throw new Error(parsed);
      chat = parsed;
      persist();
      render();
      status.textContent = `Loaded ${chat.messages.length} messages from ${file.name}.`;
    } catch (err) {
      status.textContent = `Not a qllama chat: ${(err as Error).message}`;
    }
    importInput.value = '';
  });

  render();
  return h('section', { class: 'tab', id: 'tab-chat' },
    h('div', { class: 'card chat' },
      h('div', { class: 'row' }, field('mode', mode), h('details', { class: 'system' }, h('summary', {}, 'System message'), system)),
      log,
      input,
      h('div', { class: 'row buttons' }, send, stop, regen, cont, removeLast, newChat),
      h('div', { class: 'row buttons' }, exportBtn, importBtn, importInput),
      status));
}

/** Instruct mode: each request is the system message plus the latest exchange only. */
function lastExchange(messages: readonly Message[]): Message[] {
  const lastUser = messages.map((m) => m.role).lastIndexOf('user');
  return lastUser < 0 ? [...messages] : messages.slice(lastUser);
}

async function copyText(text: string): Promise<void> {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // clipboard needs a secure context; loopback http is one, other hosts may not be
  }
}
