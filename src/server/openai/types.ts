/**
 * Response shapes of OpenAI's chat completion and completion endpoints, as far as qllama fills
 * them. Field names follow the wire format (snake_case) so these types are the JSON itself.
 */

/** 'aborted' never reaches a client: the client is the one who left. */
export type OpenAiFinishReason = 'stop' | 'length';

export interface Usage {
  readonly prompt_tokens: number;
  readonly completion_tokens: number;
  readonly total_tokens: number;
}

export interface ChatCompletion {
  readonly id: string;
  readonly object: 'chat.completion';
  readonly created: number;
  readonly model: string;
  readonly system_fingerprint: string;
  readonly choices: readonly {
    readonly index: number;
    readonly message: { readonly role: 'assistant'; readonly content: string };
    readonly finish_reason: OpenAiFinishReason;
    readonly logprobs: null;
  }[];
  readonly usage: Usage;
}

export interface ChatCompletionChunk {
  readonly id: string;
  readonly object: 'chat.completion.chunk';
  readonly created: number;
  readonly model: string;
  readonly system_fingerprint: string;
  readonly choices: readonly {
    readonly index: number;
    readonly delta: { readonly role?: 'assistant'; readonly content?: string };
    readonly finish_reason: OpenAiFinishReason | null;
    readonly logprobs: null;
  }[];
  /** only on the extra last chunk asked for with stream_options.include_usage */
  readonly usage?: Usage | null;
}

export interface Completion {
  readonly id: string;
  readonly object: 'text_completion';
  readonly created: number;
  readonly model: string;
  readonly system_fingerprint: string;
  readonly choices: readonly {
    readonly index: number;
    readonly text: string;
    readonly finish_reason: OpenAiFinishReason | null;
    readonly logprobs: null;
  }[];
  readonly usage?: Usage | null;
}

export interface ModelObject {
  readonly id: string;
  readonly object: 'model';
  readonly created: number;
  readonly owned_by: string;
}

export interface ModelList {
  readonly object: 'list';
  readonly data: readonly ModelObject[];
}
