// Pipelined implicit-GEMM convolution (and dense layers) in exact fp32 on the CUDA cores: `--precision fp32`.
// Layout: input/output fp32 NCHW; weights [cout][cin/groups][kh][kw] (PyTorch order), batch norm folded in.
// GEMM view and loaders: igemm.cuh (m = output channel, n = (image, y, x), k = (c, ky, kx)).
// Block: BM (128 or 64) x 128 outputs, 256 threads, each thread BM/16 x 8 outputs (two 4-row and two 4-column
// strips 64 apart, read as float4 from shared memory: 4 LDS.128 per 64 FMAs at BM=128). k slices of 8 in a
// 4-stage cp.async ring (25-34 KB static shared memory, two blocks per SM): three slices in flight while one is
// multiplied. Epilogue straight from registers: + bias, + residual, activation (or split-K partial sums).
// Replaces conv_fp32_kernel (conv_fp32.cuh, still selectable with CF_CONV_KERNELS=legacy), whose loads divided
// twice per element and waited for every tile.
// Speed vs cuDNN: not measured yet; benchmarks/conv_kernels.py times it against the legacy kernel and PyTorch.
#pragma once
#include "igemm.cuh"
#include "splitk.cuh"

namespace cf {

template <int BM>
struct FfmaCfg {
  static constexpr int BN = 128, BK = 8, NT = 256, STAGES = 4;
  static constexpr int TM = BM / 16;          // rows per thread: 8 (BM 128) or 4 (BM 64)
  static constexpr int LDA = BM + 4;          // As[k][m]; % 32 == 4 spreads the transposing writes over banks
  static constexpr int LDB = BN + 4;          // Bs[k][n]; multiple of 4 keeps float4 reads aligned
  static constexpr int STAGE = BK * LDA + BK * LDB;
  static_assert(BM == 64 || BM == 128, "BM is 64 or 128");
};

template <int BM>
__global__ void __launch_bounds__(256, 2)
conv_ffma_kernel(const float* __restrict__ x, const float* __restrict__ wgt, const float* __restrict__ bias,
                 const float* __restrict__ residual, float* __restrict__ y, ConvShape s, int batch, int act,
                 float slope, int splits, float* __restrict__ partial) {
  using C = FfmaCfg<BM>;
  __shared__ __align__(16) float smem[C::STAGES * C::STAGE];
  const int tid = threadIdx.x;
  const ConvGemm t = conv_gemm(s, batch, splits, BM, C::BN, C::BK);
  const float* wg = wgt + static_cast<long long>(t.g) * t.cout_g * t.K;
  GatherB<C::BK, C::BN, C::NT, C::LDB> gather;
  gather.init(s, t, x, tid);

  const int tx = tid % 16, ty = tid / 16;  // columns tx*4.. and 64+tx*4..; rows ty*4.. (and 64+ty*4.. at BM 128)
  float acc[C::TM][8];
#pragma unroll
  for (int i = 0; i < C::TM; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;

  auto load = [&](int st, int tile) {
    float* As = smem + st * C::STAGE;
    load_w_cols<BM, C::BK, C::NT, C::LDA>(As, wg, t, t.k_begin + tile * C::BK, tid);
    gather.load(As + C::BK * C::LDA, s, t.k_end, x);
  };
  auto compute = [&](int st) {
    const float* As = smem + st * C::STAGE;
    const float* Bs = As + C::BK * C::LDA;
#pragma unroll
    for (int kk = 0; kk < C::BK; ++kk) {
      float a[C::TM], b[8];
#pragma unroll
      for (int h = 0; h < C::TM / 4; ++h) {
        const float4 v = *reinterpret_cast<const float4*>(As + kk * C::LDA + h * 64 + ty * 4);
        a[h * 4 + 0] = v.x, a[h * 4 + 1] = v.y, a[h * 4 + 2] = v.z, a[h * 4 + 3] = v.w;
      }
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float4 v = *reinterpret_cast<const float4*>(Bs + kk * C::LDB + h * 64 + tx * 4);
        b[h * 4 + 0] = v.x, b[h * 4 + 1] = v.y, b[h * 4 + 2] = v.z, b[h * 4 + 3] = v.w;
      }
#pragma unroll
      for (int i = 0; i < C::TM; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
  };
  const int tiles = t.k_end > t.k_begin ? (t.k_end - t.k_begin + C::BK - 1) / C::BK : 0;
  pipeline<C::STAGES>(tiles, load, compute);

  const long long split_off = static_cast<long long>(t.split) * batch * s.cout * t.P;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const long long n = t.n0 + (j / 4) * 64 + tx * 4 + j % 4;
    if (n >= t.Ncols) continue;
    const int img = static_cast<int>(n / t.P), p = static_cast<int>(n - static_cast<long long>(img) * t.P);
    const long long base = static_cast<long long>(img) * s.cout * t.P + p;
#pragma unroll
    for (int i = 0; i < C::TM; ++i) {
      const int m = t.m0 + (i / 4) * 64 + ty * 4 + i % 4;
      if (m >= t.cout_g) continue;
      const int co = t.g * t.cout_g + m;
      const long long o = base + static_cast<long long>(co) * t.P;
      store_conv_output(acc[i][j], o, co, y, partial, split_off, bias, residual, act, slope);
    }
  }
}

template <int BM>
inline void launch_ffma(cudaStream_t st, const float* x, const float* w, const float* b, const float* res, float* y,
                        const ConvShape& s, int batch, int act, float slope, float* ws, long long ws_elems) {
  using C = FfmaCfg<BM>;
  const long long ncols = static_cast<long long>(batch) * s.ho * s.wo;
  const int cout_g = s.cout / s.groups, k = s.cin / s.groups * s.kh * s.kw;
  const long long blocks = static_cast<long long>(ceil_div(ncols, C::BN)) * ceil_div(cout_g, BM) * s.groups;
  const int splits = choose_splits(blocks, k, C::BK, ncols * s.cout, ws_elems);
  dim3 grid(ceil_div(ncols, C::BN), ceil_div(cout_g, BM), s.groups * splits);
  conv_ffma_kernel<BM><<<grid, C::NT, 0, st>>>(x, w, b, res, y, s, batch, act, slope, splits,
                                               splits > 1 ? ws : nullptr);
  CF_CHECK(cudaGetLastError());
  if (splits > 1) splitk_reduce(st, ws, splits, b, res, y, s, batch, act, slope);
}

inline void conv_ffma(cudaStream_t st, const float* x, const float* w, const float* b, const float* res, float* y,
                      const ConvShape& s, int batch, int act, float slope, float* ws, long long ws_elems) {
  if (igemm_wide_m(s))
    launch_ffma<128>(st, x, w, b, res, y, s, batch, act, slope, ws, ws_elems);
  else
    launch_ffma<64>(st, x, w, b, res, y, s, batch, act, slope, ws, ws_elems);
}

}  // namespace cf
