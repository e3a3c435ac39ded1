// Implicit-GEMM convolution (and dense layers) on TF32 tensor cores through WMMA (m16n16k8, fp32 accumulation):
// `--precision tf32`. Operands are rounded to TF32 (10-bit mantissa) as they enter the MMA, so results differ from
// exact fp32 by about 1e-3 relative; `--precision fp32` keeps the exact FMA kernel (conv_fp32.cuh).
// Layout: activations fp32 NCHW in memory (every other kernel is shared with the fp32 path); weights
// [cout][cin/groups][kh][kw], batch norm folded in. GEMM view per group as in conv_fp32.cuh: m = output channel,
// n = (image, y, x), k = (input channel, ky, kx).
// Block: 64 (m) x 128 (n) outputs, k slices of 16, 8 warps each owning 32 x 32 (2 x 2 fragments). Tiles are
// staged in shared memory as fp32 with cp.async (4-byte copies; zero-fill for padding and edges), double-buffered:
// the copy of slice t+1 is in flight while slice t is multiplied. Epilogue through shared memory: + bias,
// + residual, activation, coalesced NCHW stores (or split-K partial sums, splitk.cuh).
// Layers too small for a 64-row tile (cout/groups < 32) and dense layers with batch <= 8 keep the exact fp32
// kernels (conv_fp32.cuh), where launch latency, not arithmetic, is the cost.
// Speed vs cuDNN (H200, whole networks, benchmarks/results/codegen_speed.md): resnet18 224px batch 256 58.5 ms vs
// 17.7 ms for the cudnn backend in tf32 (3.3x slower) and 12.0 ms for PyTorch eager (TF32); only 11% faster than the
// exact fp32 kernel (65.8 ms). The MMAs are not the limit: the scalar im2col gather (div/mod per element, 4-byte
// cp.async) is. Next: 16-byte copies along k for the weights, incremental (c, ky, kx) indices, 3 stages.
#pragma once
#include <mma.h>
#include "common.cuh"
#include "conv_fp32.cuh"
#include "splitk.cuh"

namespace cf {

__device__ __forceinline__ void cp_async4(float* smem, const float* gmem, bool valid) {
  unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  int bytes = valid ? 4 : 0;  // 0: nothing is read and the 4 bytes are zero-filled
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(gmem), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

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
  const int g = blockIdx.z / splits, split = blockIdx.z % splits;
  const int cin_g = s.cin / s.groups, cout_g = s.cout / s.groups;
  const int khw = s.kh * s.kw;
  const int K = cin_g * khw;
  const int k_step = (K + splits - 1) / splits;
  const int k_begin = split * k_step, k_end = min(K, k_begin + k_step);
  const int P = s.ho * s.wo;
  const long long Ncols = static_cast<long long>(batch) * P;
  const int m0 = blockIdx.y * BM;
  const long long n0 = static_cast<long long>(blockIdx.x) * BN;

  // The input column this thread gathers is fixed for the whole k loop: decode it once.
  const int bn = tid % BN;
  const long long ncol = n0 + bn;
  const bool col_ok = ncol < Ncols;
  int img = 0, oy = 0, ox = 0;
  if (col_ok) {
    img = static_cast<int>(ncol / P);
    int p = static_cast<int>(ncol % P);
    oy = p / s.wo;
    ox = p % s.wo;
  }
  const int iy0 = oy * s.sh - s.ph, ix0 = ox * s.sw - s.pw;
  const float* xg = x + (static_cast<long long>(img) * s.cin + static_cast<long long>(g) * cin_g) * s.h * s.w;
  const float* wg = wgt + static_cast<long long>(g) * cout_g * K;

  auto stage_a = [&](int st) { return smem + st * kTfStageFloats; };
  auto stage_b = [&](int st) { return smem + st * kTfStageFloats + BM * kTfLdA; };
  auto load = [&](int st, int k0) {
    float* As = stage_a(st);
    float* Bs = stage_b(st);
#pragma unroll
    for (int i = 0; i < BM * BK / NT; ++i) {  // weights: 16 consecutive k per row
      int idx = tid + i * NT, mm = idx / BK, kk = idx % BK;
      int m = m0 + mm, k = k0 + kk;
      bool ok = m < cout_g && k < k_end;
      cp_async4(As + mm * kTfLdA + kk, ok ? wg + static_cast<long long>(m) * K + k : wgt, ok);
    }
#pragma unroll
    for (int i = 0; i < BK * BN / NT; ++i) {  // im2col gather: consecutive threads read consecutive pixels
      int kk = tid / BN + i * (NT / BN), k = k0 + kk;
      bool ok = false;
      const float* src = x;
      if (col_ok && k < k_end) {
        int c = k / khw, r = k % khw;
        int iy = iy0 + (r / s.kw) * s.dh, ix = ix0 + (r % s.kw) * s.dw;
        ok = iy >= 0 && iy < s.h && ix >= 0 && ix < s.w;
        if (ok) src = xg + (static_cast<long long>(c) * s.h + iy) * s.w + ix;
      }
      cp_async4(Bs + kk * kTfLdB + bn, src, ok);
    }
  };

  const int wm = (warp / 4) * 32, wn = (warp % 4) * 32;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);

  const int tiles = k_end > k_begin ? (k_end - k_begin + BK - 1) / BK : 0;
  if (tiles > 0) load(0, k_begin);
  cp_async_commit();
  for (int t = 0; t < tiles; ++t) {
    if (t + 1 < tiles) load((t + 1) & 1, k_begin + (t + 1) * BK);
    cp_async_commit();
    cp_async_wait<1>();  // slice t has landed; slice t+1 may still be in flight
    __syncthreads();
    const float* As = stage_a(t & 1);
    const float* Bs = stage_b(t & 1);
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

  for (int i = tid; i < BM * BN; i += NT) {
    int mm = i / BN, nn = i % BN;
    int m = m0 + mm;
    long long n = n0 + nn;
    if (m >= cout_g || n >= Ncols) continue;
    int im = static_cast<int>(n / P), p = static_cast<int>(n % P);
    int co = g * cout_g + m;
    long long o = (static_cast<long long>(im) * s.cout + co) * P + p;
    float v = Cs[mm * kTfLdC + nn];
    if (partial) {
      partial[static_cast<long long>(split) * batch * s.cout * P + o] = v;
      continue;
    }
    v += bias ? bias[co] : 0.f;
    if (residual) v += residual[o];
    y[o] = apply_act(v, act, slope);
  }
}

inline void conv_tf32(cudaStream_t st, const float* x, const float* w, const float* b, const float* res, float* y,
                      const ConvShape& s, int batch, int act, float slope, float* ws, long long ws_elems) {
  bool dense = s.h == 1 && s.w == 1 && s.kh == 1 && s.kw == 1 && s.groups == 1;
  int k = s.cin / s.groups * s.kh * s.kw;
  if ((dense && batch <= 8) || s.cout / s.groups < 32 || k < 16) {
    conv_fp32(st, x, w, b, res, y, s, batch, act, slope, ws, ws_elems);
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

}  // namespace cf
