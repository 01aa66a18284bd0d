/**
 * The CUDA backend's GEMV batching and held launches, on the host side only (no GPU: a fake kernel
 * module records what would be launched). One 13B-shaped decode layer and a half, issued as
 * CudaBackend issues it, must come out in the model's order with the permuted-x copies wired from
 * each producer to its act-order consumers.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DevicePtr, Dim3 } from '../../src/backends/cuda/driver.js';
import { FOLD_GROUPED_HEADS, GemvBatch, gemvCluster, NEXT_GEMV_BYTES, PERM_BUFFERS, permuteXDefault } from '../../src/backends/cuda/gemvBatch.js';
import type { CudaGptq } from '../../src/backends/cuda/linearUpload.js';
import type { KernelModule } from '../../src/backends/cuda/module.js';

interface Launch { readonly name: string; readonly grid: Dim3; readonly args: Buffer[]; readonly shared: number; readonly cluster?: Dim3 }

class FakeKernels {
  readonly launches: Launch[] = [];
  launch(name: string, grid: Dim3, _block: Dim3, args: Buffer[], shared = 0, _pdl = false, cluster?: Dim3): void {
    this.launches.push({ name, grid, args: args.map((b) => Buffer.from(b)), shared, cluster }); // the bytes as launched
  }
}

let nextAddr = 0x1000_0000n;
function alloc(bytes: number): DevicePtr {
  const p = nextAddr as DevicePtr;
  nextAddr += BigInt(Math.ceil(bytes / 256) * 256);
  return p;
}

function weight(K: number, N: number, perm: { perm: DevicePtr; inv: DevicePtr } | null): CudaGptq {
  return {
    kind: 'gptq', bits: 4, storedBits: 4, groupSize: 128, layout: 'q4', rowsPerGroup: 16, inFeatures: K, outFeatures: N,
    qweight: alloc((K / 8) * N * 4), scales: alloc((K / 128) * N * 2), qzeros: alloc((K / 128) * (N / 2)),
    gIdx: null, perm: perm?.perm ?? null, invPerm: perm?.inv ?? null, bias: null,
  };
}
const permOf = (K: number): { perm: DevicePtr; inv: DevicePtr } => ({ perm: alloc(K * 4), inv: alloc(K * 4) });

const DIM = 5120, FFN = 13824, HEADS = 40, SMS = 132;

interface Layer { q: CudaGptq; k: CudaGptq; v: CudaGptq; o: CudaGptq; gate: CudaGptq; up: CudaGptq; down: CudaGptq }
/** act-order: one permutation for q/k/v and one for gate/up (GPTQ-for-LLaMa); shared: false gives each its own */
function layer(actOrder: boolean, shared = true): Layer {
  const p = (K: number): { perm: DevicePtr; inv: DevicePtr } | null => (actOrder ? permOf(K) : null);
  const pq = p(DIM), pg = p(DIM);
  return {
    q: weight(DIM, DIM, pq), k: weight(DIM, DIM, shared ? pq : p(DIM)), v: weight(DIM, DIM, shared ? pq : p(DIM)),
    o: weight(DIM, DIM, p(DIM)), gate: weight(DIM, FFN, pg), up: weight(DIM, FFN, shared ? pg : p(DIM)), down: weight(FFN, DIM, p(FFN)),
  };
}

const act = {
  x: alloc(DIM * 4), xb: alloc(DIM * 4), q: alloc(DIM * 4), k: alloc(DIM * 4), v: alloc(DIM * 4), attn: alloc(DIM * 4),
  gate: alloc(FFN * 4), up: alloc(FFN * 4), hidden: alloc(FFN * 4), normW: alloc(DIM * 4), kc: alloc(1 << 20), vc: alloc(1 << 20),
  pos: alloc(256),
};

/**
 * One decode layer as CudaBackend issues it for a one-row step (llama.ts's order); with `fold`, attention is first
 * offered to the q/k/v launch as over a short cache (foldAttentionInto). Returns whether it was folded.
 */
function runLayer(b: GemvBatch, w: Layer, fold = false): boolean {
  const pos = { ptr: act.pos, imm: 0 };
  b.rmsNorm(act.xb, act.x, act.normW, 1e-6, 1, DIM);
  b.add(act.q, act.xb, w.q, false);
  b.add(act.k, act.xb, w.k, false);
  b.add(act.v, act.xb, w.v, false);
  assert.ok(b.addRope(act.q, HEADS, 128, 10000, pos));
  assert.ok(b.addRope(act.k, HEADS, 128, 10000, pos));
  assert.ok(b.addKvWrite(act.k, act.v, act.kc, act.vc, 2048, pos));
  const folded = fold && b.foldAttentionInto(act.attn, act.q, act.kc, act.vc, HEADS, HEADS, 1 / Math.sqrt(128), pos);
  if (!folded) {
    const nx = Buffer.alloc(NEXT_GEMV_BYTES);
    b.launchBeforeGemv('attn_split_128', { x: HEADS, y: 2, z: 1 }, { x: 128 }, [Buffer.alloc(8), nx], nx, act.attn, DIM);
  }
  b.add(act.x, act.attn, w.o, true);
  b.rmsNorm(act.xb, act.x, act.normW, 1e-6, 1, DIM);
  b.add(act.gate, act.xb, w.gate, false);
  b.add(act.up, act.xb, w.up, false);
  assert.ok(b.swiglu(act.hidden, act.gate, act.up));
  b.add(act.x, act.hidden, w.down, true);
  return folded;
}

function batch(permuteX: boolean, inputNorm = true): { b: GemvBatch; k: FakeKernels; bufs: DevicePtr[] } {
  const k = new FakeKernels();
  const bufs = Array.from({ length: PERM_BUFFERS }, () => alloc(32768 * 4));
  const b = new GemvBatch(k as unknown as KernelModule, alloc(1 << 22), alloc(1 << 16), SMS, bufs);
  b.permuteX = permuteX;
  b.inputNorm = inputNorm;
  return { b, k, bufs };
}

// Q4Args (gemv_q4.cu) fields
const mat = (a: Buffer, i: number): { perm: bigint; y: bigint; qweight: bigint; flags: number } =>
  ({ qweight: a.readBigUInt64LE(i * 64), perm: a.readBigUInt64LE(i * 64 + 24), y: a.readBigUInt64LE(i * 64 + 32), flags: a.readInt32LE(i * 64 + 56) });
const q4 = (a: Buffer): {
  count: number; x: bigint; swigluInv: bigint; swigluPerm: bigint; normOut: bigint; normInv: bigint; normPerm: bigint;
  xNormW: bigint; xNormOut: bigint; xEps: number; xNormPermuted: number;
} => ({
  count: a.readInt32LE(236), x: a.readBigUInt64LE(216), swigluInv: a.readBigUInt64LE(256), swigluPerm: a.readBigUInt64LE(264),
  normOut: a.readBigUInt64LE(280), normInv: a.readBigUInt64LE(304), normPerm: a.readBigUInt64LE(312),
  xNormW: a.readBigUInt64LE(320), xNormOut: a.readBigUInt64LE(328), xEps: a.readFloatLE(336), xNormPermuted: a.readInt32LE(340),
});
/** sizeof(Q4Args) in gemv_q4.cu */
const Q4_ARGS_BYTES = 392;
/** NextGemv (common.cuh): the last argument of rmsnorm_f32 and attn_split_<d> */
const nextGemv = (l: Launch): { inv: bigint; permOut: bigint } => {
  const a = l.args[l.args.length - 1];
  assert.equal(a.length, NEXT_GEMV_BYTES);
  return { inv: a.readBigUInt64LE(0), permOut: a.readBigUInt64LE(8) };
};

test('act-order decode layer, norm in the tail: producers write the permuted x their consumers read', () => {
  const { b, k } = batch(true, false);
  const l0 = layer(true), l1 = layer(true);
  runLayer(b, l0);
  runLayer(b, l1);
  b.flush();
  const names = k.launches.map((l) => l.name);
  const one = ['gemv_q4_rpg16', 'attn_split_128', 'gemv_q4_tail_rpg16', 'gemv_q4_rpg16', 'gemv_q4_tail_rpg16'];
  assert.deepEqual(names, ['rmsnorm_f32', ...one, ...one.slice(0, 4), 'gemv_q4_rpg16']);
  const [norm, qkv, attn, o, gu, down, qkv1, attn1, o1, gu1, down1] = k.launches;
  const a = (l: Launch): Buffer => l.args[0];

  // rmsnorm -> q/k/v: one copy in their shared order, read by all three (flag 4)
  const n = nextGemv(norm);
  assert.equal(n.inv, l0.q.invPerm);
  for (let i = 0; i < 3; i++) {
    assert.equal(mat(a(qkv), i).perm, n.permOut, `qkv mat ${i} reads the copy`);
    assert.equal(mat(a(qkv), i).flags & 4, 4);
  }
  // attention -> o_proj
  const at = nextGemv(attn);
  assert.equal(at.inv, l0.o.invPerm);
  assert.equal(mat(a(o), 0).perm, at.permOut);
  assert.equal(mat(a(o), 0).flags, 1 | 4);
  // o + norm epilogue -> gate/up; gate/up + SwiGLU -> down; down + norm -> next q/k/v
  const chain: [Launch, Launch, CudaGptq[]][] = [[o, gu, [l0.gate, l0.up]], [gu, down, [l0.down]], [down, qkv1, [l1.q, l1.k, l1.v]], [o1, gu1, [l1.gate, l1.up]], [gu1, down1, [l1.down]]];
  const copies = new Set<bigint>();
  for (const [prod, cons, ws] of chain) {
    const p = q4(a(prod));
    const viaSwiglu = p.swigluInv !== 0n;
    const inv = viaSwiglu ? p.swigluInv : p.normInv, buf = viaSwiglu ? p.swigluPerm : p.normPerm;
    assert.equal(inv, ws[0].invPerm);
    ws.forEach((_, i) => {
      assert.equal(mat(a(cons), i).perm, buf);
      assert.equal(mat(a(cons), i).flags & 4, 4);
    });
    copies.add(buf);
  }
  // a consumer never reads the buffer it writes
  for (const l of [gu, down, gu1]) assert.notEqual(mat(a(l), 0).perm, q4(a(l)).swigluPerm || q4(a(l)).normPerm);
  assert.ok(copies.size >= 2);
  // the last down_proj: nothing follows in this test, so no copy
  assert.equal(q4(a(down1)).normInv, 0n);
  assert.equal(nextGemv(attn1).inv, l1.o.invPerm);
});

test('q/k/v with different permutations: the first reads the copy, the others gather', () => {
  const { b, k } = batch(true, false);
  const l0 = layer(true, false);
  runLayer(b, l0);
  b.flush();
  const qkv = k.launches[1].args[0];
  assert.equal(mat(qkv, 0).flags & 4, 4);
  assert.equal(mat(qkv, 1).flags & 4, 0);
  assert.equal(mat(qkv, 1).perm, l0.k.perm);
  assert.equal(mat(qkv, 2).perm, l0.v.perm);
});

for (const actOrder of [false, true]) {
  test(`${actOrder ? 'act-order' : 'compat'} layer with permuted x off: launched at once, in order, no copies; norms inside the consumers`, () => {
    const { b, k } = batch(false);
    const l0 = layer(actOrder);
    runLayer(b, l0);
    // nothing is held: the last GEMV (down) waits only for its batch to complete
    assert.equal(k.launches.length, 4);
    b.flush();
    assert.deepEqual(k.launches.map((l) => l.name), ['gemv_q4_rpg16', 'attn_split_128', 'gemv_q4_rpg16', 'gemv_q4_rpg16', 'gemv_q4_rpg16']);
    const consumers = [[l0.q, l0.k, l0.v], [l0.o], [l0.gate, l0.up], [l0.down]];
    // q/k/v and gate/up read the residual x and normalize it themselves (writing xb); o and down read their x as is
    const inputNorm = [true, false, true, false];
    for (const l of k.launches) {
      if (!l.name.startsWith('gemv')) {
        assert.deepEqual(nextGemv(l), { inv: 0n, permOut: 0n });
        continue;
      }
      assert.equal(l.args[0].length, Q4_ARGS_BYTES);
      const p = q4(l.args[0]);
      const normed = inputNorm.shift()!;
      assert.equal(p.xNormW, normed ? act.normW : 0n);
      assert.equal(p.xNormOut, normed ? act.xb : 0n);
      if (normed) {
        assert.equal(p.x, act.x);
        assert.ok(Math.abs(p.xEps - 1e-6) < 1e-12);
      }
      assert.equal(p.normOut, 0n); // no serial norm tail in the producers
      assert.equal(p.normInv, 0n);
      assert.equal(p.normPerm, 0n);
      assert.equal(p.swigluInv, 0n);
      assert.equal(p.swigluPerm, 0n);
      const ws = consumers.shift()!;
      assert.equal(p.count, ws.length);
      // act-order: each GEMV gathers x through its own permutation
      ws.forEach((w, i) => {
        assert.equal(mat(l.args[0], i).flags & 4, 0);
        assert.equal(mat(l.args[0], i).perm, w.perm ?? 0n);
      });
    }
  });
}

test('QLLAMA_CUDA_NORM=tail: the rmsnorm runs in the last block of the residual-add GEMV, as before', () => {
  const { b, k } = batch(false, false);
  const l0 = layer(false);
  runLayer(b, l0);
  b.flush();
  // the residual add with the tail runs its build (gemv_q4_tail_*); the last down_proj has no norm after it here
  assert.deepEqual(k.launches.map((l) => l.name), ['rmsnorm_f32', 'gemv_q4_rpg16', 'attn_split_128', 'gemv_q4_tail_rpg16', 'gemv_q4_rpg16', 'gemv_q4_rpg16']);
  const o = q4(k.launches[3].args[0]);
  assert.equal(o.normOut, act.xb);
  for (const l of k.launches.slice(1)) if (l.name.startsWith('gemv')) assert.equal(q4(l.args[0]).xNormW, 0n);
});

test('a deferred norm that no GEMV reads runs as rmsnorm_f32, before what follows', () => {
  const { b, k } = batch(false);
  const l0 = layer(false);
  b.rmsNorm(act.xb, act.x, act.normW, 1e-6, 1, DIM);
  // a GEMV of another input: the norm goes out first, as a kernel
  b.add(act.q, act.attn, l0.o, false);
  b.flush();
  assert.deepEqual(k.launches.map((l) => l.name), ['rmsnorm_f32', 'gemv_q4_rpg16']);
  assert.equal(q4(k.launches[1].args[0]).xNormW, 0n);
  // nothing after it: flush runs it
  b.rmsNorm(act.xb, act.x, act.normW, 1e-6, 1, DIM);
  b.flush();
  assert.equal(k.launches[2].name, 'rmsnorm_f32');
  // in place (out = x): never deferred
  b.rmsNorm(act.x, act.x, act.normW, 1e-6, 1, DIM);
  assert.equal(k.launches[3].name, 'rmsnorm_f32');
  // a consumer that would overwrite the residual it normalizes: the norm runs first
  b.rmsNorm(act.xb, act.x, act.normW, 1e-6, 1, DIM);
  b.add(act.x, act.xb, l0.q, false);
  b.flush();
  assert.deepEqual(k.launches.slice(4).map((l) => l.name), ['rmsnorm_f32', 'gemv_q4_rpg16']);
  assert.equal(q4(k.launches[5].args[0]).xNormW, 0n);
});

test('act-order decode layer, defaults (input norms, permuted x): attention writes o_proj\'s input in its order, the norm consumers gather', () => {
  const { b, k } = batch(true);
  const l0 = layer(true), l1 = layer(true);
  runLayer(b, l0);
  runLayer(b, l1);
  b.flush();
  const one = ['gemv_q4_rpg16', 'attn_split_128', 'gemv_q4_rpg16', 'gemv_q4_rpg16', 'gemv_q4_rpg16'];
  assert.deepEqual(k.launches.map((l) => l.name), [...one, ...one]);
  for (const [i, l] of [l0, l1].entries()) {
    const ls = k.launches.slice(i * 5, i * 5 + 5);
    const attn = ls[1];
    const [qkv, o, gu, down] = [ls[0], ls[2], ls[3], ls[4]].map((x) => x.args[0]);
    // q/k/v and gate/up normalize the raw residual themselves and gather it through their permutation
    for (const [a, ws] of [[qkv, [l.q, l.k, l.v]], [gu, [l.gate, l.up]]] as [Buffer, CudaGptq[]][]) {
      assert.equal(q4(a).xNormW, act.normW);
      assert.equal(q4(a).x, act.x);
      ws.forEach((w, m) => {
        assert.equal(mat(a, m).perm, w.perm);
        assert.equal(mat(a, m).flags & 4, 0);
      });
    }
    // attention writes o_proj's input in its row order; o reads that copy linearly (flag 4)
    const at = nextGemv(attn);
    assert.equal(at.inv, l.o.invPerm);
    assert.equal(mat(o, 0).perm, at.permOut);
    assert.equal(mat(o, 0).flags, 1 | 4);
    // gate/up + SwiGLU write down's input in its order (this fake down has a permutation of its own)
    assert.equal(q4(gu).swigluInv, l.down.invPerm);
    assert.equal(mat(down, 0).perm, q4(gu).swigluPerm);
    // no serial norm tails
    for (const a of [qkv, o, gu, down]) assert.equal(q4(a).normOut, 0n);
  }
});

test('input norms read the norm weight in the batch\'s row order where one is registered and every member shares that order', () => {
  for (const [registered, on, shared] of [[true, true, true], [false, true, true], [true, false, true], [true, true, false]]) {
    const { b, k } = batch(true);
    b.usePermutedNorms = on;
    const l0 = layer(true, shared);
    const qNorm = alloc(DIM * 4), gNorm = alloc(DIM * 4);
    if (registered) {
      b.permutedNorm(act.normW, l0.q.perm!, qNorm);
      b.permutedNorm(act.normW, l0.gate.perm!, gNorm);
    }
    assert.equal(b.hasPermutedNorm(act.normW, l0.q.perm!), registered);
    runLayer(b, l0);
    b.flush();
    const what = `registered ${registered}, on ${on}, shared ${shared}`;
    const [qkv, gu] = [k.launches[0], k.launches[3]].map((l) => q4(l.args[0]));
    const used = registered && on && shared;
    assert.equal(qkv.xNormW, used ? qNorm : act.normW, what);
    assert.equal(gu.xNormW, used ? gNorm : act.normW, what);
    assert.equal(qkv.xNormPermuted, used ? 1 : 0, what);
    assert.equal(gu.xNormPermuted, used ? 1 : 0, what);
  }
});

test('permuted x is on unless QLLAMA_CUDA_PERMX=0', () => {
  const saved = process.env.QLLAMA_CUDA_PERMX;
  try {
    delete process.env.QLLAMA_CUDA_PERMX;
    assert.equal(permuteXDefault(), true);
    process.env.QLLAMA_CUDA_PERMX = '0';
    assert.equal(permuteXDefault(), false);
    process.env.QLLAMA_CUDA_PERMX = '1';
    assert.equal(permuteXDefault(), true);
  } finally {
    if (saved === undefined) delete process.env.QLLAMA_CUDA_PERMX;
    else process.env.QLLAMA_CUDA_PERMX = saved;
  }
});

test('K ranges per block: one wave of 4 blocks per SM, K split evenly (13B on 132 SMs)', () => {
  // q/k/v: 120 tiles, 4 ranges of 10 slices (not 12, 12, 12, 4); gate/up: 216 tiles, 2 of 20; o: 40 tiles, 10 of 4;
  // down: K 13824 = 108 slices over 40 tiles, 12 ranges of 9
  assert.equal(GemvBatch.kPerBlock(DIM, 120, SMS), 1280);
  assert.equal(GemvBatch.kPerBlock(DIM, 216, SMS), 2560);
  assert.equal(GemvBatch.kPerBlock(DIM, 40, SMS), 512);
  assert.equal(GemvBatch.kPerBlock(FFN, 40, SMS), 1152);
  // never more than 64 slices per block (XS_ROWS): a wide K over a full wave of tiles takes more ranges
  assert.equal(GemvBatch.kPerBlock(32768, 528, SMS), 64 * 128);
  // never fewer than K / 64 slices: a wide K over one tile still fits XS_ROWS
  assert.equal(GemvBatch.kPerBlock(65536, 1, SMS), 8 * 128);
  // a K of at most 8 slices (tiny models: tiny-vicuna's 256 and 768) stays one range, so no split-K atomics
  // and the same bits on every run; from 9 slices K splits, at least one slice per warp
  assert.equal(GemvBatch.kPerBlock(256, 2, SMS), 256);
  assert.equal(GemvBatch.kPerBlock(768, 2, SMS), 768);
  assert.equal(GemvBatch.kPerBlock(1024, 8, SMS), 1024);
  assert.equal(GemvBatch.kPerBlock(1152, 8, SMS), 512);
});

test('a launch hook that flushes the batch again while held launches go out sends each once, in order', () => {
  const { b, k } = batch(true);
  const l0 = layer(true);
  // the hook flushes on every launch, as bench/cudaPrefillProfile.ts's synchronize-after-each-launch does
  const launch = k.launch.bind(k);
  k.launch = (...args: Parameters<FakeKernels['launch']>): void => {
    launch(...args);
    b.flush();
  };
  runLayer(b, l0);
  b.flush();
  assert.deepEqual(k.launches.map((l) => l.name), ['gemv_q4_rpg16', 'attn_split_128', 'gemv_q4_rpg16', 'gemv_q4_rpg16', 'gemv_q4_rpg16']);
});

test('cluster shapes: a tile\'s K ranges (times a SwiGLU pair\'s two tiles), at most 8 blocks; residual adds and the norm tail keep the plain launch', () => {
  assert.deepEqual(gemvCluster(4, false, false, false), { x: 1, y: 4 });
  assert.deepEqual(gemvCluster(1, false, false, false), { x: 1, y: 1 });
  assert.deepEqual(gemvCluster(8, false, false, false), { x: 1, y: 8 });
  assert.equal(gemvCluster(9, false, false, false), null);
  assert.deepEqual(gemvCluster(4, true, false, false), { x: 2, y: 4 });
  assert.equal(gemvCluster(5, true, false, false), null);
  assert.equal(gemvCluster(4, false, true, false), null);
  assert.equal(gemvCluster(4, false, false, true), null);
});

test('13B decode layer with clusters: q/k/v and gate/up launch as clusters of their K ranges, o and down add into y as before', () => {
  for (const actOrder of [false, true]) {
    const { b, k } = batch(true);
    b.clusters = true;
    runLayer(b, layer(actOrder));
    b.flush();
    const [qkv, attn, o, gu, down] = k.launches;
    assert.deepEqual(k.launches.map((l) => l.name), ['gemv_q4_cl_rpg16', 'attn_split_128', 'gemv_q4_rpg16', 'gemv_q4_cl_rpg16', 'gemv_q4_rpg16']);
    // 13B on 132 SMs: q/k/v 120 tiles x 4 ranges, gate/up 216 tiles (108 pairs) x 2 ranges, o 40 x 10, down 40 x 12
    assert.deepEqual(qkv.cluster, { x: 1, y: 4 });
    assert.deepEqual(qkv.grid, { x: 120, y: 4 });
    assert.deepEqual(gu.cluster, { x: 2, y: 2 });
    assert.deepEqual(gu.grid, { x: 216, y: 2 });
    for (const l of [attn, o, down]) assert.equal(l.cluster ?? null, null, `${l.name} is not a cluster launch`);
    assert.equal(q4(qkv.args[0]).xNormOut, act.xb, 'q/k/v still writes the normalized x');
    // act-order q/k/v and gate/up gather x: all of it (5120 f32) goes to shared memory first (gemv_q4.cu xInShared)
    for (const l of [qkv, gu]) {
      assert.equal(l.shared, actOrder ? DIM * 4 : 0, `${l.name} shared memory`);
      assert.equal(l.args[0].readInt32LE(300), actOrder ? 1 : 0, 'xInShared');
    }
    for (const l of [o, down]) assert.equal(l.shared, 0);
  }
});

// Q4Args folded-attention fields (gemv_q4.cu)
const attnFields = (a: Buffer): { out: bigint; inv: bigint; permOut: bigint; counters: bigint; heads: number; kvHeads: number; scale: number } => ({
  out: a.readBigUInt64LE(344), inv: a.readBigUInt64LE(352), permOut: a.readBigUInt64LE(360), counters: a.readBigUInt64LE(368),
  heads: a.readInt32LE(376), kvHeads: a.readInt32LE(380), scale: a.readFloatLE(384),
});

test('folded attention: the q/k/v launch runs each head\'s attention (no attention launch) and writes o_proj\'s input in its order', () => {
  for (const [actOrder, clusters] of [[false, false], [true, false], [true, true]]) {
    const { b, k } = batch(true);
    b.clusters = clusters;
    const counters = alloc(256 * 4);
    b.attnCounters = counters;
    const l0 = layer(actOrder);
    assert.ok(runLayer(b, l0, true));
    b.flush();
    const what = `act-order ${actOrder}, clusters ${clusters}`;
    assert.deepEqual(k.launches.map((l) => l.name), clusters
      ? ['gemv_q4_cl_rpg16', 'gemv_q4_rpg16', 'gemv_q4_cl_rpg16', 'gemv_q4_rpg16'] : ['gemv_q4_rpg16', 'gemv_q4_rpg16', 'gemv_q4_rpg16', 'gemv_q4_rpg16'], what);
    const [qkv, o] = k.launches.map((l) => l.args[0]);
    const f = attnFields(qkv);
    assert.deepEqual([f.out, f.counters, f.heads, f.kvHeads], [act.attn, counters, HEADS, HEADS], what);
    assert.ok(Math.abs(f.scale - 1 / Math.sqrt(128)) < 1e-7);
    // act-order o_proj: the folded attention writes its input permuted (as attention's NextGemv did), o reads it linearly
    assert.equal(f.inv, actOrder ? l0.o.invPerm : 0n, what);
    if (actOrder) {
      assert.equal(mat(o, 0).perm, f.permOut, what);
      assert.equal(mat(o, 0).flags, 1 | 4, what);
    } else {
      assert.equal(f.permOut, 0n, what);
    }
    for (const a of k.launches.slice(1).map((l) => l.args[0])) assert.equal(attnFields(a).out, 0n, 'only q/k/v folds attention');
  }
  // not folded: switched off, no tickets, or a waiting batch that is not q (rope), k (rope + KV), v (KV)
  for (const setup of [(b: GemvBatch): void => { b.foldAttention = false; }, (b: GemvBatch): void => { b.attnCounters = null; }]) {
    const { b, k } = batch(true);
    b.attnCounters = alloc(1024);
    setup(b);
    assert.equal(runLayer(b, layer(false), true), false);
    b.flush();
    assert.ok(k.launches.some((l) => l.name === 'attn_split_128'));
  }
  const { b } = batch(true);
  b.attnCounters = alloc(1024);
  const l0 = layer(false);
  b.add(act.q, act.xb, l0.q, false);
  assert.equal(b.foldAttentionInto(act.attn, act.q, act.kc, act.vc, HEADS, HEADS, 0.1, { ptr: act.pos, imm: 0 }), false);
  // grouped heads (kvHeads < heads) fold where FOLD_GROUPED_HEADS says so, the kernel told both head counts
  const g = batch(true);
  g.b.attnCounters = alloc(1024);
  const gl = layer(false);
  const pos = { ptr: act.pos, imm: 0 };
  g.b.add(act.q, act.xb, gl.q, false);
  g.b.add(act.k, act.xb, weight(DIM, DIM / 4, null), false);
  g.b.add(act.v, act.xb, weight(DIM, DIM / 4, null), false);
  assert.ok(g.b.addRope(act.q, HEADS, 128, 10000, pos) && g.b.addRope(act.k, HEADS / 4, 128, 10000, pos) && g.b.addKvWrite(act.k, act.v, act.kc, act.vc, 2048, pos));
  assert.equal(g.b.foldAttentionInto(act.attn, act.q, act.kc, act.vc, HEADS, HEADS / 4, 0.1, pos), FOLD_GROUPED_HEADS);
  if (FOLD_GROUPED_HEADS) {
    g.b.flush();
    const f = attnFields(g.k.launches[0].args[0]);
    assert.deepEqual([f.out, f.heads, f.kvHeads], [act.attn, HEADS, HEADS / 4]);
  }
  // heads that do not group evenly never fold
  const u = batch(true);
  u.b.attnCounters = alloc(1024);
  u.b.add(act.q, act.xb, gl.q, false);
  u.b.add(act.k, act.xb, weight(DIM, 3 * 128, null), false);
  u.b.add(act.v, act.xb, weight(DIM, 3 * 128, null), false);
  assert.ok(u.b.addRope(act.q, HEADS, 128, 10000, pos) && u.b.addRope(act.k, 3, 128, 10000, pos) && u.b.addKvWrite(act.k, act.v, act.kc, act.vc, 2048, pos));
  assert.equal(u.b.foldAttentionInto(act.attn, act.q, act.kc, act.vc, HEADS, 3, 0.1, pos), false);
});
