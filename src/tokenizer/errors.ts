import { QllamaError } from '../errors.js';

/** A tokenizer file (tokenizer.model, tokenizer.json or a side config) is missing, corrupt or unsupported. */
export class TokenizerLoadError extends QllamaError {}
