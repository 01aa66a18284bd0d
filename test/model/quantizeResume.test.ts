import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { QllamaError } from '../../src/errors.js';
import { CalibrationDataError } from '../../src/quantize/calibration.js';
import { QuantizeInputError, quantizeModel, type QuantizeModelOptions } from '../../src/quantize/pipeline.js';
import { QuantizeOutputError } from '../../src/quantize/state.js';
import { fixtureDir } from '../support/reference.js';
import { C4, FP16, settings4 } from './quantizeSupport.js';

const FILE = 'tiny-vicuna-4k-GPTQ-4bit-128g.latest.act-order.safetensors';
const small = (outDir: string): QuantizeModelOptions => ({
  modelDir: FP16, outDir, name: 'tiny-vicuna-4k', settings: settings4(true), trueSequential: true, rtn: false,
  calibration: { file: C4, docs: { start: 0, end: 900 }, nsamples: 4, seqlen: 64, seed: 1 },
});

class Killed extends Error {}

test('a run killed half-way resumes after its last finished layer and writes the same file', async () => {
  const root = mkdtempSync(path.join(tmpdir(), 'qllama-resume-'));
  try {
    const whole = path.join(root, 'whole');
    await quantizeModel(small(whole));

    const out = path.join(root, 'resumed');
    const layersRun: number[] = [];
    await assert.rejects(quantizeModel({
      ...small(out),
      onProgress: (p) => {
        if (p.fraction === 0 && !layersRun.includes(p.layer)) layersRun.push(p.layer);
        if (p.layer === 2 && p.fraction > 0.5) throw new Killed('killed');
      },
    }), Killed);
    assert.ok(!existsSync(out), 'no output folder until the run completes');
    assert.ok(existsSync(`${out}.partial`), 'the work folder stays for --resume');
    await assert.rejects(quantizeModel(small(out)), QuantizeOutputError, 'without --resume the leftover is not silently reused');

    const resumedLayers: number[] = [];
    await quantizeModel({ ...small(out), resume: true, onProgress: (p) => { if (!resumedLayers.includes(p.layer)) resumedLayers.push(p.layer); } });
    assert.deepEqual(resumedLayers, [2, 3], 'layers 0 and 1 were not redone');
    assert.ok(!existsSync(`${out}.partial`));
    assert.deepEqual(readdirSync(out).sort(), readdirSync(whole).sort());
    assert.ok(readFileSync(path.join(out, FILE)).equals(readFileSync(path.join(whole, FILE))), 'byte-identical to the uninterrupted run');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('bad inputs fail with named errors before anything is written', async () => {
  const root = mkdtempSync(path.join(tmpdir(), 'qllama-badinput-'));
  const nothingWritten = (out: string): void => {
    assert.ok(!existsSync(out) && !existsSync(`${out}.partial`), `${out} left behind`);
  };
  try {
    const out = path.join(root, 'out');
    await assert.rejects(quantizeModel({ ...small(out), modelDir: fixtureDir('tiny-vicuna-4k', 'gptq-4bit-128g') }), QuantizeInputError);
    nothingWritten(out);

    const noTok = path.join(root, 'no-tokenizer');
    mkdirSync(noTok);
    for (const f of ['config.json', 'model.safetensors']) copyFileSync(path.join(FP16, f), path.join(noTok, f));
    await assert.rejects(quantizeModel({ ...small(out), modelDir: noTok }), (e: unknown) => e instanceof QllamaError && /tokenizer/.test(e.message));
    nothingWritten(out);

    const tooShort = { ...small(out), calibration: { file: C4, docs: { start: 0, end: 5 }, nsamples: 64, seqlen: 256, seed: 0 } };
    await assert.rejects(quantizeModel(tooShort), CalibrationDataError);
    nothingWritten(out);

    mkdirSync(out);
    await assert.rejects(quantizeModel(small(out)), (e: unknown) => e instanceof QuantizeOutputError && /--force/.test(e.message));
    assert.deepEqual(readdirSync(out), [], 'an existing output folder is left alone');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
