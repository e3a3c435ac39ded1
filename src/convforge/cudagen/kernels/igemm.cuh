// Building blocks of the pipelined implicit-GEMM convolutions (conv_ffma.cuh: exact fp32; conv_mma.cuh: TF32,
// fp16, bf16 tensor cores): cp.async copies, the multi-stage shared-memory ring, the weight-tile and im2col-tile
// loaders, the epilogue, and the host-side checks that pick them.
// Layout: x fp32 NCHW; weights [cout][cin/groups][kh][kw] (row m of the GEMM is contiguous along k); tiles staged
// in shared memory as fp32 (the tensor-core kernels round to TF32/half/bf16 while building MMA fragments, so one
// loader serves every precision). Output fp32 NCHW, or split-K partial sums [split][N][cout][H*W] (splitk.cuh).
// Why these loaders are fast (the legacy kernels spent their time here, not in the arithmetic):
//  - no division per element: each thread decodes its output pixel once (conv_column) and walks a run of
//    consecutive k with a (c, ky, kx) cursor (KCursor); only the first k of the layer is ever divided;
//  - weights move in 16-byte cp.async chunks when K % 4 == 0 and the pointer is 16-byte aligned (every layer of
//    alexnet/resnet18 but the 3-channel stem); the 4-byte path keeps any other shape exact;
//  - copies are asynchronous into a ring of STAGES tiles, so global latency overlaps the multiply of earlier tiles.
// Speed vs cuDNN: see conv_ffma.cuh and conv_mma.cuh.
#pragma once
#include <atomic>

#include "common.cuh"

namespace cf {

// ---- asynchronous global -> shared copies (sm_80+; plain loads below, which the callers never rely on) -------
// src-size 0 reads nothing and zero-fills the destination: that is how padding and tile edges become zeros.
__device__ __forceinline__ void cp_async_f32(float* smem, const float* gmem, bool valid) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(gmem), "r"(valid ? 4 : 0));
#else
  *smem = valid ? *gmem : 0.f;
#endif
}
// 16 bytes; both addresses must be 16-byte aligned. .cg: bypass L1 (each weight chunk is read once per CTA).
__device__ __forceinline__ void cp_async_f32x4(float* smem, const float* gmem, bool valid) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(valid ? 16 : 0));
#else
  *reinterpret_cast<float4*>(smem) = valid ? *reinterpret_cast<const float4*>(gmem) : make_float4(0.f, 0.f, 0.f, 0.f);
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

// Multi-stage shared-memory ring: tiles t+1 .. t+STAGES-1 are in flight while tile t is multiplied.
// load(stage, tile) issues the copies of one tile; compute(stage) multiplies one landed tile.
// Invariant: at iteration t exactly STAGES-1+t groups were committed (empty ones included), so wait_group
// STAGES-2 means tile t has landed for this thread; the __syncthreads then (a) makes every thread's copies
// visible and (b) proves every warp finished computing tile t-1, whose stage is the one refilled next.
template <int STAGES, class Load, class Compute>
__device__ __forceinline__ void pipeline(int tiles, Load load, Compute compute) {
#pragma unroll
  for (int st = 0; st < STAGES - 1; ++st) {
    if (st < tiles) load(st, st);
    cp_async_commit();
  }
  for (int t = 0; t < tiles; ++t) {
    cp_async_wait<STAGES - 2>();
    __syncthreads();
    const int next = t + STAGES - 1;
    if (next < tiles) load(next % STAGES, next);
    cp_async_commit();
    compute(t % STAGES);
  }
  cp_async_wait<0>();
  __syncthreads();  // the stages may be reused (epilogue) only after every warp is done with them
}

// Weight tile As[m][k] (k contiguous, leading dimension LDA) for rows m0.. and k0..k0+BK-1 of this group's
// [cout_g][K] weights; rows past cout_g and k past k_end are zero-filled. vec: 16-byte chunks (the host checked
// K % 4 == 0 and 16-byte alignment; k_end is then a multiple of 4 too, so a chunk is all in or all out).
template <int BM, int BK, int NT, int LDA>
__device__ __forceinline__ void load_w_rows(float* As, const float* wg, const ConvGemm& t, int k0, int tid,
                                            bool vec) {
  if (vec) {
    constexpr int CH = BK / 4;
    static_assert((BM * CH) % NT == 0, "weight chunks must split evenly over the threads");
#pragma unroll
    for (int i = 0; i < BM * CH / NT; ++i) {
      const int idx = tid + i * NT, mm = idx / CH, kq = idx % CH;
      const int m = t.m0 + mm, k = k0 + kq * 4;
      const bool ok = m < t.cout_g && k < t.k_end;
      cp_async_f32x4(As + mm * LDA + kq * 4, ok ? wg + static_cast<long long>(m) * t.K + k : wg, ok);
    }
  } else {
    static_assert((BM * BK) % NT == 0, "weight elements must split evenly over the threads");
#pragma unroll 4
    for (int i = 0; i < BM * BK / NT; ++i) {
      const int idx = tid + i * NT, mm = idx / BK, kk = idx % BK;
      const int m = t.m0 + mm, k = k0 + kk;
      const bool ok = m < t.cout_g && k < t.k_end;
      cp_async_f32(As + mm * LDA + kk, ok ? wg + static_cast<long long>(m) * t.K + k : wg, ok);
    }
  }
}

// Weight tile transposed, As[k][m] (m contiguous), for the FMA kernel's float4 reads along m. 4-byte copies:
// consecutive threads read consecutive k of one row (32-byte segments), and the shared-memory writes hit 32
// different banks because LDA % 32 == 4.
template <int BM, int BK, int NT, int LDA>
__device__ __forceinline__ void load_w_cols(float* As, const float* wg, const ConvGemm& t, int k0, int tid) {
  static_assert((BM * BK) % NT == 0, "weight elements must split evenly over the threads");
#pragma unroll
  for (int i = 0; i < BM * BK / NT; ++i) {
    const int idx = tid + i * NT, mm = idx / BK, kk = idx % BK;
    const int m = t.m0 + mm, k = k0 + kk;
    const bool ok = m < t.cout_g && k < t.k_end;
    cp_async_f32(As + kk * LDA + mm, ok ? wg + static_cast<long long>(m) * t.K + k : wg, ok);
  }
}

// The im2col tile Bs[k][n] (n contiguous, leading dimension LDB), gathered with zero padding. Thread tid owns
// column bn = tid % BN of every tile and the KR consecutive rows kr0.. of it: a warp reads 32 consecutive output
// pixels of one input row (coalesced for stride 1) and writes 32 consecutive words of one shared row (no bank
// conflicts), and the cursor steps k without dividing. Tiles must be loaded in order (the ring does).
template <int BK, int BN, int NT, int LDB>
struct GatherB {
  static constexpr int KR = BK * BN / NT;
  static_assert(NT % BN == 0 && (BK * BN) % NT == 0, "im2col tile must split into whole runs");
  ConvColumn col;
  KCursor cur, skip;  // skip: the BK - KR rows of this tile that the other threads gather
  int bn, kr0;

  __device__ __forceinline__ void init(const ConvShape& s, const ConvGemm& t, const float* x, int tid) {
    bn = tid % BN;
    kr0 = (tid / BN) * KR;
    col = conv_column(s, t, x, t.n0 + bn);
    cur.seek(t.k_begin + kr0, t.khw, s.kw);
    skip.seek(BK - KR, t.khw, s.kw);
  }

  __device__ __forceinline__ void load(float* Bs, const ConvShape& s, int k_end, const float* x) {
    const int hw = s.h * s.w;  // the host checked cin * h * w < 2^31, so the offsets below fit in int
#pragma unroll
    for (int j = 0; j < KR; ++j) {
      const int iy = col.iy0 + cur.ky * s.dh, ix = col.ix0 + cur.kx * s.dw;
      const bool ok = col.ok && cur.k < k_end && static_cast<unsigned>(iy) < static_cast<unsigned>(s.h) &&
                      static_cast<unsigned>(ix) < static_cast<unsigned>(s.w);
      cp_async_f32(Bs + (kr0 + j) * LDB + bn, ok ? col.xg + (cur.c * hw + iy * s.w + ix) : x, ok);
      cur.next(s.kh, s.kw);
    }
    if (KR < BK) cur.advance(skip, s.kh, s.kw);  // to the same run of the next tile
  }
};

// Epilogue from a staged output tile Cs[m][n] (leading dimension LDC): bias, residual, activation, NCHW stores.
// Each thread keeps one column (decoded once) and walks rows, so a warp stores 32 consecutive pixels.
template <int BM, int BN, int NT, int LDC>
__device__ __forceinline__ void store_tile(const float* Cs, const ConvGemm& t, const ConvShape& s, int batch,
                                           const float* __restrict__ bias, const float* __restrict__ residual,
                                           float* __restrict__ y, float* __restrict__ partial, int act, float slope,
                                           int tid) {
  const int nn = tid % BN;
  const long long n = t.n0 + nn;
  if (n >= t.Ncols) return;
  const int img = static_cast<int>(n / t.P), p = static_cast<int>(n - static_cast<long long>(img) * t.P);
  const long long base = static_cast<long long>(img) * s.cout * t.P + p;
  const long long split_off = static_cast<long long>(t.split) * batch * s.cout * t.P;
  for (int mm = tid / BN; mm < BM; mm += NT / BN) {
    const int m = t.m0 + mm;
    if (m >= t.cout_g) break;  // rows only grow
    const int co = t.g * t.cout_g + m;
    const long long o = base + static_cast<long long>(co) * t.P;
    store_conv_output(Cs[mm * LDC + nn], o, co, y, partial, split_off, bias, residual, act, slope);
  }
}

// Host: whether the pipelined kernels' 32-bit index arithmetic covers this layer (any image model here does).
inline bool igemm_fits(const ConvShape& s, int batch) {
  const long long lim = (1LL << 31) - 4096;
  long long ncols = static_cast<long long>(batch) * s.ho * s.wo;
  long long in_img = static_cast<long long>(s.cin) * s.h * s.w;
  long long w_elems = static_cast<long long>(s.cout) * (s.cin / s.groups) * s.kh * s.kw;
  return ncols < lim && in_img < lim && w_elems < lim;
}

// Host: output-channel tile of 128 when it divides cout/groups or the waste is small, else 64 (alexnet's 192
// channels: 3 full tiles of 64 rather than 2 of 128 with one a quarter empty).
inline bool igemm_wide_m(const ConvShape& s) {
  int cout_g = s.cout / s.groups;
  return cout_g % 128 == 0 || cout_g > 256;
}

// Host: sets a kernel's dynamic shared-memory limit once per device (bit per device ordinal). The generated
// network calls this from its constructor (the *_init functions), so nothing but launches happen during graph
// capture; a stand-alone caller (bench_conv_entry.cu) gets it lazily on the first launch.
template <class Kernel>
inline void allow_smem_once(std::atomic<unsigned long long>& ready, Kernel kernel, int bytes) {
  int dev = 0;
  CF_CHECK(cudaGetDevice(&dev));
  const unsigned long long bit = 1ULL << (dev & 63);
  if (ready.load() & bit) return;
  CF_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  ready.fetch_or(bit);
}

}  // namespace cf
