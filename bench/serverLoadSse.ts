/**
 * One streaming client of the server load test: raw fetch + an SSE reader strict enough to
 * judge a stream well-formed (every event `data: <json>`, one finish_reason, `[DONE]` last and
 * nothing after, text = the concatenation of its deltas), with the timings the report needs.
 */

export type Endpoint = 'chat' | 'completion';

export interface StreamSpec {
  readonly endpoint: Endpoint;
  /** The chat user message, or the completion prompt. */
  readonly prompt: string;
  readonly maxTokens: number;
  /** Extra body fields (ignore_eos for the request that holds the slot). */
  readonly extra?: Readonly<Record<string, unknown>>;
}

export interface StreamOptions {
  /** Abort after this many non-empty deltas (a client that leaves mid-stream). */
  readonly abortAfterDeltas?: number;
  /** Abort after this many ms whatever has come (a client that leaves while queued). */
  readonly abortAfterMs?: number;
  /** Give up (and call it a failure) after this long. */
  readonly timeoutMs: number;
  /** Called on each non-empty delta (the burst phase waits for the holder's first one). */
  readonly onDelta?: (count: number) => void;
  /** An external abort (the burst phase ends its holder with it). */
  readonly signal?: AbortSignal;
}

export type Outcome = 'complete' | 'disconnected' | 'rejected' | 'failed';

export interface StreamResult {
  readonly outcome: Outcome;
  readonly status: number;
  /** What is wrong with the stream (empty: well-formed as far as it went). */
  readonly problems: string[];
  readonly text: string;
  readonly deltas: number;
  readonly finishReason: string | null;
  readonly completionTokens: number | null;
  readonly promptTokens: number | null;
  /** The error object's code of a non-200 answer. */
  readonly errorCode: string | null;
  readonly startedAt: number;
  readonly firstTokenAt: number | null;
  readonly endedAt: number;
}

export const MODEL_ID = 'tiny-vicuna-4k';

export function requestBody(spec: StreamSpec, stream: boolean): Record<string, unknown> {
  const common = {
    model: MODEL_ID, max_tokens: spec.maxTokens, temperature: 0, stream,
    ...(stream ? { stream_options: { include_usage: true } } : {}),
    ...spec.extra,
  };
  return spec.endpoint === 'chat'
    ? { ...common, messages: [{ role: 'user', content: spec.prompt }] }
    : { ...common, prompt: spec.prompt };
}

export function endpointPath(endpoint: Endpoint): string {
  return endpoint === 'chat' ? '/v1/chat/completions' : '/v1/completions';
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Checks one decoded chunk against the OpenAI stream schema; returns its text piece. */
class StreamChecker {
  readonly problems: string[] = [];
  text = '';
  deltas = 0;
  finishReason: string | null = null;
  usage: { prompt: number; completion: number } | null = null;
  private id: string | null = null;
  private chunks = 0;
  private doneSeen = false;

  constructor(private readonly endpoint: Endpoint) {}

  get done(): boolean { return this.doneSeen; }

  private problem(p: string): void {
    if (this.problems.length < 8) this.problems.push(p);
  }

  /** One SSE event (the text between blank lines); returns the non-empty text piece, if any. */
  event(raw: string): string {
    if (this.doneSeen) {
      this.problem(`an event after [DONE]: ${raw.slice(0, 80)}`);
      return '';
    }
    const lines = raw.split('\n');
    if (lines.length !== 1 || !lines[0].startsWith('data: ')) {
      this.problem(`not a single data line: ${JSON.stringify(raw.slice(0, 80))}`);
      return '';
    }
    const data = lines[0].slice('data: '.length);
    if (data === '[DONE]') {
      this.doneSeen = true;
      return '';
    }
    let chunk: unknown;
    try {
      chunk = JSON.parse(data);
    } catch {
      this.problem(`not JSON: ${data.slice(0, 80)}`);
      return '';
    }
    return this.chunk(chunk);
  }

  private chunk(c: unknown): string {
    this.chunks++;
    if (!isRecord(c)) { this.problem('a chunk that is not an object'); return ''; }
    if ('error' in c) { this.problem(`an error event: ${JSON.stringify(c.error).slice(0, 200)}`); return ''; }
    const wantObject = this.endpoint === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    if (c.object !== wantObject) this.problem(`object ${String(c.object)}, want ${wantObject}`);
    if (c.model !== MODEL_ID) this.problem(`model ${String(c.model)}`);
    if (typeof c.id !== 'string') this.problem('no id');
    else if (this.id === null) this.id = c.id;
    else if (c.id !== this.id) this.problem('the id changed mid-stream');
    if (!Array.isArray(c.choices)) { this.problem('no choices array'); return ''; }
    if (c.choices.length === 0) {
      // the include_usage chunk: last, after the finish_reason
      const u = c.usage;
      if (this.finishReason === null) this.problem('a usage chunk before the finish_reason');
      if (this.usage !== null) this.problem('two usage chunks');
      if (!isRecord(u) || typeof u.prompt_tokens !== 'number' || typeof u.completion_tokens !== 'number' || typeof u.total_tokens !== 'number') {
        this.problem(`bad usage ${JSON.stringify(u)}`);
      } else {
        if (u.total_tokens !== u.prompt_tokens + u.completion_tokens) this.problem('usage total ≠ prompt + completion');
        this.usage = { prompt: u.prompt_tokens, completion: u.completion_tokens };
      }
      return '';
    }
    if (c.choices.length !== 1) this.problem(`${c.choices.length} choices`);
    const choice: unknown = c.choices[0];
    if (!isRecord(choice)) { this.problem('a choice that is not an object'); return ''; }
    if (choice.index !== 0) this.problem(`choice index ${String(choice.index)}`);
    if (this.finishReason !== null) this.problem('a choice after the finish_reason');
    const finish = choice.finish_reason;
    if (finish !== null && finish !== 'stop' && finish !== 'length') this.problem(`finish_reason ${String(finish)}`);
    let piece: unknown;
    if (this.endpoint === 'chat') {
      const delta = choice.delta;
      if (!isRecord(delta)) { this.problem('no delta'); return ''; }
      if (this.chunks === 1 && delta.role !== 'assistant') this.problem('the first chunk has no role: assistant');
      if (this.chunks > 1 && 'role' in delta) this.problem('role repeated after the first chunk');
      piece = delta.content ?? '';
    } else {
      piece = choice.text;
    }
    if (typeof piece !== 'string') { this.problem(`text of type ${typeof piece}`); return ''; }
    if (typeof finish === 'string') {
      this.finishReason = finish;
      if (piece !== '') this.problem('text in the finish chunk');
    }
    if (piece !== '') {
      this.deltas++;
      this.text += piece;
    }
    return piece;
  }

  /** At the end of a stream that should be complete. */
  finish(): void {
    if (!this.doneSeen) this.problem('no [DONE]');
    if (this.finishReason === null) this.problem('no finish_reason');
    if (this.usage === null) this.problem('no usage chunk (include_usage was asked)');
  }
}

/** Run one streaming request to its end (or until the client is told to leave). */
export async function runStream(baseUrl: string, spec: StreamSpec, options: StreamOptions): Promise<StreamResult> {
  const controller = new AbortController();
  const startedAt = performance.now();
  let firstTokenAt: number | null = null;
  let leaving = false;
  const leave = (): void => { leaving = true; controller.abort(); };
  const timer = setTimeout(() => controller.abort(new Error('timeout')), options.timeoutMs);
  const earlyTimer = options.abortAfterMs !== undefined ? setTimeout(leave, options.abortAfterMs) : undefined;
  const onExternal = (): void => leave();
  options.signal?.addEventListener('abort', onExternal, { once: true });
  const checker = new StreamChecker(spec.endpoint);
  let status = 0;
  const result = (outcome: Outcome, errorCode: string | null = null): StreamResult => ({
    outcome, status, problems: checker.problems, text: checker.text, deltas: checker.deltas, finishReason: checker.finishReason,
    completionTokens: checker.usage?.completion ?? null, promptTokens: checker.usage?.prompt ?? null, errorCode,
    startedAt, firstTokenAt, endedAt: performance.now(),
  });
  try {
    const res = await fetch(`${baseUrl}${endpointPath(spec.endpoint)}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify(requestBody(spec, true)),
      signal: controller.signal,
    });
    status = res.status;
    if (res.status !== 200) {
      const body: unknown = await res.json().catch(() => null);
      const error = isRecord(body) && isRecord(body.error) ? body.error : null;
      if (error === null || typeof error.message !== 'string' || typeof error.type !== 'string') checker.problems.push(`a ${res.status} without an OpenAI error object`);
      const code = error !== null && typeof error.code === 'string' ? error.code : null;
      return result(res.status === 429 ? 'rejected' : 'failed', code);
    }
    if (!(res.headers.get('content-type') ?? '').startsWith('text/event-stream')) checker.problems.push(`content-type ${res.headers.get('content-type')}`);
    if (res.body === null) { checker.problems.push('no body'); return result('failed'); }
    const decoder = new TextDecoder();
    let buffered = '';
    const reader = res.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      let cut: number;
      while ((cut = buffered.indexOf('\n\n')) >= 0) {
        const piece = checker.event(buffered.slice(0, cut));
        buffered = buffered.slice(cut + 2);
        if (piece !== '') {
          firstTokenAt ??= performance.now();
          options.onDelta?.(checker.deltas);
          if (options.abortAfterDeltas !== undefined && checker.deltas >= options.abortAfterDeltas && !checker.done) {
            leave();
            await reader.cancel().catch(() => undefined);
            return result('disconnected');
          }
        }
      }
    }
    buffered += decoder.decode();
    if (buffered.trim() !== '') checker.problems.push(`a partial event at the end: ${JSON.stringify(buffered.slice(0, 80))}`);
    checker.finish();
    return result(checker.problems.length === 0 ? 'complete' : 'failed');
  } catch (err) {
    if (leaving) return result('disconnected');
    checker.problems.push(`${err instanceof Error ? err.message : String(err)}${controller.signal.aborted ? ' (timed out)' : ''}`);
    return result('failed');
  } finally {
    clearTimeout(timer);
    if (earlyTimer !== undefined) clearTimeout(earlyTimer);
    options.signal?.removeEventListener('abort', onExternal);
  }
}

/** The same request without streaming: the reference a greedy stream must reproduce. */
export async function runPlain(baseUrl: string, spec: StreamSpec): Promise<{ text: string; finishReason: string; completionTokens: number }> {
  const res = await fetch(`${baseUrl}${endpointPath(spec.endpoint)}`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(requestBody(spec, false)),
  });
  const body: unknown = await res.json();
  if (res.status !== 200 || !isRecord(body) || !Array.isArray(body.choices) || !isRecord(body.usage)) {
    throw new Error(`reference request failed: ${res.status} ${JSON.stringify(body).slice(0, 300)}`);
  }
  const choice: unknown = body.choices[0];
  if (!isRecord(choice)) throw new Error('reference reply has no choice');
  const text = spec.endpoint === 'chat' ? (isRecord(choice.message) ? choice.message.content : null) : choice.text;
  if (typeof text !== 'string' || typeof choice.finish_reason !== 'string' || typeof body.usage.completion_tokens !== 'number') {
    throw new Error(`reference reply malformed: ${JSON.stringify(body).slice(0, 300)}`);
  }
  return { text, finishReason: choice.finish_reason, completionTokens: body.usage.completion_tokens };
}
