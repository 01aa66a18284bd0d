/**
 * `npm run bench:server`: a bounded load test of `qllama serve`, loopback only.
 *
 * Starts the real server (child process; `--server cli` runs `qllama serve` itself) with the
 * embedded tiny-vicuna-4k on the CPU backend, then:
 *   1. references: each prompt once, non-streaming and greedy (the text every stream must match);
 *   2. load rounds: --clients concurrent streaming clients (chat and completions), a quarter of
 *      them leaving mid-stream, plus a few that leave while still queued; every finished stream
 *      must be well-formed ([DONE] last, one finish_reason, usage) and equal its reference;
 *      /health is polled throughout and must keep answering;
 *   3. memory: heap after GC (and RSS) back near the warmed-up baseline after each round;
 *   4. burst: one long stream holds the slot, then --max-queue + --burst-extra requests at once:
 *      exactly --burst-extra answer 429 queue_full, the rest complete once the holder leaves.
 * Prints requests/s, p50/p95 latency, time to first token, tokens/s, and ends with one JSON line.
 * Exit code 1 when a check fails.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import os from 'node:os';
import type { ChildMessage, MemorySample, ParentMessage } from './serverLoadServer.js';
import { runPlain, runStream, type Endpoint, type StreamResult, type StreamSpec } from './serverLoadSse.js';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MiB = 1024 * 1024;

const { values: args } = parseArgs({
  options: {
    clients: { type: 'string', default: '64' },
    'disconnect-fraction': { type: 'string', default: '0.25' },
    'queue-aborts': { type: 'string', default: '4' },
    'max-tokens': { type: 'string', default: '48' },
    'max-queue': { type: 'string', default: '80' },
    'burst-extra': { type: 'string', default: '8' },
    rounds: { type: 'string', default: '2' },
    server: { type: 'string', default: 'child' },
    'timeout-s': { type: 'string', default: '300' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (args.help) {
  process.stdout.write('usage: node dist/bench/serverLoad.js [--clients 64] [--disconnect-fraction 0.25] [--queue-aborts 4] [--max-tokens 48]\n'
    + '  [--max-queue 80] [--burst-extra 8] [--rounds 2] [--server child|cli] [--timeout-s 300]\n');
  process.exit(0);
}
const CLIENTS = intArg('clients', 1);
const DISCONNECTERS = Math.round(CLIENTS * Number(args['disconnect-fraction']));
const QUEUE_ABORTS = intArg('queue-aborts', 0);
const MAX_TOKENS = intArg('max-tokens', 1);
const MAX_QUEUE = intArg('max-queue', 1);
const BURST_EXTRA = intArg('burst-extra', 1);
const ROUNDS = intArg('rounds', 1);
const SERVER_KIND = args.server === 'cli' ? 'cli' : 'child';
const DEADLINE = Date.now() + intArg('timeout-s', 10) * 1000;
if (CLIENTS + QUEUE_ABORTS > MAX_QUEUE + 1) {
  process.stderr.write(`--max-queue ${MAX_QUEUE} is too small for ${CLIENTS + QUEUE_ABORTS} clients at once (they would get 429); raise it\n`);
  process.exit(2);
}

function intArg(name: keyof typeof args, min: number): number {
  const v = Number(args[name]);
  if (!Number.isInteger(v) || v < min) {
    process.stderr.write(`--${name} must be an integer ≥ ${min}\n`);
    process.exit(2);
  }
  return v;
}

function remainingMs(): number {
  const left = DEADLINE - Date.now();
  if (left <= 0) throw new Error('the load test ran past --timeout-s');
  return left;
}

// ---------------------------------------------------------------------------------------------
// The server under test

interface ServerHandle {
  readonly url: string;
  /** Heap after GC (child) or the server's own /metrics gauges (cli). */
  memory(): Promise<MemorySample>;
  /** Server log lines so far (stderr). */
  readonly log: string[];
  readonly exited: () => boolean;
  stop(): Promise<void>;
}

async function startServer(): Promise<ServerHandle> {
  const log: string[] = [];
  let child: ChildProcess;
  if (SERVER_KIND === 'child') {
    child = spawn(process.execPath, ['--expose-gc', `${REPO_ROOT}/dist/bench/serverLoadServer.js`, '--max-queue', String(MAX_QUEUE)], {
      cwd: REPO_ROOT, stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    });
  } else {
    child = spawn(process.execPath, [`${REPO_ROOT}/dist/src/cli/cli.js`, 'serve', '--model', 'models/tiny-vicuna-4k', '--backend', 'cpu', '--host', '127.0.0.1', '--port', '0', '--max-queue', String(MAX_QUEUE)], {
      cwd: REPO_ROOT, stdio: ['ignore', 'inherit', 'pipe'],
    });
  }
  let exited = false;
  child.on('exit', () => { exited = true; });
  let partial = '';
  const urlFromLog = new Promise<string>((resolve) => {
    child.stderr?.on('data', (d: Buffer) => {
      partial += d.toString('utf8');
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        log.push(line);
        const m = /OpenAI API (http:\/\/127\.0\.0\.1:\d+)\/v1/.exec(line);
        if (m) resolve(m[1]);
      }
    });
  });
  const memoryWaiters: ((m: MemorySample) => void)[] = [];
  const urlFromIpc = new Promise<string>((resolve) => {
    child.on('message', (m: ChildMessage) => {
      if (m.type === 'ready') resolve(m.url);
      else if (m.type === 'memory') memoryWaiters.shift()?.(m);
    });
  });
  const failed = new Promise<never>((_resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`the server exited (code ${code}) before it was ready:\n${log.join('\n')}`)));
  });
  const startTimer = new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error('the server was not ready in 60 s')), 60_000).unref());
  const url = await Promise.race([SERVER_KIND === 'child' ? urlFromIpc : urlFromLog, failed, startTimer]);
  failed.catch(() => undefined);
  return {
    url,
    log,
    exited: () => exited,
    async memory() {
      if (SERVER_KIND === 'child') {
        const got = new Promise<MemorySample>((resolve) => memoryWaiters.push(resolve));
        const msg: ParentMessage = { type: 'memory' };
        child.send(msg);
        return got;
      }
      const text = await (await fetch(`${url}/metrics`)).text();
      return {
        rss: metric(text, 'qllama_process_resident_memory_bytes'), heapUsed: metric(text, 'qllama_nodejs_heap_size_used_bytes'),
        heapTotal: metric(text, 'qllama_nodejs_heap_size_total_bytes'), external: metric(text, 'qllama_nodejs_external_memory_bytes'),
        arrayBuffers: 0, afterGc: false,
      };
    },
    async stop() {
      if (exited) return;
      const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      if (SERVER_KIND === 'child') {
        const msg: ParentMessage = { type: 'shutdown' };
        child.send(msg);
      } else {
        child.kill('SIGTERM');
      }
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await gone;
      clearTimeout(timer);
    },
  };
}

/** A sample of a Prometheus text exposition (first series matching name and labels; 0 if absent). */
function metric(text: string, name: string, labels = ''): number {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    const key = line.slice(0, sp);
    if (key === name || (labels !== '' && key === `${name}{${labels}}`)) return Number(line.slice(sp + 1));
  }
  return 0;
}

interface Health { readonly status: string; readonly running: number; readonly queued: number }

async function health(url: string): Promise<Health> {
  const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(5000) });
  if (res.status !== 200) throw new Error(`/health answered ${res.status}`);
  return (await res.json()) as Health;
}

async function waitFor(what: string, check: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const end = Math.min(Date.now() + ms, DEADLINE);
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const idle = (url: string) => async (): Promise<boolean> => { const h = await health(url); return h.running === 0 && h.queued === 0; };

/** Polls /health every 200 ms while a phase runs: the server must keep answering. */
function healthWatch(url: string): { stop(): Promise<{ polls: number; failures: number; maxMs: number }> } {
  let polls = 0;
  let failures = 0;
  let maxMs = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const t = performance.now();
      try {
        const h = await health(url);
        if (h.status !== 'ok') failures++;
      } catch {
        failures++;
      }
      polls++;
      maxMs = Math.max(maxMs, performance.now() - t);
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  return { async stop() { running = false; await loop; return { polls, failures, maxMs }; } };
}

// ---------------------------------------------------------------------------------------------
// Workload

const CHAT_PROMPTS = [
  'What is the capital of France?',
  'Tell me a joke about computers.',
  'Write a haiku about the sea.',
  'How do I boil an egg?',
  'Name three colors.',
  'Explain what a neural network is in one paragraph.',
];
const COMPLETION_PROMPTS = [
  'Once upon a time',
  'The quick brown fox',
  'In the beginning there was',
];

function specFor(i: number): StreamSpec {
  const endpoint: Endpoint = i % 3 === 2 ? 'completion' : 'chat';
  const prompt = endpoint === 'chat' ? CHAT_PROMPTS[i % CHAT_PROMPTS.length] : COMPLETION_PROMPTS[Math.floor(i / 3) % COMPLETION_PROMPTS.length];
  return { endpoint, prompt, maxTokens: MAX_TOKENS };
}

const keyOf = (s: StreamSpec): string => `${s.endpoint}\u0000${s.prompt}\u0000${s.maxTokens}`;
type Reference = Awaited<ReturnType<typeof runPlain>>;

/** Which clients leave mid-stream: spread evenly over the clients (so over both endpoints). */
function leavesAfter(i: number): number | undefined {
  if (DISCONNECTERS === 0) return undefined;
  const every = CLIENTS / DISCONNECTERS;
  const k = Math.floor(i / every);
  return Math.floor(k * every) === i && k < DISCONNECTERS ? 1 + (k % 6) : undefined;
}

function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

const failures: string[] = [];
function check(ok: boolean, what: string): void {
  if (!ok) failures.push(what);
  process.stdout.write(`  ${ok ? 'ok  ' : 'FAIL'} ${what}\n`);
}

/** Compare a finished stream with its non-streaming reference; returns problems. */
function againstReference(r: StreamResult, ref: Reference, spec: StreamSpec): string[] {
  const out: string[] = [];
  if (r.text !== ref.text) out.push(`text differs from the non-streaming reply: ${JSON.stringify(r.text.slice(0, 60))} vs ${JSON.stringify(ref.text.slice(0, 60))}`);
  if (r.finishReason !== ref.finishReason) out.push(`finish_reason ${r.finishReason} vs ${ref.finishReason}`);
  if (r.completionTokens !== ref.completionTokens) out.push(`completion_tokens ${r.completionTokens} vs ${ref.completionTokens}`);
  if (r.finishReason === 'length' && r.completionTokens !== spec.maxTokens) out.push(`finish_reason length after ${r.completionTokens} of ${spec.maxTokens} tokens`);
  return out;
}

interface RoundFigures {
  readonly round: number;
  readonly wallS: number;
  readonly completed: number;
  readonly disconnected: number;
  readonly queueAborted: number;
  readonly requestsPerS: number;
  readonly latencyP50Ms: number;
  readonly latencyP95Ms: number;
  readonly ttftP50Ms: number;
  readonly ttftP95Ms: number;
  readonly tokensPerS: number;
  readonly streamTokensPerSP50: number;
  readonly healthMaxMs: number;
  readonly memory: MemorySample;
}

async function loadRound(server: ServerHandle, round: number, refs: ReadonlyMap<string, Reference>): Promise<RoundFigures> {
  process.stdout.write(`round ${round}: ${CLIENTS} streaming clients (${DISCONNECTERS} leave mid-stream) + ${QUEUE_ABORTS} that leave while queued\n`);
  const before = await (await fetch(`${server.url}/metrics`)).text();
  const logAt = server.log.length;
  const watch = healthWatch(server.url);
  const t0 = performance.now();
  const timeoutMs = remainingMs();
  const clients = Array.from({ length: CLIENTS }, (_, i) => {
    const spec = specFor(i);
    return runStream(server.url, spec, { timeoutMs, abortAfterDeltas: leavesAfter(i) }).then((r) => ({ i, spec, r }));
  });
  // These arrive last, so they wait behind everyone and leave before their turn.
  const queueAborts = Array.from({ length: QUEUE_ABORTS }, (_, j) =>
    new Promise((r) => setTimeout(r, 50)).then(() => runStream(server.url, specFor(j), { timeoutMs, abortAfterMs: 300 + 100 * j })));
  const results = await Promise.all(clients);
  const aborted = await Promise.all(queueAborts);
  const wallS = (performance.now() - t0) / 1000;
  const h = await watch.stop();
  await waitFor('an idle server after the round', idle(server.url));
  const after = await (await fetch(`${server.url}/metrics`)).text();

  const completed = results.filter((x) => x.r.outcome === 'complete');
  const disconnected = results.filter((x) => x.r.outcome === 'disconnected');
  const bad: string[] = [];
  for (const { i, spec, r } of results) {
    const expectLeave = leavesAfter(i) !== undefined;
    const problems = [...r.problems];
    if (r.outcome === 'complete') {
      const ref = refs.get(keyOf(spec));
      if (ref !== undefined) problems.push(...againstReference(r, ref, spec));
      // a leaver whose reply was shorter than its cut finished normally: fine
    } else if (r.outcome === 'disconnected') {
      if (!expectLeave) problems.push('disconnected without being told to');
    } else {
      problems.push(`outcome ${r.outcome} (HTTP ${r.status}${r.errorCode ? ` ${r.errorCode}` : ''})`);
    }
    if (problems.length > 0) bad.push(`client ${i} (${spec.endpoint}): ${problems.join('; ')}`);
  }
  for (const r of aborted) if (r.outcome !== 'disconnected') bad.push(`a queue-abort client ended ${r.outcome} (HTTP ${r.status}): ${r.problems.join('; ')}`);
  for (const b of bad.slice(0, 10)) process.stdout.write(`    ${b}\n`);

  const expectedLeavers = results.filter((x) => leavesAfter(x.i) !== undefined).length;
  check(bad.length === 0, `round ${round}: every finished stream well-formed and equal to its non-streaming reply (${completed.length} complete, ${disconnected.length} left mid-stream, ${aborted.filter((r) => r.outcome === 'disconnected').length} left while queued)`);
  check(disconnected.length === expectedLeavers, `round ${round}: ${disconnected.length} of ${expectedLeavers} leavers left mid-stream (the rest finished first)`);
  const abortedGenerations = metric(after, 'qllama_generations_total', 'finish_reason="aborted"') - metric(before, 'qllama_generations_total', 'finish_reason="aborted"');
  // The server may have generated a short reply to its end (it sits in socket buffers) before
  // a leaving client read its first deltas: such a generation finishes normally. The burst's
  // holder checks the deterministic case (a long generation stopped when its client leaves).
  check(abortedGenerations <= disconnected.length && abortedGenerations > 0,
    `round ${round}: the server stopped ${abortedGenerations} generations as aborted (${disconnected.length} clients left mid-stream; the rest had finished generating)`);
  const goneQueued = metric(after, 'qllama_rejected_requests_total', 'reason="client_gone"') - metric(before, 'qllama_rejected_requests_total', 'reason="client_gone"');
  check(goneQueued === QUEUE_ABORTS, `round ${round}: ${goneQueued} of ${QUEUE_ABORTS} queued clients that left were dropped from the queue`);
  check(h.failures === 0 && !server.exited(), `round ${round}: the server stayed up (/health answered ${h.polls - h.failures}/${h.polls} polls, slowest ${h.maxMs.toFixed(0)} ms)`);
  const newLog = server.log.slice(logAt);
  const internalErrors = newLog.filter((l) => l.includes('internal error'));
  for (const l of internalErrors.slice(0, 2)) process.stdout.write(`    server log: ${l}\n`);
  check(internalErrors.length === 0, `round ${round}: no internal errors in the server log (${internalErrors.length})`);

  const latencies = completed.map((x) => x.r.endedAt - x.r.startedAt);
  const ttfts = results.flatMap((x) => (x.r.firstTokenAt !== null ? [x.r.firstTokenAt - x.r.startedAt] : []));
  const streamRates = completed.flatMap((x) => {
    const r = x.r;
    return r.firstTokenAt !== null && r.completionTokens !== null && r.completionTokens > 1 && r.endedAt > r.firstTokenAt
      ? [(r.completionTokens - 1) / ((r.endedAt - r.firstTokenAt) / 1000)] : [];
  });
  const tokens = metric(after, 'qllama_completion_tokens_total') - metric(before, 'qllama_completion_tokens_total');
  const memory = await server.memory();
  return {
    round, wallS, completed: completed.length, disconnected: disconnected.length, queueAborted: aborted.filter((r) => r.outcome === 'disconnected').length,
    requestsPerS: completed.length / wallS,
    latencyP50Ms: percentile(latencies, 50), latencyP95Ms: percentile(latencies, 95),
    ttftP50Ms: percentile(ttfts, 50), ttftP95Ms: percentile(ttfts, 95),
    tokensPerS: tokens / wallS, streamTokensPerSP50: percentile(streamRates, 50),
    healthMaxMs: h.maxMs, memory,
  };
}

interface BurstFigures {
  readonly sent: number;
  readonly rejected: number;
  readonly completed: number;
}

async function burst(server: ServerHandle, refs: ReadonlyMap<string, Reference>): Promise<BurstFigures> {
  const sent = MAX_QUEUE + BURST_EXTRA;
  process.stdout.write(`burst: one stream holds the slot, then ${sent} requests at once (--max-queue ${MAX_QUEUE})\n`);
  const metricsBefore = await (await fetch(`${server.url}/metrics`)).text();
  const holder = new AbortController();
  let started!: () => void;
  const holderStarted = new Promise<void>((r) => { started = r; });
  const hold = runStream(server.url, { endpoint: 'completion', prompt: 'The sea', maxTokens: 1900, extra: { ignore_eos: true } }, {
    timeoutMs: remainingMs(), signal: holder.signal, onDelta: () => started(),
  });
  await Promise.race([holderStarted, hold.then(() => { throw new Error('the holder ended before its first token'); })]);
  const timeoutMs = remainingMs();
  let answered = 0; // settled before the holder leaves: only the 429s can be
  const requests = Array.from({ length: sent }, (_, i) => {
    const spec = { ...specFor(i), maxTokens: 8 };
    return runStream(server.url, spec, { timeoutMs }).then((r) => { answered++; return { spec, r }; });
  });
  // Every request must have reached the server (queued there, or answered) before the holder
  // lets go; a request still connecting would otherwise take the place the holder frees.
  await waitFor('the burst to queue', async () => (await health(server.url)).queued + answered >= sent, 20_000).catch(() => undefined);
  const holderStillRunning = (await health(server.url)).running === 1;
  holder.abort();
  const held = await hold;
  const abortedBefore = metric(metricsBefore, 'qllama_generations_total', 'finish_reason="aborted"');
  const results = await Promise.all(requests);
  await waitFor('an idle server after the burst', idle(server.url));

  const rejected = results.filter((x) => x.r.outcome === 'rejected');
  const completed = results.filter((x) => x.r.outcome === 'complete');
  const bad: string[] = [];
  for (const { spec, r } of results) {
    const problems = [...r.problems];
    if (r.outcome === 'rejected' && r.errorCode !== 'queue_full') problems.push(`429 with code ${r.errorCode}`);
    if (r.outcome === 'complete') {
      const ref = refs.get(keyOf(spec));
      if (ref !== undefined) problems.push(...againstReference(r, ref, spec));
    }
    if (r.outcome === 'failed' || r.outcome === 'disconnected') problems.push(`outcome ${r.outcome} (HTTP ${r.status})`);
    if (problems.length > 0) bad.push(`${spec.endpoint}: ${problems.join('; ')}`);
  }
  for (const b of bad.slice(0, 10)) process.stdout.write(`    ${b}\n`);
  const metricsAfter = await (await fetch(`${server.url}/metrics`)).text();
  const holderStopped = metric(metricsAfter, 'qllama_generations_total', 'finish_reason="aborted"') - abortedBefore === 1;
  check(held.outcome === 'disconnected' && holderStillRunning && holderStopped, `burst: the holder kept the slot until it left after ${held.deltas} of 1900 tokens; the server stopped its generation`);
  check(rejected.length === BURST_EXTRA, `burst: ${rejected.length} of ${sent} answered 429 queue_full (want exactly ${BURST_EXTRA} beyond --max-queue ${MAX_QUEUE})`);
  check(completed.length === sent - BURST_EXTRA && bad.length === 0, `burst: the ${completed.length} queued requests all completed, well-formed`);
  return { sent, rejected: rejected.length, completed: completed.length };
}

// ---------------------------------------------------------------------------------------------

function mib(n: number): string { return `${(n / MiB).toFixed(1)} MiB`; }

async function main(): Promise<void> {
  const server = await startServer();
  const cpu = os.cpus();
  process.stdout.write(`server: ${SERVER_KIND === 'child' ? 'QllamaServer in a child process (--expose-gc)' : 'qllama serve'} at ${server.url}, tiny-vicuna-4k on the CPU backend; ${cpu.length}× ${cpu[0]?.model ?? '?'}, node ${process.version}\n`);
  try {
    // References (greedy, non-streaming), which also warm the JIT and the KV cache up.
    const refs = new Map<string, Reference>();
    const specs = [...new Map(Array.from({ length: Math.max(CLIENTS, MAX_QUEUE + BURST_EXTRA) }, (_, i) => specFor(i))
      .flatMap((s) => [s, { ...s, maxTokens: 8 }]).map((s) => [keyOf(s), s] as const)).values()];
    for (const s of specs) refs.set(keyOf(s), await runPlain(server.url, s));
    for (const s of specs.slice(0, 4)) await runStream(server.url, s, { timeoutMs: remainingMs() });
    await waitFor('an idle server', idle(server.url));
    const baseline = await server.memory();
    process.stdout.write(`references: ${refs.size} greedy replies; baseline memory: RSS ${mib(baseline.rss)}, heap ${mib(baseline.heapUsed)}${baseline.afterGc ? ' after GC' : ' (no GC: /metrics)'}\n`);

    const rounds: RoundFigures[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      const f = await loadRound(server, round, refs);
      rounds.push(f);
      process.stdout.write(`  ${f.completed} complete in ${f.wallS.toFixed(2)} s: ${f.requestsPerS.toFixed(2)} req/s, latency p50 ${f.latencyP50Ms.toFixed(0)} ms p95 ${f.latencyP95Ms.toFixed(0)} ms, `
        + `first token p50 ${f.ttftP50Ms.toFixed(0)} ms p95 ${f.ttftP95Ms.toFixed(0)} ms, ${f.tokensPerS.toFixed(1)} tokens/s served (${f.streamTokensPerSP50.toFixed(0)} tokens/s per stream once running, p50)\n`);
      process.stdout.write(`  memory after the round: RSS ${mib(f.memory.rss)} (baseline ${mib(baseline.rss)}), heap ${mib(f.memory.heapUsed)} (baseline ${mib(baseline.heapUsed)})\n`);
    }
    // Heap after GC must come back (a leak of a few KB per request shows as MiB here); RSS is
    // allowed the allocator's slack, but must not keep growing from one round to the next.
    const last = rounds[rounds.length - 1].memory;
    // Without a forced GC (--server cli reads /metrics) the heap carries garbage: a loose limit.
    const heapLimit = baseline.afterGc ? baseline.heapUsed * 1.1 + 2 * MiB : baseline.heapUsed * 1.5 + 8 * MiB;
    check(last.heapUsed <= heapLimit, `memory: heap${last.afterGc ? ' after GC' : ' (no GC)'} ${mib(last.heapUsed)} back near its baseline ${mib(baseline.heapUsed)} (limit ${mib(heapLimit)})`);
    const rssLimit = baseline.rss + 48 * MiB;
    check(last.rss <= rssLimit, `memory: RSS ${mib(last.rss)} back near its baseline ${mib(baseline.rss)} (limit ${mib(rssLimit)})`);
    if (rounds.length > 1) {
      const growth = last.rss - rounds[0].memory.rss;
      check(growth <= 16 * MiB, `memory: RSS grew ${mib(growth)} from round 1 to round ${rounds.length} (limit 16 MiB)`);
    }

    const b = await burst(server, refs);
    const final = await health(server.url);
    check(final.status === 'ok' && !server.exited(), 'the server is still up after everything');
    const finalMemory = await server.memory();

    const r = rounds[rounds.length - 1];
    process.stdout.write(`${failures.length === 0 ? 'PASS' : `FAIL (${failures.length})`}\n`);
    const summary = {
      bench: 'server-load', ok: failures.length === 0, failures,
      server: SERVER_KIND, model: 'tiny-vicuna-4k', backend: 'cpu', cpus: cpu.length, cpu: cpu[0]?.model ?? null, node: process.version,
      clients: CLIENTS, leave_mid_stream: DISCONNECTERS, leave_queued: QUEUE_ABORTS, max_tokens: MAX_TOKENS, max_queue: MAX_QUEUE,
      requests_per_s: round2(r.requestsPerS), latency_p50_ms: Math.round(r.latencyP50Ms), latency_p95_ms: Math.round(r.latencyP95Ms),
      ttft_p50_ms: Math.round(r.ttftP50Ms), ttft_p95_ms: Math.round(r.ttftP95Ms), tokens_per_s: round2(r.tokensPerS), stream_tokens_per_s_p50: round2(r.streamTokensPerSP50),
      health_max_ms: Math.round(r.healthMaxMs),
      rounds: rounds.map((x) => ({ round: x.round, wall_s: round2(x.wallS), completed: x.completed, left_mid_stream: x.disconnected, left_queued: x.queueAborted, requests_per_s: round2(x.requestsPerS), tokens_per_s: round2(x.tokensPerS), rss_mib: round2(x.memory.rss / MiB), heap_mib: round2(x.memory.heapUsed / MiB) })),
      memory: { after_gc: baseline.afterGc, baseline_rss_mib: round2(baseline.rss / MiB), baseline_heap_mib: round2(baseline.heapUsed / MiB), after_rss_mib: round2(last.rss / MiB), after_heap_mib: round2(last.heapUsed / MiB), final_rss_mib: round2(finalMemory.rss / MiB), final_heap_mib: round2(finalMemory.heapUsed / MiB) },
      burst: { sent: b.sent, rejected_429: b.rejected, completed: b.completed },
    };
    process.stdout.write(`${JSON.stringify(summary)}\n`);
  } finally {
    await server.stop();
  }
  process.exitCode = failures.length === 0 ? 0 : 1;
}

function round2(x: number): number { return Math.round(x * 100) / 100; }

main().catch((err: unknown) => {
  process.stderr.write(`bench:server: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
