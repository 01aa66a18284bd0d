import { isRecord, load, save } from './storage';

export type Role = 'user' | 'assistant';

export interface Message {
  role: Role;
  content: string;
}

export type Mode = 'chat' | 'instruct';

/** One conversation, as kept in localStorage and in the downloadable JSON. */
export interface Chat {
  system: string;
  mode: Mode;
  messages: Message[];
}

export const EMPTY_CHAT: Chat = { system: '', mode: 'chat', messages: [] };

/** Accepts our own export format; anything else is refused with a reason. */
export function parseChat(raw: unknown): Chat | string {
  if (!isRecord(raw)) return 'not a JSON object';
  const messages = raw.messages;
  if (!Array.isArray(messages)) return '"messages" must be an array';
  const out: Message[] = [];
  for (const [i, m] of messages.entries()) {
    if (!isRecord(m) || (m.role !== 'user' && m.role !== 'assistant') || typeof m.content !== 'string') {
      return `messages[${i}] must be {"role": "user" | "assistant", "content": string}`;
    }
    out.push({ role: m.role, content: m.content });
  }
  return {
    system: typeof raw.system === 'string' ? raw.system : '',
    mode: raw.mode === 'instruct' ? 'instruct' : 'chat',
    messages: out,
  };
}

export function loadChat(): Chat {
  return load('chat', (raw) => {
    const c = parseChat(raw);
    return typeof c === 'string' ? null : c;
  }, structuredClone(EMPTY_CHAT));
}

export function saveChat(chat: Chat): void {
  save('chat', chat);
}
