/** A chat turn. */
export type ChatRole = 'system' | 'user' | 'assistant';

export interface ChatMessage {
  readonly role: ChatRole;
  readonly content: string;
}

/** The names `--template` accepts (see templates/index.ts). */
export const TEMPLATE_NAMES = ['stable-vicuna', 'vicuna-v0', 'vicuna-v1.1', 'alpaca', 'llama-2', 'jinja', 'none'] as const;
export type TemplateName = (typeof TEMPLATE_NAMES)[number];
/** Templates that ship with qllama ('jinja' comes from the model). */
export type BuiltinTemplateName = Exclude<TemplateName, 'jinja'>;

export interface RenderOptions {
  /** End with the assistant's prefix so the model writes the next reply. */
  readonly addGenerationPrompt: boolean;
}

/**
 * Turns messages into the exact prompt text a model was fine-tuned on. BOS/EOS appear in the
 * text as their literal strings (`<s>`, `</s>`) where the format puts them mid-prompt;
 * chat/encodePrompt.ts maps those to ids.
 */
export interface ChatTemplate {
  readonly name: TemplateName;
  /** The system prompt used when the conversation has none ('' = none). */
  readonly defaultSystem: string;
  /** Strings that end an assistant reply (the next turn's header), besides EOS. */
  readonly stop: readonly string[];
  render(messages: readonly ChatMessage[], opts: RenderOptions): string;
}

/** The conversation's system prompt (first system message) and the rest, in order. */
export function splitSystem(messages: readonly ChatMessage[], fallback: string): { system: string; turns: ChatMessage[] } {
  const sys = messages.find((m) => m.role === 'system');
  return { system: sys ? sys.content : fallback, turns: messages.filter((m) => m.role !== 'system') };
}
