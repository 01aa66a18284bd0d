import type { BuiltinTemplateName, ChatTemplate } from '../chatTemplate.js';
import { alpacaTemplate } from './alpaca.js';
import { llama2Template } from './llama2.js';
import { plainTemplate } from './plain.js';
import { stableVicunaTemplate } from './stableVicuna.js';
import { vicunaV0Template } from './vicunaV0.js';
import { vicunaV11Template } from './vicunaV11.js';

export { ChatTemplateError, JinjaChatTemplate, jinjaSourceFromTokenizerConfig, type JinjaTemplateSource } from './jinja.js';

/** The built-in templates by name ('jinja' is built per model from its tokenizer_config.json). */
export const BUILTIN_TEMPLATES: Readonly<Record<BuiltinTemplateName, ChatTemplate>> = {
  'stable-vicuna': stableVicunaTemplate,
  'vicuna-v0': vicunaV0Template,
  'vicuna-v1.1': vicunaV11Template,
  alpaca: alpacaTemplate,
  'llama-2': llama2Template,
  none: plainTemplate,
};
