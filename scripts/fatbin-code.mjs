// Whether two fatbins hold the same machine code: each ELF image's code sections (.text.*, .nv.constant*, .nv.info*)
// compared by hash, line info and the like left out. CI runs it on the committed fatbin and a fresh `build:cuda`
// of the committed kernels (.ci/run), so a kernel edit committed without its rebuilt fatbin fails there. Line info
// is left out because it carries the build's paths and the included headers' modification times, which may differ
// between machines; and the comparison is only made with the nvcc that built the committed fatbin (its
// `nvcc --version` release line is recorded beside it by build:cuda), since another nvcc makes other code.
// Usage: node scripts/fatbin-code.mjs COMMITTED NEW [--nvcc-record FILE]   (exit 1: they differ). Reads the files
// with the backend's readFatbin (dist: after `npm run build`), which decompresses .br files and checks the magic.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';

/** `entry:section` → sha256 of each ELF image's code sections, in the fatbin's order (buf: readFatbin's image) */
export function fatbinCode(buf) {
  const headerSize = buf.readUInt16LE(6), end = headerSize + Number(buf.readBigUInt64LE(8));
  const code = new Map();
  let off = headerSize;
  for (let entry = 0; off < end; entry++) {
    const kind = buf.readUInt16LE(off), entryHeader = buf.readUInt32LE(off + 4), size = Number(buf.readBigUInt64LE(off + 8));
    const image = buf.subarray(off + entryHeader, off + entryHeader + size);
    if (kind === 2 && image.readUInt32BE(0) === 0x7f454c46) {
      for (const [name, bytes] of elfSections(image)) {
        if (/^\.(text|nv\.constant|nv\.info)/.test(name)) code.set(`${entry}:${name}`, createHash('sha256').update(bytes).digest('hex'));
      }
    }
    off += entryHeader + size;
  }
  return code;
}

/** [name, contents] of a 64-bit little-endian ELF image's sections (SHT_NOBITS ones empty) */
function* elfSections(elf) {
  const shoff = Number(elf.readBigUInt64LE(0x28)), shentsize = elf.readUInt16LE(0x3a), shnum = elf.readUInt16LE(0x3c), shstrndx = elf.readUInt16LE(0x3e);
  const header = (i) => shoff + i * shentsize;
  const strOff = Number(elf.readBigUInt64LE(header(shstrndx) + 0x18));
  for (let i = 0; i < shnum; i++) {
    const h = header(i), nameAt = strOff + elf.readUInt32LE(h), type = elf.readUInt32LE(h + 4);
    const name = elf.toString('latin1', nameAt, elf.indexOf(0, nameAt));
    const at = Number(elf.readBigUInt64LE(h + 0x18)), size = Number(elf.readBigUInt64LE(h + 0x20));
    yield [name, type === 8 ? Buffer.alloc(0) : elf.subarray(at, at + size)];
  }
}

/** the sections that differ (or exist in one only) */
export function codeDifferences(a, b) {
  const keys = new Set([...a.keys(), ...b.keys()]);
  return [...keys].filter((k) => a.get(k) !== b.get(k)).sort();
}

/** nvcc's release line ("Cuda compilation tools, release 13.0, V13.0.88"), or null without nvcc */
export function nvccRelease(nvcc = process.env.QLLAMA_NVCC ?? 'nvcc') {
  const r = spawnSync(nvcc, ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return null;
  return r.stdout.split('\n').find((l) => l.startsWith('Cuda compilation tools')) ?? null;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [committed, fresh] = process.argv.slice(2);
  const recordAt = process.argv.indexOf('--nvcc-record');
  if (!committed || !fresh) {
    console.error('usage: node scripts/fatbin-code.mjs COMMITTED NEW [--nvcc-record FILE]');
    process.exit(2);
  }
  if (recordAt >= 0) {
    const file = process.argv[recordAt + 1];
    const recorded = existsSync(file) ? readFileSync(file, 'utf8').trim() : null, here = nvccRelease();
    if (recorded !== here) {
      console.warn(`fatbin-code: the committed fatbin was built by "${recorded}", this nvcc is "${here}": not compared`);
      process.exit(0);
    }
  }
  const { readFatbin } = await import('../dist/src/backends/cuda/module.js');
  const diff = codeDifferences(fatbinCode(readFatbin(committed)), fatbinCode(readFatbin(fresh)));
  if (diff.length > 0) {
    console.error(`fatbin-code: ${committed} is not the build of the committed kernels (${diff.length} code sections differ, e.g. ` +
      `${diff.slice(0, 3).join(', ')}): run npm run build:cuda and commit the fatbin with the kernels`);
    process.exit(1);
  }
  console.log(`fatbin-code: ${committed} holds the same machine code as the fresh build`);
}
