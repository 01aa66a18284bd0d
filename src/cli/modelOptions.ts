import type { OptionDefs } from './command.js';

/** Flags shared by every command that loads a model. */
export const MODEL_OPTIONS: OptionDefs = {
  model: { type: 'string', short: 'm', value: 'dir|user/repo[:branch]', description: 'model folder (config.json, tokenizer, *.safetensors), or a Hub repo downloaded on first use; default: the embedded tiny-vicuna-4k' },
  'models-dir': { type: 'string', value: 'dir', description: 'where Hub models are downloaded', default: './models' },
  weights: { type: 'string', value: 'file', description: 'weights file inside the folder, when it holds several' },
  backend: { type: 'string', value: 'auto|cpu|cuda', description: 'compute backend', default: 'auto' },
  threads: { type: 'string', value: 'N', description: 'CPU threads (default: $QLLAMA_CPU_THREADS, else all cores)' },
  ctx: { type: 'string', value: 'N', description: 'context length (default: the model\'s max_position_embeddings)' },
  template: { type: 'string', value: 'name', description: 'chat template: stable-vicuna, vicuna-v0, vicuna-v1.1, alpaca, llama-2, jinja, none (default: picked from the model)' },
};
