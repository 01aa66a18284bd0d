import { splitSystem, type ChatMessage, type ChatTemplate, type RenderOptions } from '../chatTemplate.js';

/**
 * Alpaca (Stanford alpaca's PROMPT_DICT "prompt_no_input"), turned into a chat as
 * text-generation-webui instruction-templates/Alpaca.yaml does (before #6904): system + "\n\n",
 * "### Instruction:\n{user}\n\n", "### Response:\n{bot}\n\n", generation prompt "### Response:\n".
 */
export const alpacaTemplate: ChatTemplate = {
  name: 'alpaca',
  defaultSystem: 'Below is an instruction that describes a task. Write a response that appropriately completes the request.',
  stop: ['### Instruction:'],
  render(messages: readonly ChatMessage[], opts: RenderOptions): string {
    const { system, turns } = splitSystem(messages, this.defaultSystem);
    let out = system ? `${system}\n\n` : '';
    for (const m of turns) {
      out += m.role === 'user' ? `### Instruction:\n${m.content}\n\n` : `### Response:\n${m.content}\n\n`;
    }
    if (opts.addGenerationPrompt) out += '### Response:\n';
    return out;
  },
};
