import path from 'node:path';
import { createBackend, type BackendKind } from '../backends/select.js';
import { selectTemplateForFolder, type TemplateChoice } from '../chat/templateSelect.js';
import type { KvCacheState } from '../generate/generator.js';
import { LlamaModel } from '../model/llama.js';
import { Tokenizer } from '../tokenizer/index.js';

export interface LoadOptions {
  readonly dir: string;
  readonly weights?: string;
  readonly backend?: BackendKind;
  readonly contextLength?: number;
  /** CPU threads (default: QLLAMA_CPU_THREADS, else all cores) */
  readonly threads?: number;
  /** sequence slots (KV caches) for batched decoding (default 1) */
  readonly sequences?: number;
  /** --template override */
  readonly template?: string;
  /** where progress lines go (stderr in the CLI) */
  readonly log?: (line: string) => void;
}

/**
 * A model ready to chat: weights on a backend, its tokenizer, its chat template and the record
 * of what its KV cache holds. One per loaded model; shared by the CLI and the server.
 */
export class LoadedModel implements AsyncDisposable {
  /** ids held in the model's KV cache (generation reuses the common prefix) */
  readonly kv: KvCacheState = { cachedIds: [] };

  private constructor(
    readonly model: LlamaModel,
    readonly tokenizer: Tokenizer,
    readonly template: TemplateChoice,
  ) {}

  static async load(options: LoadOptions): Promise<LoadedModel> {
    const log = options.log ?? (() => {});
    const backend = await createBackend(options.backend ?? 'auto', log, { threads: options.threads });
    const started = performance.now();
    let model: LlamaModel | undefined;
    let tokenizer: Tokenizer;
    let template: TemplateChoice;
    try {
      model = await LlamaModel.create(options.dir, { backend, weights: options.weights, contextLength: options.contextLength, sequences: options.sequences });
      tokenizer = await Tokenizer.fromModelDir(options.dir);
      template = await selectTemplateForFolder(path.resolve(options.dir), options.template);
    } catch (err) {
      // a failed load must not leave worker threads or a GPU context behind
      if (model) model.dispose();
      else backend.dispose();
      throw err;
    }
    const { info } = model;
    const quant = info.gptq ? `GPTQ ${info.gptq.bits}-bit g${info.gptq.groupSize}${info.gptq.actOrder ? ' act-order' : ''}` : 'fp16';
    log(`loaded ${path.basename(info.weightsPath)} (${quant}, ${info.config.numLayers} layers) on ${backend.name} in ${((performance.now() - started) / 1000).toFixed(1)} s; template ${template.name}`);
    if (model.vocabSize > tokenizer.vocabSize) {
      log(`warning: the model has ${model.vocabSize} token ids but its tokenizer ${tokenizer.vocabSize}: ids ${tokenizer.vocabSize}..${model.vocabSize - 1} ` +
        'have no text and print as nothing (a synthetic checkpoint, or a vocabulary padded for the weights\' shapes)');
    }
    return new LoadedModel(model, tokenizer, template);
  }

  dispose(): void {
    this.model.dispose();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }
}
