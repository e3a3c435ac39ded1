// Implicit-GEMM convolution (and dense layers), exact fp32 on CUDA cores: the `--precision fp32` dispatcher, the
// GEMV kernel for dense layers with few rows, and the legacy single-stage tiled kernel.
// Layout: input/output fp32 NCHW; weights [cout][cin/groups][kh][kw] (PyTorch order), batch norm already folded
// in; GEMM view per group: out[m][n] = sum_k W[m][k] * im2col(x)[k][n], m = output channel, n = (image, y, x).
// Epilogue (fused): + bias[m], + residual (same shape as the output, optional), then ReLU / leaky ReLU / none.
// Kernels: by default the pipelined kernel of conv_ffma.cuh; with CF_CONV_KERNELS=legacy (common.cuh) the
// single-stage conv_fp32_kernel below (BM x BN outputs per block, BK-deep k slices, TM x TN outputs per thread).
// Speed vs cuDNN of the legacy kernel (H100, whole networks, benchmarks/results/codegen_speed.md): resnet18 224px
// batch 256 66.1 ms vs 14.0 ms for PyTorch eager (cuDNN, TF32 tensor cores) = 4.7x slower; digits-cnn batch 256
// 0.149 vs 0.482 ms. Its loads divide twice per element and every tile waits for its loads: it loses on big layers
// and wins where launch gaps dominate.
#pragma once
#include "common.cuh"
#include "conv_ffma.cuh"
#include "splitk.cuh"

namespace cf {

template <int BM, int BN, int BK, int TM, int TN>
__global__ void __launch_bounds__((BM / TM) * (BN / TN))
conv_fp32_kernel(const float* __restrict__ x, const float* __restrict__ wgt, const float* __restrict__ bias,
                 const float* __restrict__ residual, float* __restrict__ y, ConvShape s, int batch, int act,
                 float slope, int splits, float* __restrict__ partial) {
  constexpr int NT = (BM / TM) * (BN / TN);
  static_assert(NT % BN == 0 && NT % BK == 0, "tile/thread mismatch");
  __shared__ float As[BK][BM + 4];
  __shared__ float Bs[BK][BN];

  const int tid = threadIdx.x;
  const ConvGemm t = conv_gemm(s, batch, splits, BM, BN, 1);
  const float* wg = wgt + static_cast<long long>(t.g) * t.cout_g * t.K;
  const int bn = tid % BN;  // the column this thread loads into Bs is fixed for the whole k loop
  const ConvColumn col = conv_column(s, t, x, t.n0 + bn);

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  const int tx = tid % (BN / TN), ty = tid / (BN / TN);
  for (int k0 = t.k_begin; k0 < t.k_end; k0 += BK) {
    // A tile: weights, coalesced along k.
    for (int i = tid; i < BM * BK; i += NT) {
      int mm = i / BK, kk = i % BK;
      int m = t.m0 + mm, k = k0 + kk;
      As[kk][mm] = (m < t.cout_g && k < t.k_end) ? wg[static_cast<long long>(m) * t.K + k] : 0.f;
    }
    // B tile: gathered input pixels (zero padding), coalesced along n.
    for (int kk = tid / BN; kk < BK; kk += NT / BN) {
      int k = k0 + kk;
      float v = 0.f;
      if (col.ok && k < t.k_end) {
        int c = k / t.khw, r = k % t.khw;
        int iy = col.iy0 + (r / s.kw) * s.dh, ix = col.ix0 + (r % s.kw) * s.dw;
        if (iy >= 0 && iy < s.h && ix >= 0 && ix < s.w) v = col.xg[(static_cast<long long>(c) * s.h + iy) * s.w + ix];
      }
      Bs[kk][bn] = v;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float a[TM], b[TN];
#pragma unroll
      for (int i = 0; i < TM; ++i) a[i] = As[kk][ty + i * (BM / TM)];
#pragma unroll
      for (int j = 0; j < TN; ++j) b[j] = Bs[kk][tx + j * (BN / TN)];
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }

#pragma unroll
  for (int j = 0; j < TN; ++j) {
    long long n = t.n0 + tx + j * (BN / TN);
    if (n >= t.Ncols) continue;
    int im = static_cast<int>(n / t.P), p = static_cast<int>(n % t.P);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      int m = t.m0 + ty + i * (BM / TM);
      if (m >= t.cout_g) continue;
      int co = t.g * t.cout_g + m;
      long long o = (static_cast<long long>(im) * s.cout + co) * t.P + p;
      const long long split_off = static_cast<long long>(t.split) * batch * s.cout * t.P;
      store_conv_output(acc[i][j], o, co, y, partial, split_off, bias, residual, act, slope);
    }
  }
}

// Dense layer with few rows (small batches): one warp per output unit reads its weight row once.
template <int MAXB>
__global__ void gemv_fp32_kernel(const float* __restrict__ x, const float* __restrict__ wgt,
                                 const float* __restrict__ bias, const float* __restrict__ residual,
                                 float* __restrict__ y, int in_f, int out_f, int batch, int act, float slope) {
  int warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
  if (warp >= out_f) return;
  const float* wr = wgt + static_cast<long long>(warp) * in_f;
  float acc[MAXB];
#pragma unroll
  for (int b = 0; b < MAXB; ++b) acc[b] = 0.f;
  for (int k = lane; k < in_f; k += 32) {
    float wv = wr[k];
#pragma unroll
    for (int b = 0; b < MAXB; ++b)
      if (b < batch) acc[b] = fmaf(wv, x[static_cast<long long>(b) * in_f + k], acc[b]);
  }
#pragma unroll
  for (int b = 0; b < MAXB; ++b) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) acc[b] += __shfl_xor_sync(0xffffffffu, acc[b], off);
  }
  if (lane == 0) {
    for (int b = 0; b < batch && b < MAXB; ++b) {
      store_conv_output(acc[b], static_cast<long long>(b) * out_f + warp, warp, y, nullptr, 0, bias, residual, act,
                        slope);
    }
  }
}

// Picks the tile size from the GEMM shape: big tiles for big layers, small ones (plus split-K when even those
// leave the GPU idle) for small layers; dense layers with few rows use the GEMV kernel.
template <int BM, int BN, int BK, int TM, int TN>
inline void conv_fp32_tiled(cudaStream_t st, const float* x, const float* w, const float* b, const float* res,
                            float* y, const ConvShape& s, int batch, int act, float slope, float* ws,
                            long long ws_elems) {
  long long ncols = static_cast<long long>(batch) * s.ho * s.wo;
  long long blocks = static_cast<long long>(ceil_div(ncols, BN)) * ceil_div(s.cout / s.groups, BM) * s.groups;
  int k = s.cin / s.groups * s.kh * s.kw;
  int splits = choose_splits(blocks, k, BK, ncols * s.cout, ws_elems);
  dim3 grid(ceil_div(ncols, BN), ceil_div(s.cout / s.groups, BM), s.groups * splits);
  conv_fp32_kernel<BM, BN, BK, TM, TN><<<grid, (BM / TM) * (BN / TN), 0, st>>>(
      x, w, b, res, y, s, batch, act, slope, splits, splits > 1 ? ws : nullptr);
  CF_CHECK(cudaGetLastError());
  if (splits > 1) splitk_reduce(st, ws, splits, b, res, y, s, batch, act, slope);
}

inline bool is_dense(const ConvShape& s) {
  return s.h == 1 && s.w == 1 && s.kh == 1 && s.kw == 1 && s.groups == 1;
}

inline void conv_fp32(cudaStream_t st, const float* x, const float* w, const float* b, const float* res, float* y,
                      const ConvShape& s, int batch, int act, float slope, float* ws, long long ws_elems) {
  long long ncols = static_cast<long long>(batch) * s.ho * s.wo;
  if (is_dense(s) && batch <= 8) {
    gemv_fp32_kernel<8><<<ceil_div(s.cout, 8), 256, 0, st>>>(x, w, b, res, y, s.cin, s.cout, batch, act, slope);
    CF_CHECK(cudaGetLastError());
  } else if (!use_legacy_conv() && igemm_fits(s, batch)) {
    conv_ffma(st, x, w, b, res, y, s, batch, act, slope, ws, ws_elems);
  } else if (s.cout / s.groups >= 128 && ncols >= 128 * 132) {
    conv_fp32_tiled<128, 128, 8, 8, 8>(st, x, w, b, res, y, s, batch, act, slope, ws, ws_elems);
  } else {
    conv_fp32_tiled<64, 64, 16, 4, 4>(st, x, w, b, res, y, s, batch, act, slope, ws, ws_elems);
  }
}

// Called by the generated network's constructor: the FMA kernels use static shared memory, nothing to set up.
inline void conv_fp32_init() {}

}  // namespace cf
