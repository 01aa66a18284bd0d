/**
 * ExLlamaV2, the peer of issue #3, measured in the same call as `npm run bench:cuda` on the same model file:
 * runs bench/peer-exllamav2.sh (its `test_inference.py -s` and `-ps`) and reads the figures from its logs.
 * ExLlamaV2's source is not part of qllama: it runs only where someone fetched it into .peer/exllamav2.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface PeerFigures {
  readonly name: string;
  /** decode tok/s at position 1, at 512, and at the last position ≤ 2048 its speed test reaches (1920) */
  readonly decodeShort: number;
  readonly decode512?: number;
  readonly decode2048: number;
  readonly decode2048At: number;
  readonly prefill512?: number;
  readonly prefill2048: number;
}

/** The repository root (this file runs from dist/bench). */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const PEER_SOURCE = path.join(ROOT, '.peer', 'exllamav2');

/** `** Position  1024 + 128 tokens:  157.5197 t/s` and `** Length  2048 tokens:  16210.9820 t/s` lines of its logs. */
export function parsePeerLogs(speedLog: string, promptLog: string): PeerFigures | null {
  const decode = new Map<number, number>();
  for (const m of speedLog.matchAll(/\*\* Position\s+(\d+) \+ \d+ tokens:\s+([\d.]+) t\/s/g)) decode.set(Number(m[1]), Number(m[2]));
  const prompt = new Map<number, number>();
  for (const m of promptLog.matchAll(/\*\* Length\s+(\d+) tokens:\s+([\d.]+) t\/s/g)) prompt.set(Number(m[1]), Number(m[2]));
  const longest = [...decode.keys()].filter((p) => p <= 2048).sort((a, b) => b - a)[0];
  const short = decode.get(1), prefill2048 = prompt.get(2048);
  if (short === undefined || longest === undefined || prefill2048 === undefined) return null;
  return {
    name: 'ExLlamaV2 (measured in this call)', decodeShort: short, decode512: decode.get(512), decode2048: decode.get(longest)!,
    decode2048At: longest, prefill512: prompt.get(512), prefill2048,
  };
}

/**
 * Runs the peer on `modelDir` (about 2–3 minutes with its extension build) and returns its figures, or why
 * it did not run.
 */
export function runPeer(modelDir: string, log: (line: string) => void): PeerFigures | string {
  if (!existsSync(path.join(PEER_SOURCE, 'test_inference.py'))) {
    return `no ExLlamaV2 source at ${PEER_SOURCE}: fetch turboderp/exllamav2 there to measure it in this call (bench/peer-exllamav2.sh)`;
  }
  const out = mkdtempSync(path.join(tmpdir(), 'qllama-peer-'));
  log(`running ExLlamaV2 on ${modelDir} (bench/peer-exllamav2.sh; logs in ${out})`);
  const r = spawnSync('bash', [path.join(ROOT, 'bench', 'peer-exllamav2.sh'), modelDir, out], { encoding: 'utf8', timeout: 600_000 });
  if (r.error) return `ExLlamaV2 did not run: ${r.error.message}`;
  const read = (name: string): string => {
    const p = path.join(out, name);
    return existsSync(p) ? readFileSync(p, 'utf8') : '';
  };
  const figures = parsePeerLogs(read('exllamav2-speed.log'), read('exllamav2-prompt.log'));
  return figures ?? `ExLlamaV2 ran but its logs in ${out} hold no speed figures (exit ${r.status}): ${(r.stdout + r.stderr).trim().slice(-400)}`;
}
