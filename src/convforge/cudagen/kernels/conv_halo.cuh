// fp16 / bf16 direct convolution of a stride-1 layer with 64 output channels from a shared-memory halo: the
// kernel of resnet18's 64-channel 3x3 layers and of space-to-depth stems (s2d.py: a 4x4 conv over 16 channels).
// Same layouts and semantics as conv_nhwc_kernel (conv_nhwc.cuh: NhwcShape, NHWC x / y / residual, packed weights
// T[64][Kp] with k = (ky, kx, c), bias fp32, padded output channels written 0), but Y = T only, no split-K, no
// groups.
// Why a second kernel: conv_nhwc's im2col gather copies each input pixel into shared memory once per tap (9 times
// for a 3x3), 16 bytes per cp.async with its own bounds check, and refills its weight tile every k slice; with only
// 64 output channels there is little reuse to pay for that, and those layers ran at 140-155 TFLOP/s (H200, batch
// 256) where cuDNN runs 400-470 (benchmarks/results/nhwc_tiles_*.md).
// Design: persistent CTAs (as many as fit on the GPU), each holding the layer's whole weight matrix in shared
// memory for its lifetime. A tile is BP consecutive output pixels of one image (flat y * wo + x order, so a tile
// spans a few partial rows); its input rows (the halo: output rows plus kh - 1, all wo + kw - 1 columns, zeros for
// padding) land in shared memory once, by 16-byte cp.async, double-buffered so the next tile's halo (and residual
// tile) load while this one is multiplied. Every tap then reads its operand straight from the halo: ldmatrix takes
// one row address per lane, and pixel (oy, ox) of tap (ky, kx) is halo row (oy - oy0 + ky) * halo_w + ox + kx.
// The 16-warp 256-pixel tile has no room to stage the residual tile (222 KB with the weights and two halos): its
// residual words are loaded into registers before the multiply instead (STAGE_RES false).
// Measured (H100, fp16, batch 256, benchmarks/conv_check.cu): resnet18's 64-channel 3x3 layers 0.27 ms (221
// TFLOP/s; 0.31 with the residual) vs 0.39 / 0.46 for the best conv_nhwc / conv_wgmma tile; its space-to-depth stem
// 0.64 ms vs 1.20. With the halo loads left out the multiply alone took 0.23 ms: mma.sync from 32x32 warp tiles is
// what limits it now, not the loads (wgmma with A from registers, ldmatrix'd per k16 step, reached 0.23 ms on an
// H200, vs 0.28 here); conv_shift.cuh multiplies from shared-memory descriptors instead and takes these layers in
// sm_90a builds from 66 tiles on (nhwc.halo_tiles).
// GEMM orientation: A = pixels (m16 blocks), B = weights (n8 blocks of output channels), so each thread ends with
// pairs of adjacent channels of a pixel and stores them as 4-byte words (4 lanes fill a pixel's 16 bytes), with no
// staging pass.
// Bank conflicts: halo pixel rows are LDH = CS + 8 elements (an odd number of 16-byte units), and halo_w - wo is a
// multiple of 8, so 8 consecutive output pixels -- even across a row end -- read 8 different 16-byte bank groups;
// weight rows (K + 8) and residual rows (72) are odd multiples of 16 bytes for the same reason.
#pragma once
#include <algorithm>
#include <stdexcept>
#include <string>

#include "conv_nhwc.cuh"

namespace cf {


// BP output pixels x 64 channels per tile, WM x WN warps each owning (BP / WM) pixels x (64 / WN) channels.
template <int CS, int KH, int KW, int BP, int WM, int WN, bool STAGE_RES = true>
struct HaloTile {
  static constexpr int NOUT = 64, NT = 32 * WM * WN;
  static constexpr int LDH = CS + 8;  // elements per halo pixel row
  static constexpr int K = KH * KW * CS, LDW = K + 8;
  static constexpr int LDR = NOUT + 8;  // elements per staged residual row
  static constexpr int TM = BP / WM, TN = NOUT / WN, MI = TM / 16, NJ = TN / 8;
  static constexpr int W_BYTES = NOUT * LDW * 2, RES_BYTES = BP * LDR * 2;
  static_assert(CS % 16 == 0 && (LDH * 2 / 16) % 2 == 1, "16-channel multiples; odd 16-byte units per halo row");
  static_assert((LDW * 2 / 16) % 2 == 1 && (LDR * 2 / 16) % 2 == 1, "odd 16-byte units per weight/residual row");
  static_assert(TM % 16 == 0 && TN % 16 == 0 && WM * TM == BP && WN * TN == NOUT, "warp tiles cover the tile");
  static __device__ __forceinline__ int row(int w, int i) { return w * TM + i * 16; }  // m16 block i of warp w

  // host: the halo of one tile for output width wo (stride 1: input columns wo + kw - 1, padded so halo_w - wo
  // is a multiple of 8), at most (BP - 1) / wo + 2 output rows
  static int halo_w(int wo) { return wo + (KW - 1 + 7) / 8 * 8; }
  static int halo_rows(int wo) { return (BP - 1) / wo + 2 + KH - 1; }
  static int smem_bytes(int wo, bool residual) {
    return W_BYTES + 2 * (halo_rows(wo) * halo_w(wo) * LDH * 2 + (residual && STAGE_RES ? RES_BYTES : 0));
  }
};

template <class T, int CS, int KH, int KW, int BP, int WM, int WN, bool STAGE_RES>
__global__ void __launch_bounds__(32 * WM * WN)
conv_halo_kernel(const T* __restrict__ x, const T* __restrict__ wgt, const float* __restrict__ bias,
                 const T* __restrict__ residual, T* __restrict__ y, NhwcShape s, int batch, int act, float slope,
                 int halo_w, int halo_rows) {
  using C = HaloTile<CS, KH, KW, BP, WM, WN, STAGE_RES>;
  using Prec = typename Half2<T>::Prec;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* Ws = reinterpret_cast<T*>(smem_raw);
  const int halo_elems = halo_rows * halo_w * C::LDH;
  T* Hs = reinterpret_cast<T*>(smem_raw + C::W_BYTES);  // two halo buffers, then two residual tiles if a residual
  T* Rs = Hs + 2 * halo_elems;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int P = s.ho * s.wo, tiles_per_img = (P + BP - 1) / BP, ntiles = batch * tiles_per_img;
  const int in_w = s.wo + KW - 1;

  constexpr int WCH = C::K / 8;  // the weights, once per CTA (columns past K are never read)
  for (int i = tid; i < C::NOUT * WCH; i += C::NT) {
    const int row = i / WCH, q = i - row * WCH;
    cp_async_f32x4(reinterpret_cast<float*>(Ws + row * C::LDW + q * 8),
                   reinterpret_cast<const float*>(wgt + static_cast<long long>(row) * s.Kp + q * 8), true);
  }
  auto load_tile = [&](int tile, int buf) {
    const int img = tile / tiles_per_img, p0 = (tile - img * tiles_per_img) * BP;
    const int oy0 = p0 / s.wo, rows = (min(p0 + BP, P) - 1) / s.wo - oy0 + KH;
    const T* xi = x + static_cast<long long>(img) * s.h * s.w * CS;
    T* H = Hs + buf * halo_elems;
    constexpr int CH = CS / 8;
    for (int i = tid; i < rows * in_w * CH; i += C::NT) {
      const int q = i % CH, pix = i / CH, r = pix / in_w, c = pix - r * in_w;
      const int iy = oy0 - s.ph + r, ix = c - s.pw;
      const bool ok = static_cast<unsigned>(iy) < static_cast<unsigned>(s.h) &&
                      static_cast<unsigned>(ix) < static_cast<unsigned>(s.w);
      const T* src = ok ? xi + (static_cast<long long>(iy) * s.w + ix) * CS + q * 8 : x;
      cp_async_f32x4(reinterpret_cast<float*>(H + (r * halo_w + c) * C::LDH + q * 8),
                     reinterpret_cast<const float*>(src), ok);
    }
    if (residual && STAGE_RES) {
      const T* rg = residual + (static_cast<long long>(img) * P + p0) * C::NOUT;
      T* R = Rs + buf * BP * C::LDR;
      constexpr int RCH = C::NOUT / 8;
      for (int i = tid; i < BP * RCH; i += C::NT) {
        const int px = i / RCH, q = i % RCH;
        const bool ok = p0 + px < P;
        cp_async_f32x4(reinterpret_cast<float*>(R + px * C::LDR + q * 8),
                       reinterpret_cast<const float*>(ok ? rg + px * C::NOUT + q * 8 : residual), ok);
      }
    }
  };

  const int wm = warp / WN, wn = (warp % WN) * C::TN;  // warp index along the pixels, first channel
  const int g8 = lane / 4, t4 = lane % 4;
  float bias_r[C::NJ][2];
#pragma unroll
  for (int j = 0; j < C::NJ; ++j)
#pragma unroll
    for (int e = 0; e < 2; ++e) bias_r[j][e] = bias ? bias[wn + j * 8 + 2 * t4 + e] : 0.f;
  // ldmatrix.x4 lane -> row: A (16 pixels x 16 k) lanes 0-15 rows 0-15 at k 0, lanes 16-31 the same rows at k 8;
  // B (two n8 blocks x 16 k of the weights [n][k]) as conv_nhwc's B.
  const int b_row = (lane & 7) + ((lane >> 4) << 3), b_col = ((lane >> 3) & 1) * 8;
  const T* Wl = Ws + (wn + b_row) * C::LDW + b_col;

  // the weights were committed with the first tile's halo
  double_buffered_tiles(ntiles, load_tile, [] {}, [&](int tile, int buf) {
    const int img = tile / tiles_per_img, p0 = (tile - img * tiles_per_img) * BP, oy0 = p0 / s.wo;
    const T* H = Hs + buf * halo_elems;
    int a_off[C::MI];  // halo offset of tap (0, 0) for this lane's A row; pixels past the image read pixel p0
#pragma unroll
    for (int i = 0; i < C::MI; ++i) {
      int q = p0 + C::row(wm, i) + (lane & 15);
      q = q < P ? q : p0;
      const int oy = q / s.wo;
      a_off[i] = ((oy - oy0) * halo_w + q - oy * s.wo) * C::LDH + (lane >> 4) * 8;
    }
    // Without a staged residual tile, this tile's residual words are loaded now, in registers, so their latency
    // hides behind the multiply.
    uint32_t res_r[STAGE_RES ? 1 : C::MI][2][C::NJ];
    if (!STAGE_RES && residual) {
#pragma unroll
      for (int i = 0; i < (STAGE_RES ? 1 : C::MI); ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int q = p0 + C::row(wm, i) + g8 + 8 * h;
          const T* rp = residual + (static_cast<long long>(img) * P + q) * C::NOUT + wn + 2 * t4;
#pragma unroll
          for (int j = 0; j < C::NJ; ++j) res_r[i][h][j] = q < P ? *reinterpret_cast<const uint32_t*>(rp + j * 8) : 0u;
        }
    }
    float acc[C::MI][C::NJ][4];
    zero_fragments(acc);
#pragma unroll 1  // (unrolled: same speed, H100)
    for (int ky = 0; ky < KH; ++ky) {
#pragma unroll
      for (int kx = 0; kx < KW; ++kx) {
        const T* Ht = H + (ky * halo_w + kx) * C::LDH;
        const T* Wt = Wl + (ky * KW + kx) * CS;
#pragma unroll
        for (int c = 0; c < CS; c += 16) {
          uint32_t a[C::MI][4];
#pragma unroll
          for (int i = 0; i < C::MI; ++i) ldmatrix_x4(a[i], Ht + a_off[i] + c);
          mma_k16<Prec>(acc, a, Wt + c, C::LDW);
        }
      }
    }

    // Accumulator (i, j): c0, c1 -> pixel g, channels 2t, 2t+1; c2, c3 -> pixel g + 8, same channels.
    const T* R = Rs + buf * BP * C::LDR;
#pragma unroll
    for (int i = 0; i < C::MI; ++i)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int px = C::row(wm, i) + g8 + 8 * h;
        if (p0 + px >= P) continue;
        T* yo = y + (static_cast<long long>(img) * P + p0 + px) * C::NOUT;
#pragma unroll
        for (int j = 0; j < C::NJ; ++j) {
          const int ch = wn + j * 8 + 2 * t4;
          float v0 = acc[i][j][2 * h] + bias_r[j][0], v1 = acc[i][j][2 * h + 1] + bias_r[j][1];
          if (residual) {
            const float2 r = Half2<T>::unpack(STAGE_RES ? *reinterpret_cast<const uint32_t*>(R + px * C::LDR + ch)
                                                        : res_r[STAGE_RES ? 0 : i][h][j]);
            v0 += r.x;
            v1 += r.y;
          }
          v0 = ch < s.cout ? apply_act(v0, act, slope) : 0.f;
          v1 = ch + 1 < s.cout ? apply_act(v1, act, slope) : 0.f;
          *reinterpret_cast<uint32_t*>(yo + ch) = Half2<T>::pack(v0, v1);
        }
      }
  });
}

// ---- host side --------------------------------------------------------------------------------------------------
// Whether conv_halo<T, CS, KH, KW, ...> computes this layer (nhwc.py chooses it only then; the launcher re-checks).
template <int CS, int KH, int KW>
inline bool halo_fits(const NhwcShape& s) {
  return s.cs_in == CS && s.cin_g == CS && s.groups == 1 && s.cs_out == 64 && s.kh == KH && s.kw == KW &&
         s.sh == 1 && s.sw == 1 && s.dh == 1 && s.dw == 1 && s.K == KH * KW * CS;
}

// The most shared memory a block may have on the current GPU (227 KB on H100/H200, 163 KB on A100).
inline int halo_smem_limit() {
  int dev = 0, optin = 0;
  CF_CHECK(cudaGetDevice(&dev));
  CF_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  return optin;
}

// The launchers' checks (conv_halo, conv_shift): the layer is one the kernel computes, and a CTA's `smem` bytes fit
// this GPU (a project generated for H100/H200, nhwc.halo_tiles, rebuilt for and run on a smaller one does not).
template <int CS, int KH, int KW>
inline void require_halo_launch(const char* kernel, const NhwcShape& s, int smem) {
  if (!halo_fits<CS, KH, KW>(s)) throw std::runtime_error(std::string(kernel) + ": layer shape not supported");
  const int limit = halo_smem_limit();
  if (smem > limit)
    throw std::runtime_error(std::string(kernel) + ": a layer needs " + std::to_string(smem) + " bytes of shared "
                             "memory a block, this GPU allows " + std::to_string(limit) + "; regenerate the network "
                             "with CF_NHWC_HALO=0");
}

template <class T, int CS, int KH, int KW, int BP, int WM, int WN, bool STAGE_RES = true>
inline void conv_halo_prepare() {
  static std::atomic<unsigned long long> ready{0};
  // the halo's size depends on the layer's width: allow the most a block may have, launch with what it needs
  allow_smem_once(ready, conv_halo_kernel<T, CS, KH, KW, BP, WM, WN, STAGE_RES>, halo_smem_limit());
}

// Same arguments as conv_nhwc (the workspace is unused: no split-K).
template <class T, int CS, int KH, int KW, int BP, int WM, int WN, bool STAGE_RES = true>
inline void conv_halo(cudaStream_t st, const T* x, const T* w, const float* b, const T* res, T* y,
                      const NhwcShape& s, int batch, int act, float slope, float*, long long) {
  using C = HaloTile<CS, KH, KW, BP, WM, WN, STAGE_RES>;
  const int smem = C::smem_bytes(s.wo, res != nullptr);
  require_halo_launch<CS, KH, KW>("conv_halo", s, smem);
  conv_halo_prepare<T, CS, KH, KW, BP, WM, WN, STAGE_RES>();
  const auto kernel = conv_halo_kernel<T, CS, KH, KW, BP, WM, WN, STAGE_RES>;
  int dev = 0, sms = 0, per_sm = 0;
  CF_CHECK(cudaGetDevice(&dev));
  CF_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  CF_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, C::NT, smem));
  const long long ntiles = static_cast<long long>(batch) * ceil_div(static_cast<long long>(s.ho) * s.wo, BP);
  const int grid = static_cast<int>(std::min<long long>(ntiles, static_cast<long long>(sms) * std::max(per_sm, 1)));
  kernel<<<grid, C::NT, smem, st>>>(x, w, b, res, y, s, batch, act, slope, C::halo_w(s.wo), C::halo_rows(s.wo));
  CF_CHECK(cudaGetLastError());
}

}  // namespace cf
