/**
 * scripts/fatbin-code.mjs, CI's check that the committed fatbin is the build of the committed kernels: it compares each
 * ELF image's code sections (.text*, .nv.constant*, .nv.info*) by hash and ignores the rest (line info carries paths
 * and header times). Checked on small fatbins built here (a fatbin header, an ELF image with a section table) and on
 * the shipped one; the command's exit codes through a real process.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { fatbinPath, readFatbin } from '../../src/backends/cuda/module.js';
import { REPO_ROOT } from '../support/paths.js';

interface FatbinCodeScript {
  fatbinCode(image: Buffer): Map<string, string>;
  codeDifferences(a: Map<string, string>, b: Map<string, string>): string[];
}
const SCRIPT = path.join(REPO_ROOT, 'scripts', 'fatbin-code.mjs');
const { fatbinCode, codeDifferences } = (await import(pathToFileURL(SCRIPT).href)) as FatbinCodeScript;

const SHT_PROGBITS = 1, SHT_NOBITS = 8;

/** A 64-bit little-endian ELF image with these sections (after the null one) and a .shstrtab. */
function elf(sections: readonly [name: string, type: number, body: Buffer][]): Buffer {
  const names = ['', ...sections.map((s) => s[0]), '.shstrtab'];
  const nameAt: number[] = [];
  let o = 0;
  for (const n of names) {
    nameAt.push(o);
    o += Buffer.byteLength(n, 'latin1') + 1;
  }
  const strtab = Buffer.concat(names.map((n) => Buffer.from(`${n}\0`, 'latin1')));
  const types = [0, ...sections.map((s) => s[1]), 3];
  const bodies = [Buffer.alloc(0), ...sections.map((s) => (s[1] === SHT_NOBITS ? Buffer.alloc(0) : s[2])), strtab];
  const sizes = [0, ...sections.map((s) => s[2].length), strtab.length];
  let at = 64;
  const offsets = bodies.map((b) => {
    const here = at;
    at += b.length;
    return here;
  });
  const shoff = at, count = names.length;
  const out = Buffer.alloc(shoff + count * 64);
  out.writeUInt32BE(0x7f454c46, 0);
  out[4] = 2; // ELFCLASS64
  out[5] = 1; // little-endian
  out.writeBigUInt64LE(BigInt(shoff), 0x28);
  out.writeUInt16LE(64, 0x3a);
  out.writeUInt16LE(count, 0x3c);
  out.writeUInt16LE(count - 1, 0x3e);
  bodies.forEach((b, i) => b.copy(out, offsets[i]));
  for (let i = 0; i < count; i++) {
    const h = shoff + i * 64;
    out.writeUInt32LE(nameAt[i], h);
    out.writeUInt32LE(types[i], h + 4);
    out.writeBigUInt64LE(BigInt(offsets[i]), h + 0x18);
    out.writeBigUInt64LE(BigInt(sizes[i]), h + 0x20);
  }
  return out;
}

/** A fatbin (fatbinary.h: 16-byte header, then entries of a 64-byte header and an image) holding ELF images (kind 2). */
function fatbin(images: readonly Buffer[]): Buffer {
  const entries = images.map((image) => {
    const h = Buffer.alloc(64);
    h.writeUInt16LE(2, 0);
    h.writeUInt32LE(64, 4);
    h.writeBigUInt64LE(BigInt(image.length), 8);
    return Buffer.concat([h, image]);
  });
  const body = Buffer.concat(entries), header = Buffer.alloc(16);
  header.writeUInt32LE(0xba55ed50, 0);
  header.writeUInt16LE(1, 4);
  header.writeUInt16LE(16, 6);
  header.writeBigUInt64LE(BigInt(body.length), 8);
  return Buffer.concat([header, body]);
}

/** one kernel's image: its code, its parameter info, a constant bank, line info and shared memory (no bytes) */
const kernel = (code: string, line: string): Buffer => elf([
  ['.text.k', SHT_PROGBITS, Buffer.from(code)], ['.nv.info.k', SHT_PROGBITS, Buffer.from('info')],
  ['.nv.constant0.k', SHT_PROGBITS, Buffer.from('const')], ['.nv_debug_line_sass', SHT_PROGBITS, Buffer.from(line)],
  ['.nv.shared.k', SHT_NOBITS, Buffer.alloc(0)],
]);

test('fatbinCode: the code sections of every ELF image, by entry, without line info', () => {
  const code = fatbinCode(fatbin([kernel('add r0', '/tmp/a.cu:1'), kernel('mul r1', '/tmp/a.cu:2')]));
  assert.deepEqual([...code.keys()].sort(), ['0:.nv.constant0.k', '0:.nv.info.k', '0:.text.k', '1:.nv.constant0.k', '1:.nv.info.k', '1:.text.k']);
  assert.notEqual(code.get('0:.text.k'), code.get('1:.text.k'));
  assert.equal(code.get('0:.nv.info.k'), code.get('1:.nv.info.k'));
});

test('codeDifferences: other line info is the same code; other code, or a section in one only, differs', () => {
  const base = fatbinCode(fatbin([kernel('add r0', '/tmp/a.cu:1')]));
  assert.deepEqual(codeDifferences(base, fatbinCode(fatbin([kernel('add r0', '/build/elsewhere/a.cu:1')]))), []);
  assert.deepEqual(codeDifferences(base, fatbinCode(fatbin([kernel('add r1', '/tmp/a.cu:1')]))), ['0:.text.k']);
  const extra = fatbinCode(fatbin([kernel('add r0', '/tmp/a.cu:1'), kernel('mul r1', '/tmp/a.cu:2')]));
  assert.deepEqual(codeDifferences(base, extra), ['1:.nv.constant0.k', '1:.nv.info.k', '1:.text.k']);
});

test('the shipped fatbin: code sections of the decode and prefill kernels in each of its images', () => {
  const code = fatbinCode(readFatbin(fatbinPath()));
  const names = [...code.keys()];
  assert.ok(names.length > 100, `${names.length} code sections`);
  for (const k of ['gemv_q4_rpg16', 'gemm_rs_256_qkv', 'rmsnorm_rows_f32']) {
    assert.ok(names.some((n) => n.endsWith(`:.text.${k}`)), `${k}'s code`);
  }
  assert.deepEqual(codeDifferences(code, fatbinCode(readFatbin(fatbinPath()))), []);
});

test('the command: exit 0 for the same code, 1 naming the sections and "npm run build:cuda" when the code differs', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'qllama-fatbin-code-'));
  try {
    const files = { a: 'a.fatbin', sameCode: 'b.fatbin', otherCode: 'c.fatbin' };
    writeFileSync(path.join(dir, files.a), fatbin([kernel('add r0', '/tmp/a.cu:1')]));
    writeFileSync(path.join(dir, files.sameCode), fatbin([kernel('add r0', '/other/a.cu:7')]));
    writeFileSync(path.join(dir, files.otherCode), fatbin([kernel('add r9', '/tmp/a.cu:1')]));
    const run = (b: string): { status: number | null; out: string } => {
      const r = spawnSync(process.execPath, [SCRIPT, path.join(dir, files.a), path.join(dir, b)], { cwd: REPO_ROOT, encoding: 'utf8' });
      return { status: r.status, out: r.stdout + r.stderr };
    };
    const same = run(files.sameCode);
    assert.equal(same.status, 0, same.out);
    assert.match(same.out, /holds the same machine code/);
    const other = run(files.otherCode);
    assert.equal(other.status, 1, other.out);
    assert.match(other.out, /1 code sections differ, e\.g\. 0:\.text\.k\).*npm run build:cuda/);
    const usage = spawnSync(process.execPath, [SCRIPT], { cwd: REPO_ROOT, encoding: 'utf8' });
    assert.equal(usage.status, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
