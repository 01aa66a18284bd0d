import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { mkdir, open, readdir, rename, rm, writeFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { QllamaError } from '../errors.js';
import { DiskFullError, writeSafetensors } from '../formats/safetensorsWriter.js';
import { LINEAR_NAMES, LINEAR_PATHS, type LinearName } from './layerRunner.js';
import { packLinear } from './pack.js';
import type { QuantizedLinear } from './types.js';
import { Activations, type ActivationDtype } from './activations.js';

/** The output folder exists, or an unfinished run is in the way. */
export class QuantizeOutputError extends QllamaError {}

/**
 * A quantization run's working folder, `<out>.partial/`, so `<out>` itself only ever appears
 * complete (one rename at the end). `.state/` inside holds what --resume needs:
 *   run.json            the run's settings; a resume must match them
 *   layer-NNNNN.safetensors   packed tensors of each finished layer (temp + rename)
 *   acts-NNNNN.bin      calibration activations after that layer, all samples (f32 or fp16, as the run keeps them)
 *   progress.json       { finishedLayers } — written last, so it only names complete files
 */
export class QuantizeState {
  private constructor(
    readonly outDir: string,
    readonly workDir: string,
    readonly stateDir: string,
    private finished: number,
  ) {}

  get finishedLayers(): number {
    return this.finished;
  }

  /** Fails early (before any work) when the output folder is in the way. */
  static checkOutput(outDir: string, force: boolean): void {
    if (existsSync(outDir) && !force) {
      throw new QuantizeOutputError(`output folder ${outDir} already exists: choose another --out, or pass --force to replace it when the new run completes`);
    }
  }

  static async begin(outDir: string, run: object, options: { resume: boolean; force: boolean; log: (line: string) => void }): Promise<QuantizeState> {
    const workDir = `${outDir.replace(/[\\/]+$/, '')}.partial`;
    const stateDir = path.join(workDir, '.state');
    QuantizeState.checkOutput(outDir, options.force);
    const runJson = `${JSON.stringify(run, null, 2)}\n`;
    if (existsSync(workDir)) {
      if (options.resume) {
        const previous = readJson(path.join(stateDir, 'run.json'));
        if (previous === undefined || JSON.stringify(previous) !== JSON.stringify(run)) {
          throw new QuantizeOutputError(`${workDir} was left by a run with other settings (see ${path.join(stateDir, 'run.json')}): rerun with the same flags, or pass --force without --resume to start over`);
        }
        const progress = readJson(path.join(stateDir, 'progress.json')) as { finishedLayers?: number } | undefined;
        const finished = typeof progress?.finishedLayers === 'number' ? progress.finishedLayers : 0;
        options.log(`resuming ${workDir}: ${finished} layer(s) already quantized`);
        return new QuantizeState(outDir, workDir, stateDir, finished);
      }
      if (!options.force) {
        throw new QuantizeOutputError(`an unfinished run left ${workDir}: pass --resume to continue it, or --force to start over`);
      }
      await rm(workDir, { recursive: true, force: true });
    } else if (options.resume) {
      options.log(`nothing to resume at ${workDir}; starting from the first layer`);
    }
    await guard(workDir, async () => {
      await mkdir(stateDir, { recursive: true });
      await writeFile(path.join(stateDir, 'run.json'), runJson);
    });
    return new QuantizeState(outDir, workDir, stateDir, 0);
  }

  layerFile(l: number): string {
    return path.join(this.stateDir, `layer-${pad(l)}.safetensors`);
  }

  private actsFile(l: number): string {
    return path.join(this.stateDir, `acts-${pad(l)}.bin`);
  }

  /** Records layer l as finished: its tensors, then the activations after it, then progress. */
  async saveLayer(l: number, results: Record<LinearName, QuantizedLinear>, acts: Activations | undefined): Promise<void> {
    const tensors = LINEAR_NAMES.flatMap((name) => packLinear(`model.layers.${l}.${LINEAR_PATHS[name]}`, results[name]));
    const byName = new Map(tensors.map((t) => [t.spec.name, t.bytes]));
    await writeSafetensors(this.layerFile(l), tensors.map((t) => t.spec), (name) => byName.get(name) as Uint8Array, { format: 'pt' });
    await guard(this.stateDir, async () => {
      if (acts) await writeAtomic(this.actsFile(l), async (fh) => {
        let pos = 0;
        for (let s = 0; s < acts.count; s++) {
          const bytes = acts.sampleBytes(s);
          await writeAll(fh, bytes, pos);
          pos += bytes.byteLength;
        }
      });
      await writeAtomic(path.join(this.stateDir, 'progress.json'), (fh) => writeAll(fh, Buffer.from(`${JSON.stringify({ finishedLayers: l + 1 })}\n`), 0));
      if (l > 0) await rm(this.actsFile(l - 1), { force: true });
    });
    this.finished = l + 1;
  }

  /** The activations after the last finished layer: `nsamples` samples of `perSample` values, read sample by sample. */
  loadActs(dtype: ActivationDtype, nsamples: number, perSample: number): Activations {
    const file = this.actsFile(this.finished - 1);
    let fd: number;
    try {
      fd = openSync(file, 'r');
    } catch {
      throw new QuantizeOutputError(`${file} is missing, so the run cannot resume: pass --force without --resume to start over`);
    }
    try {
      const size = fstatSync(fd).size;
      const acts = Activations.alloc(dtype, nsamples, perSample);
      if (size !== acts.bytes) {
        throw new QuantizeOutputError(`${file} holds ${size} bytes, expected ${acts.bytes}: it is damaged; pass --force without --resume to start over`);
      }
      for (let s = 0; s < nsamples; s++) {
        const bytes = acts.sampleBytes(s);
        for (let done = 0; done < bytes.byteLength;) {
          const n = readSync(fd, bytes, done, bytes.byteLength - done, s * bytes.byteLength + done);
          if (n <= 0) throw new QuantizeOutputError(`${file} ended early: pass --force without --resume to start over`);
          done += n;
        }
      }
      return acts;
    } finally {
      closeSync(fd);
    }
  }

  /** Drops the state and moves the finished work folder to the output path. */
  async finish(): Promise<void> {
    await rm(this.stateDir, { recursive: true, force: true });
    if (existsSync(this.outDir)) await rm(this.outDir, { recursive: true, force: true }); // --force
    await rename(this.workDir, this.outDir);
  }

  /** Files in the work folder other than the state (for the caller's listing). */
  async outputFiles(): Promise<string[]> {
    return (await readdir(this.workDir)).filter((f) => f !== '.state').sort();
  }
}

function pad(l: number): string {
  return String(l).padStart(5, '0');
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

async function writeAll(fh: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < data.byteLength) {
    const { bytesWritten } = await fh.write(data, done, data.byteLength - done, position + done);
    done += bytesWritten;
  }
}

async function writeAtomic(file: string, write: (fh: FileHandle) => Promise<void>): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  const fh = await open(tmp, 'w');
  try {
    await write(fh);
    await fh.close();
  } catch (err) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw err;
  }
  await rename(tmp, file);
}

/** Turns a full disk into the writer's DiskFullError, which says what to do. */
async function guard(where: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') {
      throw new DiskFullError(`the disk is full while writing in ${where}: free some space and rerun with --resume`, { cause: err });
    }
    throw err;
  }
}
