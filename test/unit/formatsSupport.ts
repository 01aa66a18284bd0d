import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** A fresh temp folder for one test file's outputs. */
export function tempDir(tag: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `qllama-${tag}-`));
}

/**
 * Writes a safetensors file byte by byte from a header object we control completely, so tests
 * can build files the real writer would refuse to produce (bad JSON, wrong offsets, …).
 */
export function rawSafetensors(file: string, header: unknown, dataBytes: number, opts: { headerText?: string; claimedHeaderLength?: bigint } = {}): string {
  const json = Buffer.from(opts.headerText ?? JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(opts.claimedHeaderLength ?? BigInt(json.length));
  writeFileSync(file, Buffer.concat([len, json, Buffer.alloc(dataBytes, 7)]));
  return file;
}

/** Deterministic xorshift32 PRNG: tests are reproducible without a seed library. */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 2 ** 32;
  };
}
