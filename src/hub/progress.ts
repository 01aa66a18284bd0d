/**
 * Download progress for people: on a terminal, one redrawn bar per active file plus a total
 * line; anywhere else (a pipe, a CI log) one plain line per finished file and a summary, so
 * logs never fill with carriage returns and escape codes.
 */
export interface ProgressSink {
  /** a file starts (or is found complete); `size` is its full size in bytes */
  fileStart(name: string, size: number): void;
  /** bytes arrived (negative when a download restarts from zero) */
  fileAdvance(name: string, bytes: number): void;
  fileEnd(name: string, outcome: 'downloaded' | 'present' | 'failed'): void;
  /** stop drawing; print the summary */
  close(): void;
}

export const silentProgress: ProgressSink = {
  fileStart() {}, fileAdvance() {}, fileEnd() {}, close() {},
};

export interface ProgressStream {
  readonly isTTY?: boolean;
  readonly columns?: number;
  write(text: string): boolean;
}

export function createProgress(stream: ProgressStream, totalBytes: number, now: () => number = Date.now): ProgressSink {
  return stream.isTTY ? new TtyProgress(stream, totalBytes, now) : new LineProgress(stream, totalBytes, now);
}

interface FileState {
  size: number;
  done: number;
}

abstract class BaseProgress implements ProgressSink {
  protected readonly files = new Map<string, FileState>();
  protected received = 0;
  protected doneBytes = 0;
  protected readonly started: number;
  protected counts = { downloaded: 0, present: 0, failed: 0 };

  constructor(protected readonly stream: ProgressStream, protected readonly totalBytes: number, protected readonly now: () => number) {
    this.started = now();
  }

  fileStart(name: string, size: number): void {
    this.files.set(name, { size, done: 0 });
  }

  fileAdvance(name: string, bytes: number): void {
    const f = this.files.get(name);
    if (!f) return;
    f.done += bytes;
    this.doneBytes += bytes;
    this.received += Math.max(0, bytes);
    this.changed();
  }

  fileEnd(name: string, outcome: 'downloaded' | 'present' | 'failed'): void {
    const f = this.files.get(name);
    this.files.delete(name);
    this.counts[outcome]++;
    this.finished(name, f?.size ?? 0, outcome);
  }

  close(): void {
    const secs = Math.max(0.001, (this.now() - this.started) / 1000);
    const { downloaded, present, failed } = this.counts;
    const parts = [`${downloaded} downloaded`, `${present} already present`];
    if (failed) parts.push(`${failed} failed`);
    this.clear();
    this.stream.write(`${parts.join(', ')}; ${formatBytes(this.received)} in ${secs.toFixed(1)} s\n`);
  }

  protected abstract changed(): void;
  protected abstract finished(name: string, size: number, outcome: string): void;
  protected clear(): void {}
}

class LineProgress extends BaseProgress {
  protected changed(): void {}
  protected finished(name: string, size: number, outcome: string): void {
    this.stream.write(`${outcome.padEnd(10)} ${name} (${formatBytes(size)})\n`);
  }
}

class TtyProgress extends BaseProgress {
  private drawn = 0;
  private lastDraw = 0;

  protected changed(): void {
    // Redraw at most ten times a second: a fast link delivers thousands of chunks per second.
    if (this.now() - this.lastDraw < 100) return;
    this.draw();
  }

  protected finished(name: string, size: number, outcome: string): void {
    this.clear();
    this.stream.write(`${outcome === 'failed' ? '✗' : '✓'} ${name} (${formatBytes(size)}${outcome === 'present' ? ', already present' : ''})\n`);
    this.draw();
  }

  protected override clear(): void {
    if (this.drawn > 0) this.stream.write(`\x1b[${this.drawn}F\x1b[0J`);
    this.drawn = 0;
  }

  private draw(): void {
    this.clear();
    this.lastDraw = this.now();
    const width = Math.max(40, Math.min(this.stream.columns ?? 80, 120));
    const lines: string[] = [];
    for (const [name, f] of this.files) lines.push(barLine(name, f.done, f.size, width));
    const secs = Math.max(0.001, (this.now() - this.started) / 1000);
    lines.push(barLine(`total ${formatBytes(this.received / secs)}/s`, this.doneBytes, this.totalBytes, width));
    this.stream.write(`${lines.join('\n')}\n`);
    this.drawn = lines.length;
  }
}

function barLine(label: string, done: number, size: number, width: number): string {
  const frac = size > 0 ? Math.min(1, Math.max(0, done / size)) : 1;
  const tail = ` ${(frac * 100).toFixed(0).padStart(3)}% ${formatBytes(done)}/${formatBytes(size)}`;
  const labelWidth = Math.min(40, Math.floor(width / 2.5));
  const shown = label.length > labelWidth ? `…${label.slice(label.length - labelWidth + 1)}` : label.padEnd(labelWidth);
  const barWidth = Math.max(10, width - labelWidth - tail.length - 3);
  const filled = Math.round(frac * barWidth);
  return `${shown} [${'#'.repeat(filled)}${'.'.repeat(barWidth - filled)}]${tail}`;
}

export function formatBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1000 && u < units.length - 1) { v /= 1000; u++; }
  return `${u === 0 ? v.toFixed(0) : v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}
