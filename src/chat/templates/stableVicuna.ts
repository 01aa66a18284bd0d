import { splitSystem, type ChatMessage, type ChatTemplate, type RenderOptions } from '../chatTemplate.js';

/**
 * StableVicuna (CarperAI/stable-vicuna-13b-delta). The three upstream sources agree:
 * - CarperAI's demo (huggingface.co/spaces/CarperAI/StableVicuna app.py): system + "\n\n", turns
 *   "### Human: {h}\n### Assistant: {b}" joined by "\n\n";
 * - FastChat conversation.py `stable-vicuna` (ADD_COLON_TWO, sep "\n", sep2 "\n\n");
 * - text-generation-webui instruction-templates/StableVicuna.yaml (before #6904):
 *   "### Human: {user}\n", "### Assistant: {bot}\n\n", generation prompt "### Assistant:".
 * Two turns: "{sys}\n\n### Human: q1\n### Assistant: a1\n\n### Human: q2\n### Assistant:".
 * The model continues the pattern with "### Human:", which is therefore the stop string.
 */
export const stableVicunaTemplate: ChatTemplate = {
  name: 'stable-vicuna',
  defaultSystem: '### Assistant: I am StableVicuna, a large language model created by CarperAI. I am here to chat!',
  stop: ['### Human:'],
  render(messages: readonly ChatMessage[], opts: RenderOptions): string {
    const { system, turns } = splitSystem(messages, this.defaultSystem);
    let out = system ? `${system}\n\n` : '';
    for (const m of turns) {
      out += m.role === 'user' ? `### Human: ${m.content}\n` : `### Assistant: ${m.content}\n\n`;
    }
    if (opts.addGenerationPrompt) out += '### Assistant:';
    return out;
  },
};
