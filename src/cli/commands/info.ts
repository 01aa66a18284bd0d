import { discoverModel } from '../../formats/modelFolder.js';
import { Tokenizer } from '../../tokenizer/index.js';
import { selectTemplateForFolder } from '../../chat/templateSelect.js';
import { defineCommand, boolOpt, stringOpt } from '../command.js';
import { EMBEDDED_MODEL_DIR, defaultTemplateFor } from '../defaultModel.js';

export const infoCommand = defineCommand({
  name: 'info',
  summary: 'Show what a model folder holds: format, bits, groupsize, act-order, vocab, layers, template, weights file.',
  usage: 'qllama info [<model dir>] [--weights <file>] [--json]',
  maxPositionals: 1,
  options: {
    weights: { type: 'string', value: 'file', description: 'weights file inside the folder, when it holds several' },
    json: { type: 'boolean', description: 'print one JSON object' },
  },
  async run(values, positionals) {
    const dir = positionals[0] ?? EMBEDDED_MODEL_DIR;
    const model = discoverModel(dir, { weights: stringOpt(values, 'weights') });
    const tokenizer = await Tokenizer.fromModelDir(dir);
    const embeddedDefault = defaultTemplateFor(dir);
    const chosen = await selectTemplateForFolder(model.dir, embeddedDefault);
    const template = embeddedDefault ? { ...chosen, reason: 'the embedded model was trained on this format' } : chosen;
    const c = model.config;
    const info = {
      dir: model.dir,
      weights: model.weightsPath,
      weightsChoice: model.weightsChoiceReason,
      format: model.format,
      bits: model.gptq?.bits ?? 16,
      groupSize: model.gptq?.groupSize ?? null,
      actOrder: model.gptq?.actOrder ?? false,
      layers: c.numLayers,
      hiddenSize: c.hiddenSize,
      heads: c.numHeads,
      kvHeads: c.numKvHeads,
      intermediateSize: c.intermediateSize,
      vocab: c.vocabSize,
      tokenizerVocab: tokenizer.vocabSize,
      context: c.maxPositionEmbeddings,
      ropeTheta: c.ropeTheta,
      template: template.name,
      templateReason: template.reason,
    };
    if (boolOpt(values, 'json')) {
      process.stdout.write(`${JSON.stringify(info)}\n`);
      return 0;
    }
    const rows: [string, string][] = [
      ['model', info.dir],
      ['weights', `${info.weights} (${info.weightsChoice})`],
      ['format', info.format === 'gptq' ? `GPTQ ${info.bits}-bit, groupsize ${info.groupSize}, act-order ${info.actOrder ? 'yes' : 'no'}` : 'fp16'],
      ['layers', `${info.layers} × hidden ${info.hiddenSize}, ${info.heads} heads (${info.kvHeads} KV), MLP ${info.intermediateSize}`],
      ['vocab', `${info.vocab} (tokenizer: ${info.tokenizerVocab})`],
      ['context', String(info.context)],
      ['template', `${info.template} (${info.templateReason})`],
    ];
    for (const [k, v] of rows) process.stdout.write(`${k.padEnd(9)} ${v}\n`);
    return 0;
  },
});
