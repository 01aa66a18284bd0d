import { load, save } from './storage';

/** The server's error object (OpenAI's shape). */
export class ApiFailure extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = 'ApiFailure';
  }
}

export function apiKey(): string {
  return load('apiKey', (v) => (typeof v === 'string' ? v : null), '');
}

export function setApiKey(key: string): void {
  save('apiKey', key);
}

function headers(): Record<string, string> {
  const key = apiKey();
  return { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) };
}

async function failure(res: Response): Promise<ApiFailure> {
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = (await res.json()) as { error?: { message?: string } };
    if (body.error?.message) message = body.error.message;
  } catch {
    // not JSON: keep the status line
  }
  return new ApiFailure(res.status, message);
}

export async function getJson<T>(path: string): Promise<T> {
  const res = await fetch(path, { headers: headers() });
  if (!res.ok) throw await failure(res);
  return (await res.json()) as T;
}

export async function postJson<T>(path: string, body: unknown, method = 'POST'): Promise<T> {
  const res = await fetch(path, { method, headers: headers(), body: JSON.stringify(body) });
  if (!res.ok) throw await failure(res);
  return (await res.json()) as T;
}

/**
 * Read server-sent events from a fetch (EventSource cannot send the Authorization header).
 * Calls `onEvent(name, data)` for each event; resolves at [DONE] or the end of the stream.
 */
export async function streamEvents(path: string, init: { body?: unknown; signal?: AbortSignal }, onEvent: (name: string, data: string) => void): Promise<void> {
  const res = await fetch(path, {
    method: init.body === undefined ? 'GET' : 'POST',
    headers: headers(),
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
    signal: init.signal,
  });
  if (!res.ok || !res.body) throw await failure(res);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) name = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length === 0) continue;
      const text = data.join('\n');
      if (text === '[DONE]') return;
      onEvent(name, text);
    }
  }
}
