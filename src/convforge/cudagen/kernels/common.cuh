// convforge generated-code runtime: error checks, activations, launch helpers, and the index set-up shared by
// every implicit-GEMM convolution kernel (conv_fp32/tf32/wmma.cuh, conv_ffma.cuh, conv_mma.cuh).
// Layout: the kernels here and in the fp32-NCHW files see every activation as fp32 NCHW, contiguous, dense
// inputs/outputs as N x features (fp16/bf16 networks keep T NHWC instead by default: conv_nhwc.cuh).
// Speed: no kernels here.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace cf {

// Every CUDA call is checked; a failure becomes one line naming the call (the program prints it, exits 1).
#define CF_CHECK(call)                                                                              \
  do {                                                                                              \
    cudaError_t err_ = (call);                                                                      \
    if (err_ != cudaSuccess)                                                                        \
      throw std::runtime_error(std::string("CUDA error in ") + #call + ": " + cudaGetErrorString(err_)); \
  } while (0)

enum Act : int { ACT_NONE = 0, ACT_RELU = 1, ACT_LEAKY = 2, ACT_SIGMOID = 3, ACT_TANH = 4, ACT_GELU = 5 };

__device__ __forceinline__ float apply_act(float v, int act, float slope) {
  if (act == ACT_RELU) return v > 0.f ? v : 0.f;
  if (act == ACT_LEAKY) return v > 0.f ? v : v * slope;
  if (act == ACT_SIGMOID) return 1.f / (1.f + expf(-v));
  if (act == ACT_TANH) return tanhf(v);
  if (act == ACT_GELU) return 0.5f * v * (1.f + erff(v * 0.70710678118654752f));  // exact (erf) GELU, as nn.GELU
  return v;
}

// The convolution epilogue every kernel shares: with split-K a partial sum goes to its slice of `partial` (the
// reduce kernel adds bias, residual and act later); a whole sum gets bias, residual and act here.
__device__ __forceinline__ void store_conv_output(float v, long long o, int co, float* __restrict__ y,
                                                  float* __restrict__ partial, long long split_off,
                                                  const float* __restrict__ bias, const float* __restrict__ residual,
                                                  int act, float slope) {
  if (partial) {
    partial[split_off + o] = v;
    return;
  }
  v += bias ? bias[co] : 0.f;
  if (residual) v += residual[o];
  y[o] = apply_act(v, act, slope);
}

inline int ceil_div(long long a, long long b) { return static_cast<int>((a + b - 1) / b); }

// Shape of one convolution (a dense layer is a 1x1 convolution on a 1x1 image).
struct ConvShape {
  int cin, h, w;         // input channels and size
  int cout, ho, wo;      // output channels and size
  int kh, kw, sh, sw;    // kernel and stride
  int ph, pw, dh, dw;    // padding (top/left) and dilation
  int groups;
};

// Which convolution kernels a native network launches, from CF_CONV_KERNELS in the environment (read once per
// process, when the network is constructed) so one binary can time and check each:
//  - unset (or any other value): the pipelined kernels (conv_ffma.cuh, conv_mma.cuh), and for fp16/bf16 networks
//    activations kept in T NHWC between layers (conv_nhwc.cuh, nhwc_ops.cuh);
//  - `nchw`: the same pipelined kernels with every activation fp32 NCHW (fp16/bf16 operands converted in registers);
//  - `legacy`: the previous single-stage kernels, fp32 NCHW (also -DCF_CONV_LEGACY at compile time).
// Devices below sm_80 (no cp.async, no mma.sync for bf16/tf32) always get the legacy kernels.
enum class ConvKernels { kDefault, kNchw, kLegacy };

inline ConvKernels conv_kernels_env() {
#ifdef CF_CONV_LEGACY
  return ConvKernels::kLegacy;
#else
  static const ConvKernels kind = [] {
    const char* v = std::getenv("CF_CONV_KERNELS");
    if (v != nullptr && std::strcmp(v, "legacy") == 0) return ConvKernels::kLegacy;
    if (v != nullptr && std::strcmp(v, "nchw") == 0) return ConvKernels::kNchw;
    return ConvKernels::kDefault;
  }();
  return kind;
#endif
}

inline bool device_below_sm80() {
  int dev = 0, major = 0;
  CF_CHECK(cudaGetDevice(&dev));
  CF_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  return major < 8;  // plain attribute queries: allowed while a CUDA graph is being captured
}

inline bool use_legacy_conv() { return conv_kernels_env() == ConvKernels::kLegacy || device_below_sm80(); }

// fp16/bf16 networks: whether this process runs the NHWC layers (the constructor asks once and keeps the answer).
inline bool use_nhwc_layout() { return conv_kernels_env() == ConvKernels::kDefault && !device_below_sm80(); }

// ---- the implicit GEMM view of one CTA (shared index set-up) ----------------------------------------------------
// Per group g: out[m][n] = sum_k W[m][k] * im2col(x)[k][n], m = output channel, n = (image, y, x), k = (c, ky, kx).
// blockIdx.x -> n tile, blockIdx.y -> m tile, blockIdx.z -> (group, split-K slice).
struct ConvGemm {
  int g, split;          // group and split-K slice of this CTA
  int cin_g, cout_g;     // channels per group
  int khw, K;            // kh * kw and the GEMM depth cin_g * kh * kw
  int k_begin, k_end;    // the k range of this slice
  int P;                 // output pixels per image (ho * wo)
  int m0;                // first output channel (within the group) of this CTA
  long long Ncols, n0;   // GEMM columns (batch * P) and the first column of this CTA
};

// The legacy tensor-core kernels' last step: the CTA's BM x BN output tile, staged in shared memory (row stride
// ldc), written to NCHW through the shared epilogue; thread tid takes elements tid, tid + NT, ...
template <int BM, int BN, int NT>
__device__ __forceinline__ void store_staged_tile(const float* Cs, int ldc, const ConvGemm& t, const ConvShape& s,
                                                  int batch, int tid, float* y, float* partial, const float* bias,
                                                  const float* residual, int act, float slope) {
  const long long split_off = static_cast<long long>(t.split) * batch * s.cout * t.P;
  for (int i = tid; i < BM * BN; i += NT) {
    int mm = i / BN, nn = i % BN;
    int m = t.m0 + mm;
    long long n = t.n0 + nn;
    if (m >= t.cout_g || n >= t.Ncols) continue;
    int im = static_cast<int>(n / t.P), p = static_cast<int>(n % t.P);
    int co = t.g * t.cout_g + m;
    long long o = (static_cast<long long>(im) * s.cout + co) * t.P + p;
    store_conv_output(Cs[mm * ldc + nn], o, co, y, partial, split_off, bias, residual, act, slope);
  }
}

// k_align: split-K slice boundaries are multiples of it (the pipelined kernels pass their BK, so every k tile but
// the last of the layer is full and 16-byte weight copies never straddle a slice; the legacy kernels pass 1).
__device__ __forceinline__ ConvGemm conv_gemm(const ConvShape& s, int batch, int splits, int bm, int bn,
                                              int k_align) {
  ConvGemm t;
  t.g = blockIdx.z / splits;
  t.split = blockIdx.z % splits;
  t.cin_g = s.cin / s.groups;
  t.cout_g = s.cout / s.groups;
  t.khw = s.kh * s.kw;
  t.K = t.cin_g * t.khw;
  const int chunks = (t.K + k_align - 1) / k_align;
  const int k_step = (chunks + splits - 1) / splits * k_align;
  t.k_begin = min(t.K, t.split * k_step);
  t.k_end = min(t.K, t.k_begin + k_step);
  t.P = s.ho * s.wo;
  t.Ncols = static_cast<long long>(batch) * t.P;
  t.m0 = blockIdx.y * bm;
  t.n0 = static_cast<long long>(blockIdx.x) * bn;
  return t;
}

// One GEMM column (an output pixel) decoded once per thread, instead of a div/mod per loaded element: its image,
// the top-left input pixel of its receptive field, and the base of its image and group in x.
struct ConvColumn {
  bool ok;               // inside the GEMM (false for the padding columns of the last n tile)
  int iy0, ix0;          // input row/column of kernel tap (0, 0); may be negative (zero padding)
  const float* xg;       // x + (image, first channel of the group)
};

__device__ __forceinline__ ConvColumn conv_column(const ConvShape& s, const ConvGemm& t, const float* x,
                                                  long long ncol) {
  ConvColumn c;
  c.ok = ncol < t.Ncols;
  int img = 0, oy = 0, ox = 0;
  if (c.ok) {
    img = static_cast<int>(ncol / t.P);
    int p = static_cast<int>(ncol - static_cast<long long>(img) * t.P);
    oy = p / s.wo;
    ox = p - oy * s.wo;
  }
  c.iy0 = oy * s.sh - s.ph;
  c.ix0 = ox * s.sw - s.pw;
  c.xg = x + (static_cast<long long>(img) * s.cin + static_cast<long long>(t.g) * t.cin_g) * s.h * s.w;
  return c;
}

// (c, ky, kx) of a GEMM row k, stepped by one without any division (the pipelined kernels gather runs of
// consecutive k per thread, so only the first k of a run is ever divided).
struct KCursor {
  int k, c, ky, kx;
  __device__ __forceinline__ void seek(int k_, int khw, int kw) {
    k = k_;
    c = k_ / khw;
    int r = k_ - c * khw;
    ky = r / kw;
    kx = r - ky * kw;
  }
  __device__ __forceinline__ void next(int kh, int kw) {
    ++k;
    if (++kx == kw) {
      kx = 0;
      if (++ky == kh) {
        ky = 0;
        ++c;
      }
    }
  }
  // Jump by a fixed distance d whose digits (d.c, d.ky, d.kx) were found once by seek(d): a mixed-radix add with
  // one carry per digit (kx + d.kx < 2 kw and ky + d.ky + 1 < 2 kh, so one subtraction each is enough).
  __device__ __forceinline__ void advance(const KCursor& d, int kh, int kw) {
    k += d.k;
    kx += d.kx;
    ky += d.ky;
    c += d.c;
    if (kx >= kw) {
      kx -= kw;
      ++ky;
    }
    if (ky >= kh) {
      ky -= kh;
      ++c;
    }
  }
};

}  // namespace cf
