// `--precision tf32`: the dispatcher and the legacy TF32 kernel. Operands are rounded to TF32 (10-bit mantissa) as
// they enter the MMA, so results differ from exact fp32 by about 1e-3 relative; `--precision fp32` keeps exact FMA.
// Kernels: by default the pipelined mma.sync kernel of conv_mma.cuh; with CF_CONV_KERNELS=legacy (common.cuh) the
// WMMA kernel below (m16n16k8, fp32 accumulation). Layers too small for a tensor-core tile (cout/groups < 32,
// K < 16) and dense layers with batch <= 8 take the exact fp32 path (conv_fp32.cuh) either way.
// Layout: activations fp32 NCHW in memory (every other kernel is shared with the fp32 path); weights
// [cout][cin/groups][kh][kw], batch norm folded in. GEMM view per group as in conv_fp32.cuh: m = output channel,
// n = (image, y, x), k = (input channel, ky, kx).
// Legacy block: 64 (m) x 128 (n) outputs, k slices of 16, 8 warps each owning 32 x 32 (2 x 2 fragments); tiles
// staged as fp32 with 4-byte cp.async, double-buffered; epilogue through shared memory.
// Speed vs cuDNN of the legacy kernel (H200, whole networks, benchmarks/results/codegen_speed.md): resnet18 224px
// batch 256 58.5 ms vs 17.7 ms for the cudnn backend in tf32 (3.3x slower) and 12.0 ms for PyTorch eager (TF32);
// only 11% faster than the exact fp32 kernel (65.8 ms): the scalar im2col gather (div/mod per element) bound it.
#pragma once
#include <mma.h>
#include "common.cuh"
#include "conv_fp32.cuh"
#include "conv_mma.cuh"
#include "igemm.cuh"
#include "splitk.cuh"

namespace cf {

constexpr int kTfBM = 64, kTfBN = 128, kTfBK = 16, kTfThreads = 256;
constexpr int kTfLdA = kTfBK + 4, kTfLdB = kTfBN + 4, kTfLdC = kTfBN + 4;
constexpr int kTfStageFloats = kTfBM * kTfLdA + kTfBK * kTfLdB;
constexpr int kTfSmemFloats = 2 * kTfStageFloats > kTfBM * kTfLdC ? 2 * kTfStageFloats : kTfBM * kTfLdC;

__global__ void __launch_bounds__(kTfThreads)
conv_tf32_kernel(const float* __restrict__ x, const float* __restrict__ wgt, const float* __restrict__ bias,
                 const float* __restrict__ residual, float* __restrict__ y, ConvShape s, int batch, int act,
                 float slope, int splits, float* __restrict__ partial) {
  using namespace nvcuda;
  constexpr int BM = kTfBM, BN = kTfBN, BK = kTfBK, NT = kTfThreads;
  __shared__ __align__(128) float smem[kTfSmemFloats];

  const int tid = threadIdx.x, warp = tid / 32;
  const ConvGemm t = conv_gemm(s, batch, splits, BM, BN, 1);
  const float* wg = wgt + static_cast<long long>(t.g) * t.cout_g * t.K;
  const int bn = tid % BN;  // the input column this thread gathers is fixed for the whole k loop
  const ConvColumn col = conv_column(s, t, x, t.n0 + bn);

  auto stage_a = [&](int st) { return smem + st * kTfStageFloats; };
  auto stage_b = [&](int st) { return smem + st * kTfStageFloats + BM * kTfLdA; };
  auto load = [&](int st, int k0) {
    float* As = stage_a(st);
    float* Bs = stage_b(st);
#pragma unroll
    for (int i = 0; i < BM * BK / NT; ++i) {  // weights: 16 consecutive k per row
      int idx = tid + i * NT, mm = idx / BK, kk = idx % BK;
      int m = t.m0 + mm, k = k0 + kk;
      bool ok = m < t.cout_g && k < t.k_end;
      cp_async_f32(As + mm * kTfLdA + kk, ok ? wg + static_cast<long long>(m) * t.K + k : wgt, ok);
    }
#pragma unroll
    for (int i = 0; i < BK * BN / NT; ++i) {  // im2col gather: consecutive threads read consecutive pixels
      int kk = tid / BN + i * (NT / BN), k = k0 + kk;
      bool ok = false;
      const float* src = x;
      if (col.ok && k < t.k_end) {
        int c = k / t.khw, r = k % t.khw;
        int iy = col.iy0 + (r / s.kw) * s.dh, ix = col.ix0 + (r % s.kw) * s.dw;
        ok = iy >= 0 && iy < s.h && ix >= 0 && ix < s.w;
        if (ok) src = col.xg + (static_cast<long long>(c) * s.h + iy) * s.w + ix;
      }
      cp_async_f32(Bs + kk * kTfLdB + bn, src, ok);
    }
  };

  const int wm = (warp / 4) * 32, wn = (warp % 4) * 32;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);

  const int tiles = t.k_end > t.k_begin ? (t.k_end - t.k_begin + BK - 1) / BK : 0;
  if (tiles > 0) load(0, t.k_begin);
  cp_async_commit();
  for (int it = 0; it < tiles; ++it) {
    if (it + 1 < tiles) load((it + 1) & 1, t.k_begin + (it + 1) * BK);
    cp_async_commit();
    cp_async_wait<1>();  // slice it has landed; slice it+1 may still be in flight
    __syncthreads();
    const float* As = stage_a(it & 1);
    const float* Bs = stage_b(it & 1);
#pragma unroll
    for (int kk = 0; kk < BK; kk += 8) {
      wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> b[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        wmma::load_matrix_sync(a[i], As + (wm + i * 16) * kTfLdA + kk, kTfLdA);
#pragma unroll
        for (int e = 0; e < a[i].num_elements; ++e) a[i].x[e] = wmma::__float_to_tf32(a[i].x[e]);
      }
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        wmma::load_matrix_sync(b[j], Bs + kk * kTfLdB + wn + j * 16, kTfLdB);
#pragma unroll
        for (int e = 0; e < b[j].num_elements; ++e) b[j].x[e] = wmma::__float_to_tf32(b[j].x[e]);
      }
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    }
    __syncthreads();  // everyone is done with this stage before it is refilled
  }
  cp_async_wait<0>();
  __syncthreads();

  float* Cs = smem;  // the stages are free now
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(Cs + (wm + i * 16) * kTfLdC + wn + j * 16, acc[i][j], kTfLdC, wmma::mem_row_major);
  __syncthreads();

  store_staged_tile<BM, BN, NT>(Cs, kTfLdC, t, s, batch, tid, y, partial, bias, residual, act, slope);
}

inline void conv_tf32(cudaStream_t st, const float* x, const float* w, const float* b, const float* res, float* y,
                      const ConvShape& s, int batch, int act, float slope, float* ws, long long ws_elems) {
  int k = s.cin / s.groups * s.kh * s.kw;
  if ((is_dense(s) && batch <= 8) || s.cout / s.groups < 32 || k < 16) {
    conv_fp32(st, x, w, b, res, y, s, batch, act, slope, ws, ws_elems);
    return;
  }
  if (!use_legacy_conv() && igemm_fits(s, batch)) {
    conv_mma<MmaTf32>(st, x, w, b, res, y, s, batch, act, slope, ws, ws_elems);
    return;
  }
  long long ncols = static_cast<long long>(batch) * s.ho * s.wo;
  long long blocks = static_cast<long long>(ceil_div(ncols, kTfBN)) * ceil_div(s.cout / s.groups, kTfBM) * s.groups;
  int splits = choose_splits(blocks, k, kTfBK, ncols * s.cout, ws_elems);
  dim3 grid(ceil_div(ncols, kTfBN), ceil_div(s.cout / s.groups, kTfBM), s.groups * splits);
  conv_tf32_kernel<<<grid, kTfThreads, 0, st>>>(x, w, b, res, y, s, batch, act, slope, splits,
                                                splits > 1 ? ws : nullptr);
  CF_CHECK(cudaGetLastError());
  if (splits > 1) splitk_reduce(st, ws, splits, b, res, y, s, batch, act, slope);
}

// Called by the generated network's constructor (outside graph capture): shared-memory limits of the new kernels.
inline void conv_tf32_init() { conv_mma_init<MmaTf32>(); }

}  // namespace cf
