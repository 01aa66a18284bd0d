import { splitSystem, type ChatMessage, type ChatTemplate, type RenderOptions } from '../chatTemplate.js';

/**
 * Vicuna v1.1 / v1.3 / v1.5, as FastChat (the trainer) renders it: conversation.py `vicuna_v1.1`,
 * SeparatorStyle.ADD_COLON_TWO with sep " " and sep2 "</s>":
 *   "{system} USER: q1 ASSISTANT: a1</s>USER: q2 ASSISTANT:"
 * (text-generation-webui's Vicuna-v1.1.yaml uses "\n" where FastChat uses " "; FastChat is what
 * the model was trained on.) The reply ends with EOS; "USER:" also stops a run-on reply.
 */
export const vicunaV11Template: ChatTemplate = {
  name: 'vicuna-v1.1',
  defaultSystem:
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.",
  stop: ['USER:'],
  render(messages: readonly ChatMessage[], opts: RenderOptions): string {
    const { system, turns } = splitSystem(messages, this.defaultSystem);
    let out = `${system} `;
    for (const m of turns) {
      out += m.role === 'user' ? `USER: ${m.content} ` : `ASSISTANT: ${m.content}</s>`;
    }
    if (opts.addGenerationPrompt) out += 'ASSISTANT:';
    return out;
  },
};
