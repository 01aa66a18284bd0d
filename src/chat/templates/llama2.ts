import { splitSystem, type ChatMessage, type ChatTemplate, type RenderOptions } from '../chatTemplate.js';

/**
 * LLaMA-2 chat, exactly as the `chat_template` of meta-llama/Llama-2-*-chat-hf renders it (which
 * follows Meta's llama/generation.py `chat_completion`): the system prompt goes inside the first
 * [INST] block, every user turn is "<s>[INST] {content.strip()} [/INST]", every assistant turn
 * " {content.strip()} </s>":
 *   "<s>[INST] <<SYS>>\n{sys}\n<</SYS>>\n\nq1 [/INST] a1 </s><s>[INST] q2 [/INST]"
 * FastChat `llama-2` gives the same text without the leading "<s>". No default system prompt
 * (Meta's and HF's templates add none). "<s>" / "</s>" become BOS / EOS in encodePrompt.ts.
 */
export const llama2Template: ChatTemplate = {
  name: 'llama-2',
  defaultSystem: '',
  stop: ['[INST]'],
  render(messages: readonly ChatMessage[], _opts: RenderOptions): string {
    // The format has no assistant header: a prompt ending in "[/INST]" already asks for a reply.
    const { system, turns } = splitSystem(messages, this.defaultSystem);
    let out = '';
    let first = true;
    for (const m of turns) {
      if (m.role === 'user') {
        const content = first && system ? `<<SYS>>\n${system}\n<</SYS>>\n\n${m.content}` : m.content;
        out += `<s>[INST] ${content.trim()} [/INST]`;
      } else {
        out += ` ${m.content.trim()} </s>`;
      }
      first = false;
    }
    return out;
  },
};
