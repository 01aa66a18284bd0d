// Block timelines for lab builds (compiled with -DQLLAMA_TRACE by bench/lab/trace-build.sh; the shipped fatbin has
// none of it: without the define every macro below is empty, and scripts/fatbin-code.mjs shows the same machine code).
// nsys is not on the lent GPU machine and ncu times kernels one at a time, outside the decode graph, so neither shows
// where a replayed step's time goes between and inside its programmatically launched kernels. Here thread 0 of every
// block of an instrumented kernel stamps %globaltimer (ns, one clock for the whole GPU) at its start (t0), at the
// marks the kernel sets (t1, t2; 0 where unset) and when it exits (t3), and appends one 64-byte record to
// qllama_trace, which bench/cudaDecodeTrace.ts reads back through cuModuleGetGlobal.
#pragma once

#ifdef QLLAMA_TRACE
#ifndef QLLAMA_TRACE_RECS
#define QLLAMA_TRACE_RECS (1u << 19)
#endif
struct TraceRec {
  unsigned long long t[4];
  unsigned kernel, gridX, gridY, block;
  unsigned smid, pad[3];
};
static_assert(sizeof(TraceRec) == 64, "TraceRec is read as 64 bytes by bench/cudaDecodeTrace.ts");
__device__ TraceRec qllama_trace[QLLAMA_TRACE_RECS];
__device__ unsigned qllama_trace_n;

__device__ __forceinline__ unsigned long long trace_now() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// thread 0's stamps in shared memory, not registers: the GEMVs run at their register cap, and live stamps would spill
__device__ __forceinline__ unsigned long long* trace_stamps() {
  __shared__ unsigned long long stamps[3];
  return stamps;
}

// one block's stamps; the destructor appends the record at whichever return the block leaves by
struct BlockTrace {
  unsigned kernel;
  __device__ explicit BlockTrace(unsigned k) : kernel(k) {
    if (threadIdx.x != 0) return;
    trace_stamps()[0] = trace_now();
    trace_stamps()[1] = trace_stamps()[2] = 0;
  }
  __device__ void mark(int i) {
    if (threadIdx.x == 0) trace_stamps()[i] = trace_now();
  }
  __device__ ~BlockTrace() {
    if (threadIdx.x != 0) return;
    const unsigned long long end = trace_now();
    const unsigned i = atomicAdd(&qllama_trace_n, 1u);
    if (i >= QLLAMA_TRACE_RECS) return;
    unsigned sm;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
    TraceRec& r = qllama_trace[i];
    r.t[0] = trace_stamps()[0];
    r.t[1] = trace_stamps()[1];
    r.t[2] = trace_stamps()[2];
    r.t[3] = end;
    r.kernel = kernel;
    r.gridX = gridDim.x;
    r.gridY = gridDim.y;
    r.block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    r.smid = sm;
  }
};
#define TRACE_BEGIN(kernelId) BlockTrace trace_block_(kernelId)
#define TRACE_MARK(i) trace_block_.mark(i)
#else
#define TRACE_BEGIN(kernelId)
#define TRACE_MARK(i)
#endif

// kernel ids in the records
#define TRACE_GEMV_Q4 1        // gemv_q4_rpg*, gemv_q4_tail_rpg*: t1 griddepcontrol.wait returned, t2 main loop done
#define TRACE_GEMV_Q4_CL 2     // gemv_q4_cl_rpg*: the same marks
#define TRACE_ATTN_SPLIT 3     // attn_split_*
#define TRACE_GEMV_F16 4       // gemv_f16 (lm_head): t1 griddepcontrol.wait returned
