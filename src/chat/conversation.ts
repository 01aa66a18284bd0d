import type { ChatMessage, ChatRole, ChatTemplate } from './chatTemplate.js';

export interface RenderedPrompt {
  /** The prompt text, ending with the assistant's prefix. */
  readonly prompt: string;
  /** Stop strings that end the reply (the template's next-turn header). */
  readonly stop: readonly string[];
}

/**
 * A chat history rendered by one template. The system prompt is the template's default unless
 * one is given (pass '' for none). Replies are stored trimmed, as FastChat does, because the
 * template adds its own spacing around them.
 */
export class Conversation {
  private readonly history: ChatMessage[] = [];

  constructor(
    readonly template: ChatTemplate,
    options: { system?: string } = {},
  ) {
    this.system = options.system ?? template.defaultSystem;
  }

  /** The system prompt ('' = none). */
  system: string;

  /** System message (if any) then the turns, as the template sees them. */
  get messages(): readonly ChatMessage[] {
    // An empty system message is kept when the template has a default, so '' means "none"
    // rather than "the default"; otherwise it is left out (a Jinja template would render it).
    const withSystem = this.system !== '' || this.template.defaultSystem !== '';
    return withSystem ? [{ role: 'system', content: this.system }, ...this.history] : [...this.history];
  }

  addUser(content: string): this {
    return this.add('user', content);
  }

  addAssistant(content: string): this {
    return this.add('assistant', content.trim());
  }

  add(role: Exclude<ChatRole, 'system'>, content: string): this {
    this.history.push({ role, content });
    return this;
  }

  /** Forget the turns (`/reset`); the system prompt stays. */
  reset(): void {
    this.history.length = 0;
  }

  /** Drop the last message, e.g. a user turn whose reply was cancelled. */
  pop(): ChatMessage | undefined {
    return this.history.pop();
  }

  /** The prompt for the next assistant reply, plus the strings that end it. */
  renderForCompletion(): RenderedPrompt {
    return { prompt: this.template.render(this.messages, { addGenerationPrompt: true }), stop: this.template.stop };
  }

  /** The transcript as the template writes it, without asking for a reply. */
  render(): string {
    return this.template.render(this.messages, { addGenerationPrompt: false });
  }
}
