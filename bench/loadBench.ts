/**
 * Host side of loading a model, timed the way the CUDA path runs it (`LlamaModel.create` with a
 * backend) but with the backend's uploads replaced by a stand-in that only touches the bytes (one
 * read per 4 KiB page, nothing kept), so the figure is what the formats/model code costs before a
 * single byte crosses PCIe. Run on a page-cached checkpoint (run it twice; the first pass warms the
 * cache): `npm run bench:load -- /tmp/m13 /tmp/m13ao` (default: both, written by
 * `qllama synth --shape llama-13b [--act-order] --out DIR`). Prints per-phase seconds and one JSON line.
 */
import { statSync } from 'node:fs';
import { cpus } from 'node:os';
import type {
  Activation, Backend, EmbeddingWeight, KvCache, LinearHost, LinearWeight, VectorWeight,
} from '../src/backends/backend.js';
import { LlamaModel } from '../src/model/llama.js';
import type { LoadProfile } from '../src/model/weights.js';

/** Upload methods that read every page of what they are given and keep nothing; ops are not supported. */
class TouchBackend implements Backend {
  readonly name = 'touch (upload stand-in)';
  /** true: the loader may recycle read buffers (what a backend that copies on upload declares) */
  constructor(readonly uploadCopiesHostData: boolean) {}
  bytes = 0;
  uploadSeconds = 0;
  private sink = 0;

  private touch(a: ArrayBufferView): void {
    const t0 = performance.now();
    const u8 = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    let s = this.sink;
    for (let i = 0; i < u8.length; i += 4096) s = (s + u8[i]) | 0;
    if (u8.length > 0) s = (s + u8[u8.length - 1]) | 0;
    this.sink = s;
    this.bytes += a.byteLength;
    this.uploadSeconds += (performance.now() - t0) / 1000;
  }

  allocActivation(rows: number, cols: number): Activation { return { rows, cols }; }
  writeActivation(): void { throw new Error('touch backend runs no ops'); }
  readActivation(): Float32Array { throw new Error('touch backend runs no ops'); }
  uploadLinear(w: LinearHost): LinearWeight {
    if (w.kind === 'dense') {
      this.touch(w.data);
      if (w.bias) this.touch(w.bias);
    } else {
      for (const a of [w.qweight, w.qzeros, w.scales, w.gIdx]) this.touch(a);
      if (w.bias) this.touch(w.bias);
    }
    return { inFeatures: w.inFeatures, outFeatures: w.outFeatures };
  }
  uploadVector(data: Float32Array): VectorWeight { this.touch(data); return { length: data.length }; }
  uploadEmbedding(data: Uint16Array, vocab: number, dim: number): EmbeddingWeight { this.touch(data); return { vocab, dim }; }
  allocKvCache(layers: number, maxSeq: number, kvHeads: number, headDim: number): KvCache { return { layers, maxSeq, kvHeads, headDim }; }
  embed(): void { throw new Error('touch backend runs no ops'); }
  rmsNorm(): void { throw new Error('touch backend runs no ops'); }
  linear(): void { throw new Error('touch backend runs no ops'); }
  rope(): void { throw new Error('touch backend runs no ops'); }
  writeKv(): void { throw new Error('touch backend runs no ops'); }
  attention(): void { throw new Error('touch backend runs no ops'); }
  swiglu(): void { throw new Error('touch backend runs no ops'); }
  copyRows(): void { throw new Error('touch backend runs no ops'); }
  addInPlace(): void { throw new Error('touch backend runs no ops'); }
  ropeRows(): void { throw new Error('touch backend runs no ops'); }
  writeKvRows(): void { throw new Error('touch backend runs no ops'); }
  attentionRows(): void { throw new Error('touch backend runs no ops'); }
  dispose(): void {}
}

interface Run {
  readonly dir: string;
  /** read buffers recycled (backend declares uploadCopiesHostData) or fresh per tensor */
  readonly buffers: 'recycled' | 'fresh';
  readonly gb: number;
  readonly totalS: number;
  readonly headerS: number;
  readonly readWaitS: number;
  readonly parseS: number;
  readonly uploadS: number;
  readonly restS: number;
  readonly hostGBs: number;
}

async function loadOnce(dir: string, recycle: boolean): Promise<Run> {
  const backend = new TouchBackend(recycle);
  const profile: LoadProfile = { headerS: 0, readWaitS: 0, parseS: 0, uploadS: 0 };
  const t0 = performance.now();
  const model = await LlamaModel.create(dir, { backend, contextLength: 2048, profile });
  const totalS = (performance.now() - t0) / 1000;
  const gb = statSync(model.info.weightsPath).size / 1e9;
  model.dispose();
  const r = (x: number): number => +x.toFixed(3);
  const restS = totalS - profile.headerS - profile.readWaitS - profile.parseS - profile.uploadS;
  return {
    dir, buffers: recycle ? 'recycled' : 'fresh', gb: r(gb), totalS: r(totalS), headerS: r(profile.headerS), readWaitS: r(profile.readWaitS), parseS: r(profile.parseS),
    uploadS: r(profile.uploadS), restS: r(restS), hostGBs: r(gb / totalS),
  };
}

async function main(): Promise<void> {
  const dirs = process.argv.slice(2);
  if (dirs.length === 0) dirs.push('/tmp/m13', '/tmp/m13ao');
  const runs = Number(process.env.QLLAMA_BENCH_RUNS ?? 2);
  console.log(`load host side, ${cpus().length} cores, node ${process.version}, UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE ?? '(default 4)'}; uploads replaced by a page-touching stand-in`);
  const results: Run[] = [];
  // QLLAMA_BENCH_BUFFERS=fresh|recycled|both (default both): whether the stand-in declares uploadCopiesHostData
  const modes = (process.env.QLLAMA_BENCH_BUFFERS ?? 'both') === 'both' ? [false, true] : [process.env.QLLAMA_BENCH_BUFFERS === 'recycled'];
  for (const dir of dirs) {
    for (const recycle of modes) for (let i = 0; i < runs; i++) {
      const run = await loadOnce(dir, recycle);
      results.push(run);
      console.log(
        `${dir} ${run.buffers} buffers, run ${i + 1}: ${run.totalS.toFixed(2)} s for ${run.gb.toFixed(2)} GB (${run.hostGBs.toFixed(2)} GB/s) = ` +
        `headers+probe ${run.headerS.toFixed(2)} + waiting on reads ${run.readWaitS.toFixed(2)} + GPTQ parsing ${run.parseS.toFixed(2)} + ` +
        `upload stand-in ${run.uploadS.toFixed(2)} + rest ${run.restS.toFixed(2)}`,
      );
    }
  }
  const best: Record<string, number> = {};
  for (const r of results) {
    const key = `${r.dir} ${r.buffers}`;
    best[key] = Math.min(best[key] ?? Infinity, r.totalS);
  }
  console.log(JSON.stringify({ bench: 'load-host', cores: cpus().length, runs: results, bestS: best }));
}

await main();
