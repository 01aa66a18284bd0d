import type { ChatMessage, ChatTemplate, RenderOptions } from '../chatTemplate.js';

/**
 * No template (`--template none`): the messages' contents one per line, for base models and
 * for testing a model's raw continuation. Nothing marks whose turn it is, so there is no stop string.
 */
export const plainTemplate: ChatTemplate = {
  name: 'none',
  defaultSystem: '',
  stop: [],
  render(messages: readonly ChatMessage[], _opts: RenderOptions): string {
    return messages
      .filter((m) => m.content.length > 0)
      .map((m) => m.content)
      .join('\n');
  },
};
