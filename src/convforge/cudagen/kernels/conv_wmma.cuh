// `--precision fp16` / `bf16` on fp32 NCHW activations: the dispatchers and the legacy WMMA kernel (fp16 or bf16
// operands, fp32 accumulation). A generated fp16/bf16 network runs these only with CF_CONV_KERNELS=nchw (the
// pipelined mma.sync kernel of conv_mma.cuh; dense layers with batch <= 8 take the exact fp32 GEMV of conv_fp32.cuh)
// or CF_CONV_KERNELS=legacy (the WMMA kernel below); by default it keeps T NHWC activations (conv_nhwc.cuh).
// Layout: activations fp32 NCHW in memory (so every other kernel is shared with the fp32 path); tiles are
// converted to T when they are staged into shared memory. Weights [cout][cin/groups][kh][kw], batch norm folded in.
// Legacy block: 64 x 64 outputs, k slices of 32, 4 warps each owning 32 x 32 (2 x 2 fragments of 16 x 16 x 16).
// Epilogue through shared memory: + bias, + residual, activation, coalesced NCHW stores.
// Speed vs cuDNN of the legacy kernel (H100): resnet18 224px batch 256 57.1 ms vs 9.0 ms for PyTorch eager fp16
// autocast (6.3x slower): single-stage tiles, scalar im2col gathers and fp32->half conversion while staging bound
// it, not the MMAs.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>
#include "common.cuh"
#include "conv_fp32.cuh"
#include "conv_mma.cuh"
#include "splitk.cuh"

namespace cf {

template <typename T> __device__ __forceinline__ T to_t(float v);
template <> __device__ __forceinline__ __half to_t<__half>(float v) { return __float2half(v); }
template <> __device__ __forceinline__ __nv_bfloat16 to_t<__nv_bfloat16>(float v) { return __float2bfloat16(v); }

template <typename T>
__global__ void __launch_bounds__(128)
conv_wmma_kernel(const float* __restrict__ x, const float* __restrict__ wgt, const float* __restrict__ bias,
                 const float* __restrict__ residual, float* __restrict__ y, ConvShape s, int batch, int act,
                 float slope, int splits, float* __restrict__ partial) {
  using namespace nvcuda;
  constexpr int BM = 64, BN = 64, BK = 32, NT = 128;
  __shared__ __align__(32) T As[BM][BK + 8];
  __shared__ __align__(32) T Bs[BK][BN + 8];
  __shared__ __align__(32) float Cs[BM][BN + 4];

  const int tid = threadIdx.x, warp = tid / 32;
  const ConvGemm t = conv_gemm(s, batch, splits, BM, BN, 1);
  const float* wg = wgt + static_cast<long long>(t.g) * t.cout_g * t.K;
  const int bn = tid % BN;  // the input column this thread gathers is fixed for the whole k loop
  const ConvColumn col = conv_column(s, t, x, t.n0 + bn);

  const int wm = (warp / 2) * 32, wn = (warp % 2) * 32;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);

  for (int k0 = t.k_begin; k0 < t.k_end; k0 += BK) {
    for (int i = tid; i < BM * BK; i += NT) {
      int mm = i / BK, kk = i % BK;
      int m = t.m0 + mm, k = k0 + kk;
      As[mm][kk] = to_t<T>((m < t.cout_g && k < t.k_end) ? wg[static_cast<long long>(m) * t.K + k] : 0.f);
    }
    for (int kk = tid / BN; kk < BK; kk += NT / BN) {
      int k = k0 + kk;
      float v = 0.f;
      if (col.ok && k < t.k_end) {
        int c = k / t.khw, r = k % t.khw;
        int iy = col.iy0 + (r / s.kw) * s.dh, ix = col.ix0 + (r % s.kw) * s.dw;
        if (iy >= 0 && iy < s.h && ix >= 0 && ix < s.w) v = col.xg[(static_cast<long long>(c) * s.h + iy) * s.w + ix];
      }
      Bs[kk][bn] = to_t<T>(v);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> b[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], &As[wm + i * 16][kk], BK + 8);
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], &Bs[kk][wn + j * 16], BN + 8);
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(&Cs[wm + i * 16][wn + j * 16], acc[i][j], BN + 4, wmma::mem_row_major);
  __syncthreads();

  store_staged_tile<BM, BN, NT>(&Cs[0][0], BN + 4, t, s, batch, tid, y, partial, bias, residual, act, slope);
}

template <typename T>
inline void conv_wmma(cudaStream_t st, const float* x, const float* w, const float* b, const float* res, float* y,
                      const ConvShape& s, int batch, int act, float slope, float* ws, long long ws_elems) {
  long long ncols = static_cast<long long>(batch) * s.ho * s.wo;
  long long blocks = static_cast<long long>(ceil_div(ncols, 64)) * ceil_div(s.cout / s.groups, 64) * s.groups;
  int splits = choose_splits(blocks, s.cin / s.groups * s.kh * s.kw, 32, ncols * s.cout, ws_elems);
  dim3 grid(ceil_div(ncols, 64), ceil_div(s.cout / s.groups, 64), s.groups * splits);
  conv_wmma_kernel<T><<<grid, 128, 0, st>>>(x, w, b, res, y, s, batch, act, slope, splits, splits > 1 ? ws : nullptr);
  CF_CHECK(cudaGetLastError());
  if (splits > 1) splitk_reduce(st, ws, splits, b, res, y, s, batch, act, slope);
}

// The new kernels unless CF_CONV_KERNELS=legacy; dense layers with few rows read each weight once in the GEMV.
template <class Prec, typename T>
inline void conv_half(cudaStream_t st, const float* x, const float* w, const float* b, const float* res, float* y,
                      const ConvShape& s, int batch, int act, float slope, float* ws, long long ws_elems) {
  if (use_legacy_conv() || !igemm_fits(s, batch))
    conv_wmma<T>(st, x, w, b, res, y, s, batch, act, slope, ws, ws_elems);
  else if (is_dense(s) && batch <= 8)
    conv_fp32(st, x, w, b, res, y, s, batch, act, slope, ws, ws_elems);
  else
    conv_mma<Prec>(st, x, w, b, res, y, s, batch, act, slope, ws, ws_elems);
}

inline void conv_fp16(cudaStream_t st, const float* x, const float* w, const float* b, const float* res, float* y,
                      const ConvShape& s, int batch, int act, float slope, float* ws, long long ws_elems) {
  conv_half<MmaF16, __half>(st, x, w, b, res, y, s, batch, act, slope, ws, ws_elems);
}

inline void conv_bf16(cudaStream_t st, const float* x, const float* w, const float* b, const float* res, float* y,
                      const ConvShape& s, int batch, int act, float slope, float* ws, long long ws_elems) {
  conv_half<MmaBf16, __nv_bfloat16>(st, x, w, b, res, y, s, batch, act, slope, ws, ws_elems);
}

// Called by the generated network's constructor (outside graph capture): shared-memory limits of the new kernels.
inline void conv_fp16_init() { conv_mma_init<MmaF16>(); }
inline void conv_bf16_init() { conv_mma_init<MmaBf16>(); }

}  // namespace cf
