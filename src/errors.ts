/**
 * Base of every error qllama raises on purpose. A `QllamaError` is a user-facing failure:
 * the CLI prints `name: message` (no stack trace) and exits non-zero. Anything else is a bug.
 * Subclasses live next to the code that throws them; `name` always equals the class name
 * so callers can match on it and logs say what failed.
 */
export class QllamaError extends Error {
  /** Process exit code the CLI uses for this failure. */
  readonly exitCode: number = 1;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A bad command-line flag or argument (exit code 2, like most Unix tools). */
export class UsageError extends QllamaError {
  override readonly exitCode = 2;
}

/** The input is larger than the model's context window. */
export class ContextOverflowError extends QllamaError {}

/** A model folder, config or weights file is missing or inconsistent. */
export class ModelLoadError extends QllamaError {}
