// fp16 / bf16 stride-1 convolution with 64 output channels as wgmma GEMMs over shifted views of a shared-memory
// halo (sm_90a): the Hopper form of conv_halo.cuh, for the same layers (resnet18's 64-channel 3x3 layers,
// space-to-depth stems) and with the same interface and semantics (NhwcShape, NHWC x / y / residual, packed weights
// T[64][Kp], bias fp32, padded output channels written 0; Y = T only, no split-K, no groups).
// Why: conv_halo feeds mma.sync (or wgmma with A in registers) one ldmatrix per k16 step and warp; measured, that
// multiply is its limit (H200, fp16, batch 256: 213-255 TFLOP/s on resnet18's 64-channel layers, cuDNN 400-470).
// Here both operands come from shared-memory descriptors, one m64n128k16 wgmma per warpgroup and k16 step, with no
// per-step loads at all.
// How: output pixel (oy, ox) is position oy * halo_w + ox of a virtual grid as wide as the halo (halo_w = wo + kw
// - 1; the columns past wo are computed and dropped, 2 of 58 for a 56-wide 3x3 layer). In that grid the input that
// tap (ky, kx) needs for positions v .. v + 127 is halo positions v + ky * halo_w + kx .. + 127: a contiguous run.
// The halo is stored as 8-channel planes ([c / 8][position], 16 bytes a position), which is wgmma's k-major
// no-swizzle layout: 8 consecutive positions of one plane are a core matrix, the next 8 positions 128 bytes on
// (SBO), the next 8 channels one plane on (LBO). So the B operand of every tap is a descriptor whose start address
// moves by (ky * halo_w + kx) * 16 bytes. A (the 64 x K weights) is resident for the CTA's lifetime in conv_wgmma's
// 128-byte-swizzled k-major tiles.
// Measured (H200, fp16, batch 256; benchmarks/results/conv_check_shift_res_prefetch_*.log): resnet18's 64-channel
// 3x3 layers 0.19 ms (309 TFLOP/s), 0.20 with the residual (0.24 when the residual was loaded in the epilogue); the
// space-to-depth stems of resnet18 0.45 ms and alexnet 0.16 ms. A diagnostic build without the epilogue ran the
// 64-channel layer in 0.18 ms: the epilogue, which no multiply overlaps (one CTA a SM), is most of the rest. A first
// epilogue through conv_nhwc's finish8 (bias read per element, loads and stores interleaved) took 0.37 ms.
// Tiles: 256 consecutive grid positions of one image (2 warpgroups x 128), persistent CTAs, the next tile's halo
// loading (16-byte cp.async, zero fill for padding) while this one is multiplied. Epilogue: accumulators staged
// in shared memory 32 channels at a time as fp32 [position][channel], then conv_nhwc's finish8 per 8 channels of a
// pixel (bias, residual, activation, one 16-byte store), dropping the grid's extra columns.
#pragma once
#include <algorithm>
#include <stdexcept>
#include <string>

#include "conv_halo.cuh"
#include "conv_wgmma.cuh"

namespace cf {

template <int CS, int KH, int KW>
struct ShiftTile {
  static constexpr int NOUT = 64, NT = 256, NP = 256;  // output channels, threads, grid positions a tile
  static constexpr int K = KH * KW * CS, KS = (K + 63) / 64, CH = CS / 8;
  static constexpr int W_BYTES = KS * NOUT * 128;  // k slices of 64 x 64 swizzled
  static constexpr int LDC = 36;                   // staged half-tile row: 32 channels + 4 (conflict-free writes)
  static constexpr int STAGE_BYTES = NP * LDC * 4;
  static_assert(CS % 16 == 0, "whole k16 steps per tap");

  static int halo_w(int wo) { return wo + KW - 1; }
  static int positions(int wo) { return (NP + (KH - 1) * halo_w(wo) + KW - 1 + 7) / 8 * 8; }
  static int smem_bytes(int wo) { return 1024 + W_BYTES + STAGE_BYTES + 2 * CH * positions(wo) * 16; }
};

#ifdef CF_WGMMA_ENABLED
// Descriptor of a k-major operand without swizzle: core matrices of 8 rows x 16 bytes, lbo bytes apart along k,
// sbo bytes apart along m / n; 16-byte aligned start.
__device__ __forceinline__ uint64_t wgmma_desc_plain(const void* smem, uint32_t lbo, uint32_t sbo) {
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  return static_cast<uint64_t>((addr & 0x3FFFF) >> 4) | (static_cast<uint64_t>(lbo >> 4) << 16) |
         (static_cast<uint64_t>(sbo >> 4) << 32);
}
#endif

template <class T, int CS, int KH, int KW>
__global__ void __launch_bounds__(256, 1)
conv_shift_kernel(const T* __restrict__ x, const T* __restrict__ wgt, const float* __restrict__ bias,
                  const T* __restrict__ residual, T* __restrict__ y, NhwcShape s, int batch, int act, float slope,
                  int positions) {
#ifdef CF_WGMMA_ENABLED
  using C = ShiftTile<CS, KH, KW>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const uint32_t raw = static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw));
  unsigned char* base = smem_raw + ((1024 - (raw & 1023)) & 1023);  // the swizzled weight tiles: 1024-aligned
  T* Ws = reinterpret_cast<T*>(base);
  float* Cs = reinterpret_cast<float*>(base + C::W_BYTES);
  T* Hs = reinterpret_cast<T*>(base + C::W_BYTES + C::STAGE_BYTES);
  const int plane = positions * 8, halo_elems = C::CH * plane;  // elements
  const int tid = threadIdx.x, warpgroup = tid / 128, quarter = tid % 128 / 32, lane = tid % 32;
  const int hw = s.wo + KW - 1, P = s.ho * s.wo, grid_pos = s.ho * hw;
  const int tiles_per_img = (grid_pos + C::NP - 1) / C::NP, ntiles = batch * tiles_per_img;

  constexpr int WCH = C::KS * 8;  // 16-byte chunks per weight row (zeros past Kp)
  for (int i = tid; i < C::NOUT * WCH; i += C::NT) {
    const int row = i / WCH, q = i - row * WCH;
    const bool ok = q * 8 < s.Kp;
    T* dst = Ws + (q / 8) * C::NOUT * 64 + swizzle128(row, q % 8);
    cp_async_f32x4(reinterpret_cast<float*>(dst),
                   reinterpret_cast<const float*>(ok ? wgt + static_cast<long long>(row) * s.Kp + q * 8 : wgt), ok);
  }
  auto load_tile = [&](int tile, int buf) {
    const int img = tile / tiles_per_img, v0 = (tile - img * tiles_per_img) * C::NP;
    const T* xi = x + static_cast<long long>(img) * s.h * s.w * CS;
    T* H = Hs + buf * halo_elems;
    for (int i = tid; i < positions * C::CH; i += C::NT) {
      const int q = i % C::CH, f = i / C::CH, v = v0 + f, r = v / hw, c = v - r * hw;
      const int iy = r - s.ph, ix = c - s.pw;
      const bool ok = static_cast<unsigned>(iy) < static_cast<unsigned>(s.h) &&
                      static_cast<unsigned>(ix) < static_cast<unsigned>(s.w);
      const T* src = ok ? xi + (static_cast<long long>(iy) * s.w + ix) * CS + q * 8 : x;
      cp_async_f32x4(reinterpret_cast<float*>(H + q * plane + f * 8), reinterpret_cast<const float*>(src), ok);
    }
  };

  const int chunk = tid % 4, co0 = chunk * 8;  // the 8 channels of each half this thread stores (NT % 4 == 0)
  float bias_r[2][8];
#pragma unroll
  for (int half = 0; half < 2; ++half)
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const int c = half * 32 + co0 + e;
      bias_r[half][e] = bias && c < s.cout ? bias[c] : 0.f;
    }

  // the weights were committed with the first tile's halo; wgmma reads both through the async proxy
  double_buffered_tiles(ntiles, load_tile, [] { fence_proxy_async(); }, [&](int tile, int buf) {
    float acc[64];
#pragma unroll
    for (int i = 0; i < 64; ++i) acc[i] = 0.f;
    const T* H = Hs + buf * halo_elems + warpgroup * 128 * 8;  // this warpgroup's 128 positions
    wgmma_fence();
#pragma unroll
    for (int step = 0; step < KH * KW * CS / 16; ++step) {
      const int tap = step / (CS / 16), c16 = step % (CS / 16), ky = tap / KW, kx = tap % KW;
      const int k = tap * CS + c16 * 16;  // + 32 bytes per k16 within a 64-k tile = 2 in the descriptor's units
      const uint64_t a = wgmma_desc(Ws + (k / 64) * C::NOUT * 64) + 2 * ((k % 64) / 16);
      const uint64_t b = wgmma_desc_plain(H + 2 * c16 * plane + (ky * hw + kx) * 8, plane * 2, 128);
      WgmmaType<T>::template mma<128>(acc, a, b);
    }
    wgmma_commit();

    // While the wgmmas run: where this thread stores (8 channels, its chunk, of ITEMS positions in each 32-channel
    // half) and the residual words there, loaded now so that their latency hides behind the multiply.
    const int img = tile / tiles_per_img, v0 = (tile - img * tiles_per_img) * C::NP;
    const int g8 = lane / 4, t4 = lane % 4;
    constexpr int ITEMS = C::NP * 4 / C::NT;
    long long out[ITEMS];
    uint4 res8[2][ITEMS];
#pragma unroll
    for (int it = 0; it < ITEMS; ++it) {
      const int pos = tid / 4 + it * (C::NT / 4), v = v0 + pos, r = v / hw, c = v - r * hw;
      // past the image, or a column of the grid past the output's: no store
      out[it] = r < s.ho && c < s.wo ? (static_cast<long long>(img) * P + r * s.wo + c) * C::NOUT + co0 : -1;
#pragma unroll
      for (int half = 0; half < 2; ++half)
        res8[half][it] = residual && out[it] >= 0 ? *reinterpret_cast<const uint4*>(residual + out[it] + half * 32)
                                                  : make_uint4(0, 0, 0, 0);
    }
    wgmma_wait<0>();
    fence_acc(acc);

    // m64n128 accumulators: warp quarter q holds channels 16q + g and + 8, positions 8j + 2t and + 1 of its
    // warpgroup's 128 (acc[4j], [4j + 1]: channel g; [4j + 2], [4j + 3]: channel g + 8). Staged 32 channels at a
    // time: Cs[position][channel - 32 * half], stores of a warp on banks (8t + g) % 32: all different.
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      if (quarter / 2 == half) {
        const int ch = 16 * quarter + g8 - 32 * half;
#pragma unroll
        for (int j = 0; j < 16; ++j) {
          float* c = Cs + (warpgroup * 128 + 8 * j + 2 * t4) * C::LDC + ch;
          c[0] = acc[4 * j];
          c[C::LDC] = acc[4 * j + 1];
          c[8] = acc[4 * j + 2];
          c[C::LDC + 8] = acc[4 * j + 3];
        }
      }
      __syncthreads();
#pragma unroll
      for (int it = 0; it < ITEMS; ++it) {
        if (out[it] < 0) continue;
        const int pos = tid / 4 + it * (C::NT / 4);
        const float4 lo = *reinterpret_cast<const float4*>(Cs + pos * C::LDC + chunk * 8);
        const float4 hi = *reinterpret_cast<const float4*>(Cs + pos * C::LDC + chunk * 8 + 4);
        float v8[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
        const uint32_t rw[4] = {res8[half][it].x, res8[half][it].y, res8[half][it].z, res8[half][it].w};
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          const float r = e % 2 ? Half2<T>::unpack(rw[e / 2]).y : Half2<T>::unpack(rw[e / 2]).x;
          v8[e] = co0 + half * 32 + e < s.cout ? apply_act(v8[e] + bias_r[half][e] + r, act, slope) : 0.f;
        }
        store8(y + out[it] + half * 32, v8);
      }
      if (half == 0) __syncthreads();  // Cs is rewritten by the next half (after the last, the tile loop's barrier)
    }
  });
#else
  __trap();  // built for another arch: nhwc.py launches it in sm_90a builds only
#endif
}

// ---- host side --------------------------------------------------------------------------------------------------
template <class T, int CS, int KH, int KW>
inline void conv_shift_prepare() {
  static std::atomic<unsigned long long> ready{0};
  require_wgmma_code();
  allow_smem_once(ready, conv_shift_kernel<T, CS, KH, KW>, halo_smem_limit());
}

// Same arguments as conv_nhwc (the workspace is unused: no split-K); the layers of halo_fits<CS, KH, KW>.
template <class T, int CS, int KH, int KW>
inline void conv_shift(cudaStream_t st, const T* x, const T* w, const float* b, const T* res, T* y,
                       const NhwcShape& s, int batch, int act, float slope, float*, long long) {
  using C = ShiftTile<CS, KH, KW>;
  const int smem = C::smem_bytes(s.wo);
  require_halo_launch<CS, KH, KW>("conv_shift", s, smem);
  conv_shift_prepare<T, CS, KH, KW>();
  const auto kernel = conv_shift_kernel<T, CS, KH, KW>;
  int dev = 0, sms = 0;
  CF_CHECK(cudaGetDevice(&dev));
  CF_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  const long long grid_pos = static_cast<long long>(s.ho) * C::halo_w(s.wo);
  const long long ntiles = static_cast<long long>(batch) * ceil_div(grid_pos, C::NP);
  const int grid = static_cast<int>(std::min<long long>(ntiles, sms));
  kernel<<<grid, C::NT, smem, st>>>(x, w, b, res, y, s, batch, act, slope, C::positions(s.wo));
  CF_CHECK(cudaGetLastError());
}

}  // namespace cf
