// Pooling: max / average (window, stride, padding; average counts padded cells like PyTorch's
// count_include_pad=True) and global average / maximum. Layout: fp32 NCHW in and out, one thread per output element
// (global pooling: one warp per (image, channel)).
// Speed vs cuDNN: memory-bound, at the copy rate for the sizes the zoo uses (see benchmarks/results/codegen_speed.md).
#pragma once
#include "common.cuh"

namespace cf {

struct PoolShape {
  int c, h, w, ho, wo, kh, kw, sh, sw, ph, pw;
};

__global__ void pool2d_kernel(const float* __restrict__ x, float* __restrict__ y, PoolShape s, long long total,
                              int is_max, int act, float slope) {
  long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  int ox = static_cast<int>(i % s.wo);
  int oy = static_cast<int>((i / s.wo) % s.ho);
  long long nc = i / (static_cast<long long>(s.wo) * s.ho);
  const float* xp = x + nc * s.h * s.w;
  int y0 = oy * s.sh - s.ph, x0 = ox * s.sw - s.pw;
  float acc = is_max ? -INFINITY : 0.f;
  for (int ky = 0; ky < s.kh; ++ky) {
    int iy = y0 + ky;
    if (iy < 0 || iy >= s.h) continue;
    for (int kx = 0; kx < s.kw; ++kx) {
      int ix = x0 + kx;
      if (ix < 0 || ix >= s.w) continue;
      float v = xp[iy * s.w + ix];
      acc = is_max ? fmaxf(acc, v) : acc + v;
    }
  }
  if (!is_max) acc /= static_cast<float>(s.kh * s.kw);
  y[i] = apply_act(acc, act, slope);
}

__global__ void global_pool_kernel(const float* __restrict__ x, float* __restrict__ y, long long planes, int hw,
                                   int is_max) {
  long long warp = (static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  int lane = threadIdx.x % 32;
  if (warp >= planes) return;
  const float* xp = x + warp * hw;
  float acc = is_max ? -INFINITY : 0.f;
  for (int i = lane; i < hw; i += 32) acc = is_max ? fmaxf(acc, xp[i]) : acc + xp[i];
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    float other = __shfl_xor_sync(0xffffffffu, acc, off);
    acc = is_max ? fmaxf(acc, other) : acc + other;
  }
  if (lane == 0) y[warp] = is_max ? acc : acc / static_cast<float>(hw);
}

inline void pool2d(cudaStream_t st, const float* x, float* y, const PoolShape& s, int batch, int is_max, int act,
                   float slope) {
  long long total = static_cast<long long>(batch) * s.c * s.ho * s.wo;
  pool2d_kernel<<<ceil_div(total, 256), 256, 0, st>>>(x, y, s, total, is_max, act, slope);
  CF_CHECK(cudaGetLastError());
}

inline void global_pool(cudaStream_t st, const float* x, float* y, int batch, int c, int hw, int is_max) {
  long long planes = static_cast<long long>(batch) * c;
  global_pool_kernel<<<ceil_div(planes * 32, 256), 256, 0, st>>>(x, y, planes, hw, is_max);
  CF_CHECK(cudaGetLastError());
}

}  // namespace cf
