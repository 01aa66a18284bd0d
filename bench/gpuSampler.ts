/**
 * SM clock and board power while a benchmark phase runs, from `nvidia-smi --query-gpu=... -lms 50` in the
 * background. Why: a 2048-token prompt keeps the tensor cores busy long enough to reach the card's power limit,
 * and then the clock, not the kernels' schedule, sets the rate (bench/cudaNotes.md, eighteenth pass); each
 * prefill figure is printed with the clock and power it ran at. Samples carry nvidia-smi's own timestamps, so a
 * phase is still matched to its samples when they arrive late, as they do: nvidia-smi writes into a pipe through
 * a block buffer (~90 samples at a time).
 * Power is power.draw.instant where the driver has it (power.draw is a one-second average, which smears a
 * 0.3 s phase with the idle time before it), else power.draw.
 */
import { spawn, type ChildProcess } from 'node:child_process';

export interface GpuSample {
  /** ms since the epoch */
  readonly t: number;
  readonly smMHz: number;
  readonly watts: number;
  readonly limitW: number;
}

export interface PhaseClocks {
  readonly samples: number;
  readonly smMHz: number;
  readonly watts: number;
  readonly limitW: number;
}

/** `2026/11/29 04:20:01.123, 1410, 650.12, 700.00` → a sample (null for anything else) */
export function parseSample(line: string): GpuSample | null {
  const m = /^(\d{4})\/(\d{2})\/(\d{2}) (\d{2}):(\d{2}):(\d{2})\.(\d{3}),\s*([\d.]+),\s*([\d.]+),\s*([\d.]+)\s*$/.exec(line.trim());
  if (m === null) return null;
  const [y, mo, d, h, mi, s, ms] = m.slice(1, 8).map(Number);
  return { t: new Date(y, mo - 1, d, h, mi, s, ms).getTime(), smMHz: Number(m[8]), watts: Number(m[9]), limitW: Number(m[10]) };
}

/** Mean clock and power of the samples taken in [t0, t1] (ms since the epoch), or null when none fell there. */
export function phaseClocks(samples: readonly GpuSample[], t0: number, t1: number): PhaseClocks | null {
  const inside = samples.filter((s) => s.t >= t0 && s.t <= t1);
  if (inside.length === 0) return null;
  const mean = (f: (s: GpuSample) => number): number => inside.reduce((a, s) => a + f(s), 0) / inside.length;
  return { samples: inside.length, smMHz: Math.round(mean((s) => s.smMHz)), watts: Math.round(mean((s) => s.watts)), limitW: Math.round(mean((s) => s.limitW)) };
}

export function describeClocks(c: PhaseClocks | null): string {
  return c === null ? 'no clock samples' : `SM clock ${c.smMHz} MHz, ${c.watts} W of a ${c.limitW} W limit (${c.samples} samples)`;
}

/** how long a phase waits for a sample newer than its end: nvidia-smi's block buffer fills in ~4.5 s at 50 ms */
const LATE_SAMPLES_MS = 8000;

export class GpuSampler {
  private readonly samples: GpuSample[] = [];
  private proc: ChildProcess | null = null;
  private rest = '';
  private stopped = false;

  /** Starts sampling (every 50 ms); without nvidia-smi every phase reads null. */
  constructor() {
    this.start('power.draw.instant');
  }

  /** nvidia-smi sampling `power`; an older driver without power.draw.instant exits at once: then power.draw */
  private start(power: string): void {
    try {
      const p = spawn('nvidia-smi', [`--query-gpu=timestamp,clocks.sm,${power},power.limit`, '--format=csv,noheader,nounits', '-lms', '50'],
        { stdio: ['ignore', 'pipe', 'ignore'] });
      p.on('error', () => { // no nvidia-smi: no samples, and phases do not wait for any
        if (this.proc === p) this.proc = null;
      });
      p.on('exit', () => {
        if (!this.stopped && this.samples.length === 0 && power !== 'power.draw') this.start('power.draw');
      });
      p.stdout?.setEncoding('utf8');
      p.stdout?.on('data', (chunk: string) => this.take(chunk));
      this.proc = p;
    } catch {
      this.proc = null;
    }
  }

  private take(chunk: string): void {
    const lines = (this.rest + chunk).split('\n');
    this.rest = lines.pop() ?? '';
    for (const l of lines) {
      const s = parseSample(l);
      if (s !== null) this.samples.push(s);
    }
  }

  /** The phase [t0, t1] once the samples up to t1 have arrived (waits up to LATE_SAMPLES_MS for them). */
  async phase(t0: number, t1: number): Promise<PhaseClocks | null> {
    const until = Date.now() + LATE_SAMPLES_MS;
    while (this.proc !== null && !this.samples.some((s) => s.t > t1) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    return phaseClocks(this.samples, t0, t1);
  }

  stop(): void {
    this.stopped = true;
    this.proc?.kill();
  }
}
