import { Template } from '@huggingface/jinja';
import { QllamaError } from '../../errors.js';
import type { ChatMessage, ChatTemplate, RenderOptions } from '../chatTemplate.js';

/** A model's chat_template that does not parse or fails while rendering (the message says which). */
export class ChatTemplateError extends QllamaError {}

/** The parts of tokenizer_config.json a chat template reads. */
export interface JinjaTemplateSource {
  readonly chatTemplate: string;
  readonly bosToken: string;
  readonly eosToken: string;
}

/**
 * A `chat_template` from the model's tokenizer_config.json (transformers' apply_chat_template),
 * rendered by @huggingface/jinja with the variables transformers passes: messages,
 * add_generation_prompt, bos_token, eos_token (raise_exception is built in).
 */
export class JinjaChatTemplate implements ChatTemplate {
  readonly name = 'jinja' as const;
  readonly defaultSystem = '';
  readonly stop: readonly string[] = [];
  private readonly template: Template;

  constructor(readonly source: JinjaTemplateSource) {
    try {
      this.template = new Template(source.chatTemplate);
    } catch (e) {
      throw new ChatTemplateError(`the chat_template in tokenizer_config.json does not parse (${errorText(e)}); pick another with --template`, { cause: e });
    }
  }

  render(messages: readonly ChatMessage[], opts: RenderOptions): string {
    try {
      return this.template.render({
        messages: messages.map((m) => ({ role: m.role, content: m.content })),
        add_generation_prompt: opts.addGenerationPrompt,
        bos_token: this.source.bosToken,
        eos_token: this.source.eosToken,
      });
    } catch (e) {
      throw new ChatTemplateError(`the model's chat_template failed: ${errorText(e)}`, { cause: e });
    }
  }
}

/**
 * Read chat_template (a string, or transformers' list of {name, template}, where "default" wins)
 * and the BOS/EOS strings (plain or AddedToken objects) from a parsed tokenizer_config.json.
 * Returns null when there is no usable template.
 */
export function jinjaSourceFromTokenizerConfig(config: unknown): JinjaTemplateSource | null {
  if (!isRecord(config)) return null;
  const raw = config.chat_template;
  let chatTemplate: string | null = null;
  if (typeof raw === 'string') chatTemplate = raw;
  else if (Array.isArray(raw)) {
    const named = raw.filter(isRecord).filter((t) => typeof t.template === 'string');
    const chosen = named.find((t) => t.name === 'default') ?? named[0];
    if (chosen) chatTemplate = chosen.template as string;
  }
  if (chatTemplate === null || chatTemplate.trim() === '') return null;
  return { chatTemplate, bosToken: tokenText(config.bos_token, '<s>'), eosToken: tokenText(config.eos_token, '</s>') };
}

function tokenText(value: unknown, fallback: string): string {
  if (typeof value === 'string') return value;
  if (isRecord(value) && typeof value.content === 'string') return value.content;
  return fallback;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
