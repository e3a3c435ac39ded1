// Implicit-GEMM convolution (and dense layers), fp32 CUDA cores, shared-memory tiling.
// Layout: input/output fp32 NCHW; weights [cout][cin/groups][kh][kw] (PyTorch order), batch norm already folded
// in; GEMM view per group: out[m][n] = sum_k W[m][k] * im2col(x)[k][n], m = output channel, n = (image, y, x).
// Epilogue (fused): + bias[m], + residual (same shape as the output, optional), then ReLU / leaky ReLU / none.
// Tiles: BM x BN outputs per block, BK-deep k slices in shared memory, TM x TN outputs per thread.
// Speed vs cuDNN (H100, whole networks, benchmarks/results/codegen_speed.md): resnet18 224px batch 256 66.1 ms vs
// 14.0 ms for PyTorch eager (cuDNN, TF32 tensor cores) = 4.7x slower; digits-cnn batch 256 0.149 vs 0.482 ms.
// Plain FMA, single-stage tiles: it loses on big layers and wins where launch gaps dominate.
#pragma once
#include "common.cuh"
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

  // The column this thread loads into Bs is fixed for the whole k loop: decode it once.
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

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  const int tx = tid % (BN / TN), ty = tid / (BN / TN);
  for (int k0 = k_begin; k0 < k_end; k0 += BK) {
    // A tile: weights, coalesced along k.
    for (int i = tid; i < BM * BK; i += NT) {
      int mm = i / BK, kk = i % BK;
      int m = m0 + mm, k = k0 + kk;
      As[kk][mm] = (m < cout_g && k < k_end) ? wg[static_cast<long long>(m) * K + k] : 0.f;
    }
    // B tile: gathered input pixels (zero padding), coalesced along n.
    for (int kk = tid / BN; kk < BK; kk += NT / BN) {
      int k = k0 + kk;
      float v = 0.f;
      if (col_ok && k < k_end) {
        int c = k / khw, r = k % khw;
        int iy = iy0 + (r / s.kw) * s.dh, ix = ix0 + (r % s.kw) * s.dw;
        if (iy >= 0 && iy < s.h && ix >= 0 && ix < s.w) v = xg[(static_cast<long long>(c) * s.h + iy) * s.w + ix];
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
    long long n = n0 + tx + j * (BN / TN);
    if (n >= Ncols) continue;
    int im = static_cast<int>(n / P), p = static_cast<int>(n % P);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      int m = m0 + ty + i * (BM / TM);
      if (m >= cout_g) continue;
      int co = g * cout_g + m;
      long long o = (static_cast<long long>(im) * s.cout + co) * P + p;
      if (partial) {
        partial[static_cast<long long>(split) * batch * s.cout * P + o] = acc[i][j];
        continue;
      }
      float v = acc[i][j] + (bias ? bias[co] : 0.f);
      if (residual) v += residual[o];
      y[o] = apply_act(v, act, slope);
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
      long long o = static_cast<long long>(b) * out_f + warp;
      float v = acc[b] + (bias ? bias[warp] : 0.f);
      if (residual) v += residual[o];
      y[o] = apply_act(v, act, slope);
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

inline void conv_fp32(cudaStream_t st, const float* x, const float* w, const float* b, const float* res, float* y,
                      const ConvShape& s, int batch, int act, float slope, float* ws, long long ws_elems) {
  long long ncols = static_cast<long long>(batch) * s.ho * s.wo;
  bool dense = s.h == 1 && s.w == 1 && s.kh == 1 && s.kw == 1 && s.groups == 1;
  if (dense && batch <= 8) {
    gemv_fp32_kernel<8><<<ceil_div(s.cout, 8), 256, 0, st>>>(x, w, b, res, y, s.cin, s.cout, batch, act, slope);
    CF_CHECK(cudaGetLastError());
  } else if (s.cout / s.groups >= 128 && ncols >= 128 * 132) {
    conv_fp32_tiled<128, 128, 8, 8, 8>(st, x, w, b, res, y, s, batch, act, slope, ws, ws_elems);
  } else {
    conv_fp32_tiled<64, 64, 16, 4, 4>(st, x, w, b, res, y, s, batch, act, slope, ws, ws_elems);
  }
}

}  // namespace cf
