// The non-convolution layers of an fp16/bf16 NHWC network (conv_nhwc.cuh has the convolutions), and its two layout
// boundaries: the fp32 NCHW input -> T NHWC, or -> the space-to-depth map of a strided stem (once per forward pass),
// and the packing of the fp32 PyTorch-order weights into the convolutions' T [rows][Kp] layout (once, at start-up).
// Layout: T[N][H][W][cs], cs = channels rounded up to 8 (so 16-byte vectors everywhere here); a vector (dense
// output, global pool) is H = W = 1. Padded channels are written (0 or a finite value) and never read as data: the
// packed weights of every consumer are 0 there. Output layers read element i of the NCHW-flattened tensor at
// pixel i % hw, channel i / hw, so the probabilities come out in PyTorch's order and in fp32.
// Speed vs cuDNN: memory-bound, one read and one write per element in 16-byte vectors (fp32 NCHW moved twice the
// bytes in 4-byte accesses); not measured separately.
#pragma once
#include "conv_nhwc.cuh"
#include "pool.cuh"

namespace cf {

// ---- layout boundaries ----------------------------------------------------------------------------------------
// y[img][p][c] = x[img][c][p] for c < C, 0 up to cs; one thread per 4 channels of a pixel, pixels fastest, so the
// reads of a warp are 32 consecutive floats of one plane.
template <class T>
__global__ void nchw_to_nhwc_kernel(const float* __restrict__ x, T* __restrict__ y, long long total, int C, int hw,
                                    int cs) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int p = static_cast<int>(i % hw), q4 = cs / 4;
  const long long r = i / hw;
  const int q = static_cast<int>(r % q4);
  const long long img = r / q4;
  float v[4];
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const int c = q * 4 + e;
    v[e] = c < C ? x[(img * C + c) * hw + p] : 0.f;
  }
  *reinterpret_cast<uint2*>(y + (img * hw + p) * cs + q * 4) =
      make_uint2(Half2<T>::pack(v[0], v[1]), Half2<T>::pack(v[2], v[3]));
}

template <class T>
inline void nchw_to_nhwc(cudaStream_t st, const float* x, T* y, int batch, int C, int hw, int cs) {
  const long long total = static_cast<long long>(batch) * hw * (cs / 4);
  nchw_to_nhwc_kernel<T><<<ceil_div(total, 256), 256, 0, st>>>(x, y, total, C, hw, cs);
  CF_CHECK(cudaGetLastError());
}

// The network input of a strided stem rewritten space-to-depth (s2d.py): padding, block rearrangement and the
// fp32 -> T conversion in one pass, so the rewrite costs nothing extra per forward pass.
struct SpaceToDepthShape {
  int c, h, w;     // the fp32 NCHW network input
  int s, ph, pw;   // the stem's stride (the block size) and padding (top, left)
  int hs, ws, cs;  // the s2d map: hs x ws pixels of cs elements (c * s * s channels, then zeros up to a multiple of 8)
};

// Flat index i over [n][h][w][cs / 8] (8-channel chunks fastest) -> its image, row, column and chunk: the thread
// mapping of the elementwise NHWC kernels below.
struct PixelChunk {
  long long img;
  int y, x, q;
};
__device__ __forceinline__ PixelChunk pixel_chunk(long long i, int cs, int h, int w) {
  const int q8 = cs / 8, q = static_cast<int>(i % q8);
  long long r = i / q8;
  const int x = static_cast<int>(r % w);
  r /= w;
  return PixelChunk{r / h, static_cast<int>(r % h), x, q};
}

// y[img][Y][X][(c * s + dy) * s + dx] = x[img][c][s * Y + dy - ph][s * X + dx - pw], 0 outside the input and past
// c * s * s channels. One thread per 8 channels of an s2d pixel, channels fastest: a warp's stores are 512
// contiguous bytes, and a thread's 8 loads are runs of s neighbouring floats of input rows.
template <class T>
__global__ void nchw_to_s2d_kernel(const float* __restrict__ x, T* __restrict__ y, long long total,
                                   SpaceToDepthShape g) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const PixelChunk at = pixel_chunk(i, g.cs, g.hs, g.ws);
  const int q = at.q, bx = at.x, by = at.y;
  const long long img = at.img;
  const int block = g.s * g.s;
  int c = q * 8 / block, dy = q * 8 % block / g.s, dx = q * 8 % g.s;  // of channel q * 8 + e, stepped below
  float v[8];
#pragma unroll
  for (int e = 0; e < 8; ++e) {
    const int iy = by * g.s + dy - g.ph, ix = bx * g.s + dx - g.pw;
    const bool inside = c < g.c && iy >= 0 && iy < g.h && ix >= 0 && ix < g.w;
    v[e] = inside ? x[((img * g.c + c) * g.h + iy) * g.w + ix] : 0.f;
    if (++dx == g.s) {  // no divisions per element: dx, then dy, then c
      dx = 0;
      if (++dy == g.s) {
        dy = 0;
        ++c;
      }
    }
  }
  store8(y + i * 8, v);
}

template <class T>
inline void nchw_to_s2d(cudaStream_t st, const float* x, T* y, int batch, const SpaceToDepthShape& g) {
  const long long total = static_cast<long long>(batch) * g.hs * g.ws * (g.cs / 8);
  nchw_to_s2d_kernel<T><<<ceil_div(total, 256), 256, 0, st>>>(x, y, total, g);
  CF_CHECK(cudaGetLastError());
}

// dst[m][k] = src[m][c][ky][kx] with k = (ky * kw + kx) * cs + c; zero for m >= cout, c >= C, k >= kh * kw * cs.
// A dense layer after a flatten of a C x H x W map is packed with kh = H, kw = W: its columns then follow the NHWC
// storage of that map while src keeps PyTorch's channel-major flatten order.
template <class T>
__global__ void repack_weights_kernel(const float* __restrict__ src, T* __restrict__ dst, long long total, int cout,
                                      int C, int cs, int kh, int kw, int Kp) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int m = static_cast<int>(i / Kp), k = static_cast<int>(i % Kp);
  const int tap = k / cs, c = k - tap * cs;
  float v = 0.f;
  if (m < cout && tap < kh * kw && c < C) {
    const int ky = tap / kw, kx = tap - ky * kw;
    v = src[((static_cast<long long>(m) * C + c) * kh + ky) * kw + kx];
  }
  dst[i] = Half2<T>::make(v);
}

struct WeightPack {
  long long src, dst;  // float offset in the fp32 weights, element offset in the packed T weights
  int cout, rows, C, cs, kh, kw, Kp;
};

template <class T>
inline void repack_weights(cudaStream_t st, const float* weights, T* packed, const WeightPack& p) {
  const long long total = static_cast<long long>(p.rows) * p.Kp;
  repack_weights_kernel<T><<<ceil_div(total, 256), 256, 0, st>>>(weights + p.src, packed + p.dst, total, p.cout, p.C,
                                                                 p.cs, p.kh, p.kw, p.Kp);
  CF_CHECK(cudaGetLastError());
}

// ---- pooling ----------------------------------------------------------------------------------------------------
// PoolShape.c is the channel stride cs here (padded channels are pooled too: cheaper than skipping them).
template <class T>
__global__ void pool_nhwc_kernel(const T* __restrict__ x, T* __restrict__ y, PoolShape s, long long total, int is_max,
                                 int act, float slope) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const PixelChunk at = pixel_chunk(i, s.c, s.ho, s.wo);
  const int q = at.q, ox = at.x, oy = at.y;
  const long long img = at.img;
  const T* xi = x + img * s.h * s.w * s.c + q * 8;
  float acc[8];
#pragma unroll
  for (int e = 0; e < 8; ++e) acc[e] = is_max ? -INFINITY : 0.f;
  const int y0 = oy * s.sh - s.ph, x0 = ox * s.sw - s.pw;
  for (int ky = 0; ky < s.kh; ++ky) {
    const int iy = y0 + ky;
    if (iy < 0 || iy >= s.h) continue;
    for (int kx = 0; kx < s.kw; ++kx) {
      const int ix = x0 + kx;
      if (ix < 0 || ix >= s.w) continue;
      float v[8];
      load8(xi + (iy * s.w + ix) * s.c, v);
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[e] = is_max ? fmaxf(acc[e], v[e]) : acc[e] + v[e];
    }
  }
  const float inv = 1.f / static_cast<float>(s.kh * s.kw);  // count_include_pad, as pool.cuh
#pragma unroll
  for (int e = 0; e < 8; ++e) acc[e] = apply_act(is_max ? acc[e] : acc[e] * inv, act, slope);
  store8(y + i * 8, acc);
}

template <class T>
inline void pool_nhwc(cudaStream_t st, const T* x, T* y, const PoolShape& s, int batch, int is_max, int act,
                      float slope) {
  const long long total = static_cast<long long>(batch) * s.ho * s.wo * (s.c / 8);
  pool_nhwc_kernel<T><<<ceil_div(total, 256), 256, 0, st>>>(x, y, s, total, is_max, act, slope);
  CF_CHECK(cudaGetLastError());
}

// One thread per (image, 8 channels), looping over the pixels; consecutive threads read consecutive chunks of a
// pixel row (coalesced). Channels >= C are written as 0.
template <class T>
__global__ void global_pool_nhwc_kernel(const T* __restrict__ x, T* __restrict__ y, long long total, int hw, int cs,
                                        int C, int is_max) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int q8 = cs / 8, c0 = static_cast<int>(i % q8) * 8;
  const long long img = i / q8;
  float acc[8];
#pragma unroll
  for (int e = 0; e < 8; ++e) acc[e] = is_max ? -INFINITY : 0.f;
  for (int p = 0; p < hw; ++p) {
    float v[8];
    load8(x + (img * hw + p) * cs + c0, v);
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[e] = is_max ? fmaxf(acc[e], v[e]) : acc[e] + v[e];
  }
#pragma unroll
  for (int e = 0; e < 8; ++e) acc[e] = c0 + e < C ? (is_max ? acc[e] : acc[e] / static_cast<float>(hw)) : 0.f;
  store8(y + i * 8, acc);
}

template <class T>
inline void global_pool_nhwc(cudaStream_t st, const T* x, T* y, int batch, int C, int hw, int cs, int is_max) {
  const long long total = static_cast<long long>(batch) * (cs / 8);
  global_pool_nhwc_kernel<T><<<ceil_div(total, 256), 256, 0, st>>>(x, y, total, hw, cs, C, is_max);
  CF_CHECK(cudaGetLastError());
}

// ---- element-wise -----------------------------------------------------------------------------------------------
// Per-channel scale + shift (a batch norm that could not be folded; none: activation only), then act. 8 elements
// a thread; channels >= C are written as 0.
template <class T>
__global__ void scale_shift_nhwc_kernel(const T* __restrict__ x, const float* __restrict__ scale,
                                        const float* __restrict__ shift, T* __restrict__ y, long long total, int C,
                                        int cs, int act, float slope) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int c0 = static_cast<int>((i * 8) % cs);
  float v[8];
  load8(x + i * 8, v);
#pragma unroll
  for (int e = 0; e < 8; ++e) {
    const int c = c0 + e;
    v[e] = c < C ? apply_act(scale ? v[e] * scale[c] + shift[c] : v[e], act, slope) : 0.f;
  }
  store8(y + i * 8, v);
}

template <class T>
inline void scale_shift_nhwc(cudaStream_t st, const T* x, const float* scale, const float* shift, T* y, int batch,
                             int C, int hw, int cs, int act, float slope) {
  const long long total = static_cast<long long>(batch) * hw * cs / 8;
  scale_shift_nhwc_kernel<T><<<ceil_div(total, 256), 256, 0, st>>>(x, scale, shift, y, total, C, cs, act, slope);
  CF_CHECK(cudaGetLastError());
}

template <class T>
__global__ void add_nhwc_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ y, long long total,
                                int act, float slope) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  float u[8], v[8];
  load8(a + i * 8, u);
  load8(b + i * 8, v);
#pragma unroll
  for (int e = 0; e < 8; ++e) u[e] = apply_act(u[e] + v[e], act, slope);
  store8(y + i * 8, u);
}

template <class T>
inline void add_nhwc(cudaStream_t st, const T* a, const T* b, T* y, long long per_image, int batch, int act,
                     float slope) {
  const long long total = per_image * batch / 8;
  add_nhwc_kernel<T><<<ceil_div(total, 256), 256, 0, st>>>(a, b, y, total, act, slope);
  CF_CHECK(cudaGetLastError());
}

// Maxout over channel groups of a pixel: out channel o = max over p of in channel o * pieces + p.
template <class T>
__global__ void maxout_nhwc_kernel(const T* __restrict__ x, T* __restrict__ y, long long total, int cout, int cs_out,
                                   int cs_in, int pieces) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int o = static_cast<int>(i % cs_out);
  const long long pix = i / cs_out;
  float m = 0.f;
  if (o < cout) {
    const T* xp = x + pix * cs_in + o * pieces;
    m = Half2<T>::get(xp[0]);
    for (int k = 1; k < pieces; ++k) m = fmaxf(m, Half2<T>::get(xp[k]));
  }
  y[i] = Half2<T>::make(m);
}

template <class T>
inline void maxout_nhwc(cudaStream_t st, const T* x, T* y, int batch, int hw, int cout, int cs_out, int cs_in,
                        int pieces) {
  const long long total = static_cast<long long>(batch) * hw * cs_out;
  maxout_nhwc_kernel<T><<<ceil_div(total, 256), 256, 0, st>>>(x, y, total, cout, cs_out, cs_in, pieces);
  CF_CHECK(cudaGetLastError());
}

// ---- softmax / sigmoid ------------------------------------------------------------------------------------------
// One warp per image: element i of the NCHW-flattened input (cols = C * hw) is at pixel i % hw, channel i / hw.
// X = T, or float (the logits of the layer feeding the output); Y = float for the network's output (row stride
// ys = cols), T for a softmax inside the network (ys = cols rounded up to 8, the rest written as 0).
template <class X, class Y>
__global__ void softmax_nhwc_kernel(const X* __restrict__ x, Y* __restrict__ y, int rows, int cols, int hw, int cs,
                                    int ys, int sigmoid) {
  const int row = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
  if (row >= rows) return;
  const X* xr = x + static_cast<long long>(row) * hw * cs;
  Y* yr = y + static_cast<long long>(row) * ys;
  auto at = [&](int i) { return to_float(xr[(i % hw) * cs + i / hw]); };
  float mx = -INFINITY, sum = 0.f;
  if (!sigmoid) {
    for (int i = lane; i < cols; i += 32) mx = fmaxf(mx, at(i));
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    for (int i = lane; i < cols; i += 32) sum += expf(at(i) - mx);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  }
  for (int i = lane; i < ys; i += 32) {
    float v = 0.f;
    if (i < cols) v = sigmoid ? 1.f / (1.f + expf(-at(i))) : expf(at(i) - mx) / sum;
    yr[i] = from_float<Y>(v);
  }
}

template <class X, class Y>
inline void softmax_nhwc(cudaStream_t st, const X* x, Y* y, int batch, int cols, int hw, int cs, int ys,
                         int sigmoid) {
  softmax_nhwc_kernel<X, Y><<<ceil_div(static_cast<long long>(batch) * 32, 256), 256, 0, st>>>(x, y, batch, cols, hw,
                                                                                            cs, ys, sigmoid);
  CF_CHECK(cudaGetLastError());
}

}  // namespace cf
