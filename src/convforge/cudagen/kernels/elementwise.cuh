// Element-wise layers: per-channel scale+shift (a batch norm that could not be folded) with activation,
// residual add + activation, maxout, and the output layers softmax / sigmoid.
// Layout: fp32 NCHW (channels = dim 1; a dense output is N x C x 1 x 1). Softmax: one warp per image row.
// Speed vs cuDNN: memory-bound, one read and one write per element (see benchmarks/results/codegen_speed.md).
#pragma once
#include "common.cuh"

namespace cf {

__global__ void scale_shift_act_kernel(const float* __restrict__ x, const float* __restrict__ scale,
                                       const float* __restrict__ shift, float* __restrict__ y, long long total,
                                       int c, int hw, int act, float slope) {
  long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  int ch = static_cast<int>((i / hw) % c);
  float v = x[i];
  if (scale) v = v * scale[ch] + shift[ch];
  y[i] = apply_act(v, act, slope);
}

__global__ void add_act_kernel(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ y,
                               long long total, int act, float slope) {
  long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < total) y[i] = apply_act(a[i] + b[i], act, slope);
}

// Maxout over channel groups: out channel o = max over p of in channel o * pieces + p (PyTorch view(N, C/k, k, ...)).
__global__ void maxout_kernel(const float* __restrict__ x, float* __restrict__ y, long long total, int cout,
                              int hw, int pieces) {
  long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  int p = static_cast<int>(i % hw);
  long long nc = i / hw;
  int o = static_cast<int>(nc % cout);
  long long img = nc / cout;
  const float* xp = x + ((img * cout + o) * pieces) * static_cast<long long>(hw) + p;
  float m = xp[0];
  for (int k = 1; k < pieces; ++k) m = fmaxf(m, xp[static_cast<long long>(k) * hw]);
  y[i] = m;
}

__global__ void softmax_kernel(const float* __restrict__ x, float* __restrict__ y, int rows, int cols) {
  int row = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
  if (row >= rows) return;
  const float* xr = x + static_cast<long long>(row) * cols;
  float* yr = y + static_cast<long long>(row) * cols;
  float mx = -INFINITY;
  for (int i = lane; i < cols; i += 32) mx = fmaxf(mx, xr[i]);
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
  float sum = 0.f;
  for (int i = lane; i < cols; i += 32) sum += expf(xr[i] - mx);
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  for (int i = lane; i < cols; i += 32) yr[i] = expf(xr[i] - mx) / sum;
}

inline void scale_shift_act(cudaStream_t st, const float* x, const float* scale, const float* shift, float* y,
                            int batch, int c, int hw, int act, float slope) {
  long long total = static_cast<long long>(batch) * c * hw;
  scale_shift_act_kernel<<<ceil_div(total, 256), 256, 0, st>>>(x, scale, shift, y, total, c, hw, act, slope);
  CF_CHECK(cudaGetLastError());
}

inline void add_act(cudaStream_t st, const float* a, const float* b, float* y, long long per_image, int batch,
                    int act, float slope) {
  long long total = per_image * batch;
  add_act_kernel<<<ceil_div(total, 256), 256, 0, st>>>(a, b, y, total, act, slope);
  CF_CHECK(cudaGetLastError());
}

inline void maxout(cudaStream_t st, const float* x, float* y, int batch, int cout, int hw, int pieces) {
  long long total = static_cast<long long>(batch) * cout * hw;
  maxout_kernel<<<ceil_div(total, 256), 256, 0, st>>>(x, y, total, cout, hw, pieces);
  CF_CHECK(cudaGetLastError());
}

inline void softmax(cudaStream_t st, const float* x, float* y, int batch, int cols) {
  softmax_kernel<<<ceil_div(static_cast<long long>(batch) * 32, 256), 256, 0, st>>>(x, y, batch, cols);
  CF_CHECK(cudaGetLastError());
}

inline void sigmoid(cudaStream_t st, const float* x, float* y, int batch, int cols) {
  scale_shift_act(st, x, nullptr, nullptr, y, batch, cols, 1, ACT_SIGMOID, 0.f);
}

}  // namespace cf
