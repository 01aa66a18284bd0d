import { splitSystem, type ChatMessage, type ChatTemplate, type RenderOptions } from '../chatTemplate.js';

/**
 * Vicuna v0 (lmsys/vicuna-*-delta-v0, and fine-tunes in the "### Human:" style such as the
 * embedded tiny-vicuna). text-generation-webui instruction-templates/Vicuna-v0.yaml (before
 * #6904): system + "\n\n", "### Human: {user}\n", "### Assistant: {bot}\n", generation prompt
 * "### Assistant:". (FastChat's `one_shot` is the same format with a built-in example turn.)
 */
export const vicunaV0Template: ChatTemplate = {
  name: 'vicuna-v0',
  defaultSystem:
    "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the human's questions.",
  stop: ['### Human:'],
  render(messages: readonly ChatMessage[], opts: RenderOptions): string {
    const { system, turns } = splitSystem(messages, this.defaultSystem);
    let out = system ? `${system}\n\n` : '';
    for (const m of turns) {
      out += m.role === 'user' ? `### Human: ${m.content}\n` : `### Assistant: ${m.content}\n`;
    }
    if (opts.addGenerationPrompt) out += '### Assistant:';
    return out;
  },
};
