// fp16 / bf16 implicit-GEMM convolution (and dense layers) on activations kept in the reduced precision, NHWC:
// the default kernels of `--precision fp16|bf16` (CF_CONV_KERNELS=nchw or legacy select the fp32-NCHW kernels of
// conv_mma.cuh / conv_wmma.cuh instead; common.cuh).
// Layout: x, y, residual T[N][H][W][cs] (y fp32 for the layer feeding the output) with cs = channels rounded up to 8 (4 for a network input of <= 4 channels
// read only by convolutions other than a strided stem, which reads the input's space-to-depth map instead, s2d.py;
// nhwc.py); padded output channels are written as 0. Weights T[rows][Kp], packed once at
// start-up (nhwc_ops.cuh, repack_weights): row m = output channel, k = (ky, kx, c) with c fastest, zero rows and
// columns for padding, Kp = K rounded up to 32 so every k tile is whole. Bias fp32 [cout] (batch norm folded in).
// A dense layer is the same GEMM: a 1x1 convolution over the flat feature row (its weights were permuted at packing
// so that the flatten order is PyTorch's NCHW one). Split-K partial sums: fp32 [split][N*H*W][cs_out].
// GEMM: C[m][n] = sum_k W[m][k] * im2col(x)[n][k], m = output channel, n = (image, y, x). Both operands are k-major,
// so both tiles land in shared memory by 16-byte (8-byte for a 4-channel input) cp.async straight from global
// memory -- no conversion pass -- and ldmatrix (non-transposed) feeds mma.sync m16n8k16 with fp32 accumulators.
// Shared rows are BK + 8 elements (80 bytes for BK 32, 144 for BK 64): the 8 row addresses of each ldmatrix 8x8
// matrix are 5 (9) 16-byte units apart, an odd number, which lands them on 8 different 16-byte bank groups, so
// fragment loads are conflict-free.
// Tiles (chosen per layer and batch size at generation time, nhwc.py choose_tiles; CF_NHWC_TILE=BMxBNxBK[wW] there
// forces one): 128x128 and 64x256 (8 warps of 64x32), 128x256 / 256x128 (8 warps of 64x64, 1 CTA per SM), 128x128w4
// and 64x256w4 (4 warps of 64x64, 2 CTAs per SM), 64x128w4 (4 warps of 64x32), 128x64 / 64x128 (8 warps of 32x32),
// 64x64 (4 warps of 32x32); k slices of 32 in a 4-stage cp.async ring, or of 64 in 3 stages.
// Epilogue: accumulators staged in shared memory as fp32 [n][m], then each thread takes 8 channels of one pixel:
// + bias, + residual (16-byte load), activation, one 16-byte store.
// Speed vs cuDNN (H200, fp16, resnet18 224 px, batch 256; benchmarks/results/nhwc_tiles_*.md): 140-290 TFLOP/s on
// the 3x3 layers where cuDNN's sm90 kernels run 400-770; conv_wgmma.cuh takes the layers of >= 128 channels.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "conv_mma.cuh"
#include "igemm.cuh"
#include "splitk.cuh"

namespace cf {

// One convolution as the NHWC kernels see it (a dense layer: h = w = kh = kw = 1, cs_in = cin_g = K).
struct NhwcShape {
  int h, w, cs_in;   // input size, elements per input pixel
  int cin_g;         // channels per group along k (cs_in when groups == 1, padding included)
  int cout, cs_out;  // real output channels, elements per output pixel
  int ho, wo, kh, kw, sh, sw, ph, pw, dh, dw, groups;
  int K, Kp;         // kh * kw * cin_g, and the packed weight row length (a multiple of 32)
};

template <class T>
struct Half2;  // T <-> float, and T pairs (lower channel in the low 16 bits, as ldmatrix and mma read them)
template <>
struct Half2<__half> {
  using Prec = MmaF16;
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
  }
  static __device__ __forceinline__ float2 unpack(uint32_t v) {
    return __half22float2(*reinterpret_cast<__half2*>(&v));
  }
  static __device__ __forceinline__ float get(__half v) { return __half2float(v); }
  static __device__ __forceinline__ __half make(float v) { return __float2half_rn(v); }
};
template <>
struct Half2<__nv_bfloat16> {
  using Prec = MmaBf16;
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
  }
  static __device__ __forceinline__ float2 unpack(uint32_t v) {
    return __bfloat1622float2(*reinterpret_cast<__nv_bfloat162*>(&v));
  }
  static __device__ __forceinline__ float get(__nv_bfloat16 v) { return __bfloat162float(v); }
  static __device__ __forceinline__ __nv_bfloat16 make(float v) { return __float2bfloat16_rn(v); }
};

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <class Y>
__device__ __forceinline__ Y from_float(float v) {  // Y = float, or T (round to nearest)
  if constexpr (std::is_same<Y, float>::value) {
    return v;
  } else {
    return Half2<Y>::make(v);
  }
}

template <class T>
__device__ __forceinline__ void load8(const T* p, float (&v)[8]) {  // p 16-byte aligned
  const uint4 q = *reinterpret_cast<const uint4*>(p);
  const uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = Half2<T>::unpack(w[i]);
    v[2 * i] = f.x;
    v[2 * i + 1] = f.y;
  }
}

template <class T>
__device__ __forceinline__ void store8(T* p, const float (&v)[8]) {
  *reinterpret_cast<uint4*>(p) = make_uint4(Half2<T>::pack(v[0], v[1]), Half2<T>::pack(v[2], v[3]),
                                            Half2<T>::pack(v[4], v[5]), Half2<T>::pack(v[6], v[7]));
}
__device__ __forceinline__ void store8(float* p, const float (&v)[8]) {  // p 32-byte aligned
  *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  *reinterpret_cast<float4*>(p + 4) = make_float4(v[4], v[5], v[6], v[7]);
}
__device__ __forceinline__ void load8(const float* p, float (&v)[8]) {  // p 32-byte aligned
  const float4 lo = *reinterpret_cast<const float4*>(p), hi = *reinterpret_cast<const float4*>(p + 4);
  v[0] = lo.x, v[1] = lo.y, v[2] = lo.z, v[3] = lo.w, v[4] = hi.x, v[5] = hi.y, v[6] = hi.z, v[7] = hi.w;
}

// The NHWC epilogue of 8 channels co.. of one pixel (o = its element offset): bias, residual, activation; channels
// at or past cout are padding and become 0, so every byte of a row is written and finite. Y = T, or float for the
// layer that feeds the network's output (its logits are not rounded to T: bf16's 8 bits cost up to 2e-2 of
// probability on alexnet, nhwc.py).
template <class T, class Y>
__device__ __forceinline__ void finish8(float (&v)[8], long long o, int co, int cout, Y* __restrict__ y,
                                        const float* __restrict__ bias, const T* __restrict__ residual, int act,
                                        float slope) {
  float r[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  if (residual) load8(residual + o, r);
#pragma unroll
  for (int e = 0; e < 8; ++e) {
    const int c = co + e;
    v[e] = c < cout ? apply_act(v[e] + (bias ? bias[c] : 0.f) + r[e], act, slope) : 0.f;
  }
  store8(y + o, v);
}

// cp.async of BYTES (16 or 8) with zero fill when !valid; .ca keeps gathered pixels in L1, where the other taps of
// the same tile find them again.
template <int BYTES>
__device__ __forceinline__ void cp_async_ca(void* smem, const void* gmem, bool valid) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(dst), "l"(gmem), "n"(BYTES),
               "r"(valid ? BYTES : 0));
#else
  __trap();  // never launched below sm_80: use_nhwc_layout() is false there
#endif
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
#else
  __trap();
#endif
}

// One k16 step of a warp tile: the B fragments of NJ n8 blocks (two per ldmatrix.x4 from b, the lane's row
// address of block pair 0, pairs 16 rows of `stride` elements apart; the b_row / b_col lane mapping of the kernels
// below), then acc[i][j] += a[i] * b[j] by mma.sync m16n8k16.
template <class Prec, int MI, int NJ, class T>
__device__ __forceinline__ void mma_k16(float (&acc)[MI][NJ][4], const uint32_t (&a)[MI][4], const T* b, int stride) {
  uint32_t f[NJ][2];
#pragma unroll
  for (int jj = 0; jj < NJ / 2; ++jj) {
    uint32_t r[4];
    ldmatrix_x4(r, b + jj * 16 * stride);
    f[2 * jj][0] = r[0];
    f[2 * jj][1] = r[1];
    f[2 * jj + 1][0] = r[2];
    f[2 * jj + 1][1] = r[3];
  }
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NJ; ++j) mma_16x8<Prec>(acc[i][j], a[i], f[j]);
}

// Persistent CTAs over tiles blockIdx.x, + gridDim.x, ... (conv_halo.cuh, conv_shift.cuh): load(tile, buf) issues
// the cp.async copies of a tile's operands into buffer buf (0 or 1), body(tile, buf) computes it once they have
// landed, the next tile's copies in flight meanwhile. landed() runs between the wait and the barrier that publishes
// the copies (conv_shift: the fence that makes them visible to wgmma).
template <class Load, class Landed, class Body>
__device__ __forceinline__ void double_buffered_tiles(int ntiles, Load load, Landed landed, Body body) {
  int buf = 0;
  if (blockIdx.x < ntiles) load(blockIdx.x, 0);
  cp_async_commit();
  for (int tile = blockIdx.x; tile < ntiles; tile += gridDim.x, buf ^= 1) {
    const int next = tile + gridDim.x;
    if (next < ntiles) load(next, buf ^ 1);  // into the buffer every warp finished with last iteration
    cp_async_commit();
    cp_async_wait<1>();  // this tile's copies (and whatever was committed with the first) landed for this thread
    landed();
    __syncthreads();
    body(tile, buf);
    __syncthreads();  // every warp is done with this buffer before the next iteration refills it
  }
  cp_async_wait<0>();
}

// A tile configuration: BM x BN outputs per CTA computed by WARPS warps, k slices of BK (32: 4-stage ring; 64:
// 3 stages, half the __syncthreads and cursor steps per MMA). Warp tile from the outputs per warp: 64x64 (32 mma per
// 8 ldmatrix.x4, 128 accumulators: 255 registers, so 1 CTA of 8 warps or 2 of 4 per SM), 64x32 (16 mma per 6; one
// warp row along m for BM 64, so 64-channel layers get 128x128's ratio), else 32x32 (8 per 4).
template <int BM, int BN, int BK_ = 32, int WARPS = (BM * BN <= 64 * 64 ? 4 : 8)>
struct NhwcTile {
  static constexpr int BK = BK_;
  static constexpr int STAGES = BK == 32 ? 4 : 3, LDS = BK + 8;  // LDS * 2 bytes = odd multiple of 16: see above
  static constexpr int NT = 32 * WARPS;
  static constexpr int WARP_AREA = BM * BN / WARPS;
  static constexpr int TM = WARP_AREA >= 64 * 32 ? 64 : 32, TN = WARP_AREA / TM;  // warp tile
  static constexpr int WM = BM / TM, WN = BN / TN;              // warps along m and n
  static constexpr int MI = TM / 16, NJ = TN / 8;               // 16 x 8 fragments per warp
  static constexpr int LDC = BM + 4;                            // staged output Cs[n][m]; % 32 == 4: see epilogue
  static constexpr int STAGE = (BM + BN) * LDS;                 // T elements
  static constexpr int RING_BYTES = STAGES * STAGE * 2, OUT_BYTES = BN * LDC * 4;
  static constexpr int SMEM_BYTES = RING_BYTES > OUT_BYTES ? RING_BYTES : OUT_BYTES;
  // 2 CTAs of 8 warps (4 of 4) per SM: <= 128 registers a thread; 64x64 warp tiles: <= 255, half as many CTAs
  static constexpr int MIN_BLOCKS = (NT == 256 ? 2 : 4) / (WARP_AREA >= 64 * 64 ? 2 : 1);
  static_assert((BM == 64 || BM == 128 || BM == 256) && (BN == 64 || BN == 128 || BN == 256), "tile sizes");
  static_assert(BK == 32 || BK == 64, "k slices of 32 or 64");
  static_assert(WARPS == 4 || WARPS == 8, "4 or 8 warps");
  static_assert(WM * TM == BM && WN * TN == BN && TN <= 64, "warp tiles must cover the tile");
  static_assert((LDS * 2 / 16) % 2 == 1, "rows an odd number of 16-byte units apart: conflict-free ldmatrix");
  static_assert(NJ % 2 == 0, "B fragments are loaded two n8 blocks at a time");
  static_assert(SMEM_BYTES <= 227 * 1024, "more shared memory than a CTA may have");
};

// This CTA's part of the GEMM: group, split-K slice (k range in whole BK tiles), first row and column.
struct NhwcGemm {
  int g, split, Mg, m0, k_begin, k_end, P;
  long long Ncols, n0;
};

__device__ __forceinline__ NhwcGemm nhwc_gemm(const NhwcShape& s, int batch, int splits, int bm, int bn, int bk) {
  NhwcGemm t;
  t.g = blockIdx.z / splits;
  t.split = blockIdx.z % splits;
  t.Mg = s.cs_out / s.groups;
  const int tiles = (s.Kp + bk - 1) / bk, per = (tiles + splits - 1) / splits;  // Kp % 64 == 32: last tile half
  t.k_begin = min(s.Kp, t.split * per * bk);
  t.k_end = min(s.Kp, t.k_begin + per * bk);
  t.P = s.ho * s.wo;
  t.Ncols = static_cast<long long>(batch) * t.P;
  t.m0 = blockIdx.y * bm;
  t.n0 = static_cast<long long>(blockIdx.x) * bn;
  return t;
}

// Element offset of 16-byte chunk q (0-7) of row `row` in a tile of 64-element (128-byte) rows stored with wgmma's
// 128-byte swizzle: the chunk lands at q ^ (row % 8) (conv_wgmma.cuh, conv_shift.cuh).
__device__ __forceinline__ int swizzle128(int row, int q) { return row * 64 + ((q ^ (row & 7)) * 8); }

// im2col tile Bs[n][k] for one k slice: thread (row0, ch) copies chunk ch (VEC channels of one tap) of rows
// row0, row0 + RP, ...; each row's pixel is decoded once, and a (c, kx, ky) cursor moves by BK per slice with one
// carry per digit (no division after init). SW128 (conv_wgmma.cuh): rows of 64 elements = 128 bytes whose 16-byte
// chunk q is stored at q ^ (row % 8), the layout wgmma's 128-byte swizzle reads (row % 8 is row0 % 8 for every row
// of a thread: RP is a multiple of 8).
template <class T, int BN, int NT, int VEC, int BK, int LDS, bool SW128 = false>
struct NhwcGather {
  static constexpr int CH = BK / VEC, RP = NT / CH, NP = BN / RP;
  static_assert(NT % CH == 0 && BN % RP == 0, "gather chunks must split evenly over the threads");
  static_assert(!SW128 || (VEC == 8 && BK == 64 && RP % 8 == 0), "swizzled rows: 8 chunks of 8 elements");
  const T* base[NP];  // image (and group) start of each row's pixel
  int iy0[NP], ix0[NP];
  int row0, ch, k, c, kx, ky, dc, dkx, dky;

  __device__ __forceinline__ void init(const NhwcShape& s, const NhwcGemm& t, const T* x, int tid) {
    ch = tid % CH;
    row0 = tid / CH;
#pragma unroll
    for (int j = 0; j < NP; ++j) {
      const long long n = t.n0 + row0 + j * RP;
      int img = 0, oy = 0, ox = 0;
      if (n < t.Ncols) {
        img = static_cast<int>(n / t.P);
        const int p = static_cast<int>(n - static_cast<long long>(img) * t.P);
        oy = p / s.wo;
        ox = p - oy * s.wo;
      }
      // a column past the GEMM gets a row far above the image, so every tap of it is out of bounds
      iy0[j] = n < t.Ncols ? oy * s.sh - s.ph : -(1 << 30);
      ix0[j] = ox * s.sw - s.pw;
      base[j] = x + static_cast<long long>(img) * s.h * s.w * s.cs_in + t.g * s.cin_g;
    }
    k = t.k_begin + ch * VEC;
    const int tap = k / s.cin_g;
    c = k - tap * s.cin_g;
    ky = tap / s.kw;
    kx = tap - ky * s.kw;
    const int dtap = BK / s.cin_g;
    dc = BK - dtap * s.cin_g;
    dky = dtap / s.kw;
    dkx = dtap - dky * s.kw;
  }

  __device__ __forceinline__ void load(T* Bs, const NhwcShape& s, const T* x) {
#pragma unroll
    for (int j = 0; j < NP; ++j) {
      const int iy = iy0[j] + ky * s.dh, ix = ix0[j] + kx * s.dw;
      const bool ok = k < s.K && static_cast<unsigned>(iy) < static_cast<unsigned>(s.h) &&
                      static_cast<unsigned>(ix) < static_cast<unsigned>(s.w);
      const T* src = ok ? base[j] + ((iy * s.w + ix) * s.cs_in + c) : x;
      const int row = row0 + j * RP;
      T* dst = SW128 ? Bs + swizzle128(row, ch) : Bs + row * LDS + ch * VEC;
      cp_async_ca<VEC * 2>(dst, src, ok);
    }
    k += BK;
    c += dc;
    if (c >= s.cin_g) {
      c -= s.cin_g;
      ++kx;
    }
    kx += dkx;
    if (kx >= s.kw) {
      kx -= s.kw;
      ++ky;
    }
    ky += dky;
  }
};

// The NHWC epilogue of one CTA's BM x BN outputs staged as fp32 Cs[n][m] (leading dimension LDC): per 8 channels
// of a pixel, split-K partial sums (partial != nullptr) or finish8. Shared by conv_nhwc and conv_wgmma.
template <int BM, int BN, int NT, int LDC, class T, class Y>
__device__ __forceinline__ void nhwc_store_tile(const float* Cs, const NhwcShape& s, const NhwcGemm& t,
                                                Y* __restrict__ y, const float* __restrict__ bias,
                                                const T* __restrict__ residual, int act, float slope,
                                                float* __restrict__ partial) {
  constexpr int MC = BM / 8;  // 8-channel chunks per pixel
  const long long split_off = static_cast<long long>(t.split) * t.Ncols * s.cs_out;
#pragma unroll 2
  for (int idx = threadIdx.x; idx < BN * MC; idx += NT) {
    const int mc = idx % MC, nn = idx / MC, m = t.m0 + mc * 8;
    const long long n = t.n0 + nn;
    if (n >= t.Ncols || m >= t.Mg) continue;
    const float4 lo = *reinterpret_cast<const float4*>(Cs + nn * LDC + mc * 8);
    const float4 hi = *reinterpret_cast<const float4*>(Cs + nn * LDC + mc * 8 + 4);
    float v[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
    const int co = t.g * t.Mg + m;
    const long long o = n * s.cs_out + co;  // NHWC: pixel n's row, no division
    if (partial) {
      *reinterpret_cast<float4*>(partial + split_off + o) = lo;
      *reinterpret_cast<float4*>(partial + split_off + o + 4) = hi;
    } else {
      finish8(v, o, co, s.cout, y, bias, residual, act, slope);
    }
  }
}

template <class T, int BM, int BN, int BK, int WARPS, int VEC, class Y>
__global__ void __launch_bounds__(NhwcTile<BM, BN, BK, WARPS>::NT, NhwcTile<BM, BN, BK, WARPS>::MIN_BLOCKS)
conv_nhwc_kernel(const T* __restrict__ x, const T* __restrict__ wgt, const float* __restrict__ bias,
                 const T* __restrict__ residual, Y* __restrict__ y, NhwcShape s, int batch, int act, float slope,
                 int splits, float* __restrict__ partial) {
  using C = NhwcTile<BM, BN, BK, WARPS>;
  using Prec = typename Half2<T>::Prec;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* smem = reinterpret_cast<T*>(smem_raw);
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const NhwcGemm t = nhwc_gemm(s, batch, splits, BM, BN, C::BK);
  const T* wg = wgt + static_cast<long long>(t.g) * t.Mg * s.Kp;
  NhwcGather<T, BN, C::NT, VEC, C::BK, C::LDS> gather;
  gather.init(s, t, x, tid);

  const int wm = (warp / C::WN) * C::TM, wn = (warp % C::WN) * C::TN;
  float acc[C::MI][C::NJ][4];
  zero_fragments(acc);

  auto load = [&](int st, int tile) {
    T* As = smem + st * C::STAGE;
    const int k0 = t.k_begin + tile * C::BK;
    constexpr int CHUNKS = BK / 8;  // 16-byte chunks per weight row
    static_assert(BM * CHUNKS % C::NT == 0, "weight chunks must split evenly over the threads");
#pragma unroll
    for (int i = 0; i < BM * CHUNKS / C::NT; ++i) {  // rows past Mg and k past k_end (BK 64, Kp % 64 == 32): zeros
      const int idx = tid + i * C::NT, row = idx / CHUNKS, q = idx % CHUNKS, m = t.m0 + row, k = k0 + q * 8;
      const bool ok = m < t.Mg && k < t.k_end;
      const T* src = ok ? wg + static_cast<long long>(m) * s.Kp + k : wgt;
      cp_async_f32x4(reinterpret_cast<float*>(As + row * C::LDS + q * 8), reinterpret_cast<const float*>(src), ok);
    }
    gather.load(As + BM * C::LDS, s, x);
  };
  // ldmatrix.x4 lane -> row address. A (16 x 16 at rows wm + 16i): matrices (rows 0-7, k 0-7), (8-15, 0-7),
  // (0-7, 8-15), (8-15, 8-15) = registers a0..a3 of m16n8k16. B (two n8 blocks at wn + 16jj, Bs[n][k]): matrices
  // (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15) = b0, b1 of block 2jj, then of 2jj + 1.
  const int a_row = lane & 15, a_col = (lane >> 4) * 8;
  const int b_row = (lane & 7) + ((lane >> 4) << 3), b_col = ((lane >> 3) & 1) * 8;
  auto compute = [&](int st) {
    const T* As = smem + st * C::STAGE;
    const T* Bs = As + BM * C::LDS;
#pragma unroll
    for (int kk = 0; kk < C::BK; kk += 16) {
      uint32_t a[C::MI][4];
#pragma unroll
      for (int i = 0; i < C::MI; ++i) ldmatrix_x4(a[i], As + (wm + i * 16 + a_row) * C::LDS + kk + a_col);
      mma_k16<Prec>(acc, a, Bs + (wn + b_row) * C::LDS + kk + b_col, C::LDS);
    }
  };
  const int tiles = (t.k_end - t.k_begin + C::BK - 1) / C::BK;
  pipeline<C::STAGES>(tiles, load, compute);  // ends with a __syncthreads: the ring is free

  // Accumulator (i, j): c0, c1 -> (m = g, n = 2t, 2t+1), c2, c3 -> (m = g + 8, same n), g = lane / 4, t = lane % 4.
  // Staged transposed, Cs[n][m]: a warp's 32 scalar stores hit bank (8t + g + const) % 32 (LDC % 32 == 4): all
  // different.
  float* Cs = reinterpret_cast<float*>(smem_raw);
  const int g8 = lane / 4, t4 = lane % 4;
#pragma unroll
  for (int i = 0; i < C::MI; ++i)
#pragma unroll
    for (int j = 0; j < C::NJ; ++j) {
      float* c = Cs + (wn + j * 8 + 2 * t4) * C::LDC + wm + i * 16 + g8;
      c[0] = acc[i][j][0];
      c[C::LDC] = acc[i][j][1];
      c[8] = acc[i][j][2];
      c[C::LDC + 8] = acc[i][j][3];
    }
  __syncthreads();
  nhwc_store_tile<BM, BN, C::NT, C::LDC>(Cs, s, t, y, bias, residual, act, slope, partial);
}

template <class T, class Y>
__global__ void splitk_reduce_nhwc_kernel(const float* __restrict__ partial, int splits, long long total,
                                          const float* __restrict__ bias, const T* __restrict__ residual,
                                          Y* __restrict__ y, int cs_out, int cout, int act, float slope) {
  const long long o = (static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x) * 8;
  if (o >= total) return;
  float v[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  for (int sp = 0; sp < splits; ++sp) {
    const float4 lo = *reinterpret_cast<const float4*>(partial + sp * total + o);
    const float4 hi = *reinterpret_cast<const float4*>(partial + sp * total + o + 4);
    v[0] += lo.x, v[1] += lo.y, v[2] += lo.z, v[3] += lo.w, v[4] += hi.x, v[5] += hi.y, v[6] += hi.z, v[7] += hi.w;
  }
  finish8(v, o, static_cast<int>(o % cs_out), cout, y, bias, residual, act, slope);
}

// Dense layer with few rows (batch <= MAXB): one warp per output unit streams its packed weight row once in
// 16-byte loads; padded units write 0.
template <class T, int MAXB, class Y>
__global__ void gemv_nhwc_kernel(const T* __restrict__ x, const T* __restrict__ wgt, const float* __restrict__ bias,
                                 const T* __restrict__ residual, Y* __restrict__ y, NhwcShape s, int batch, int act,
                                 float slope) {
  const int o = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
  if (o >= s.cs_out) return;
  float acc[MAXB];
#pragma unroll
  for (int b = 0; b < MAXB; ++b) acc[b] = 0.f;
  if (o < s.cout) {
    const T* wr = wgt + static_cast<long long>(o) * s.Kp;
    for (int k = lane * 8; k < s.K; k += 256) {
      float wv[8];
      load8(wr + k, wv);
#pragma unroll
      for (int b = 0; b < MAXB; ++b) {
        if (b >= batch) break;
        float xv[8];
        load8(x + static_cast<long long>(b) * s.cs_in + k, xv);
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[b] = fmaf(wv[e], xv[e], acc[b]);
      }
    }
  }
#pragma unroll
  for (int b = 0; b < MAXB; ++b)
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) acc[b] += __shfl_xor_sync(0xffffffffu, acc[b], off);
  if (lane == 0) {
    for (int b = 0; b < batch && b < MAXB; ++b) {
      const long long i = static_cast<long long>(b) * s.cs_out + o;
      float v = 0.f;
      if (o < s.cout) {
        v = acc[b] + (bias ? bias[o] : 0.f);
        if (residual) v += to_float(residual[i]);
        v = apply_act(v, act, slope);
      }
      y[i] = from_float<Y>(v);
    }
  }
}

// ---- host side --------------------------------------------------------------------------------------------------
// Sets the dynamic shared-memory limit of one tile configuration; the generated network's constructor calls it for
// every configuration it launches (outside graph capture).
template <class T, int BM, int BN, int BK, int WARPS, int VEC, class Y = T>
inline void conv_nhwc_prepare() {
  static std::atomic<unsigned long long> ready{0};
  allow_smem_once(ready, conv_nhwc_kernel<T, BM, BN, BK, WARPS, VEC, Y>, NhwcTile<BM, BN, BK, WARPS>::SMEM_BYTES);
}

// One launch of an implicit-GEMM tile kernel of BM x BN outputs and k slices of BK (conv_nhwc_kernel here,
// conv_wgmma_kernel in conv_wgmma.cuh: the same arguments) over its grid, split-K as splitk.cuh chooses, then the
// reduction of the partial sums when split.
template <int BM, int BN, int BK, class T, class Y, class Kernel>
inline void launch_nhwc_gemm(Kernel kernel, int threads, int smem_bytes, cudaStream_t st, const T* x, const T* w,
                             const float* b, const T* res, Y* y, const NhwcShape& s, int batch, int act, float slope,
                             float* ws, long long ws_elems) {
  const long long ncols = static_cast<long long>(batch) * s.ho * s.wo;
  const int mg = s.cs_out / s.groups;
  const long long blocks = static_cast<long long>(ceil_div(ncols, BN)) * ceil_div(mg, BM) * s.groups;
  const int splits = choose_splits(blocks, s.Kp, BK, ncols * s.cs_out, ws_elems);
  dim3 grid(ceil_div(ncols, BN), ceil_div(mg, BM), s.groups * splits);
  kernel<<<grid, threads, smem_bytes, st>>>(x, w, b, res, y, s, batch, act, slope, splits, splits > 1 ? ws : nullptr);
  CF_CHECK(cudaGetLastError());
  if (splits > 1) {
    const long long total = ncols * s.cs_out;
    splitk_reduce_nhwc_kernel<T, Y><<<ceil_div(total / 8, 256), 256, 0, st>>>(ws, splits, total, b, res, y,
                                                                             s.cs_out, s.cout, act, slope);
    CF_CHECK(cudaGetLastError());
  }
}

template <class T, int BM, int BN, int BK, int WARPS, int VEC, class Y = T>
inline void conv_nhwc(cudaStream_t st, const T* x, const T* w, const float* b, const T* res, Y* y,
                      const NhwcShape& s, int batch, int act, float slope, float* ws, long long ws_elems) {
  using C = NhwcTile<BM, BN, BK, WARPS>;
  conv_nhwc_prepare<T, BM, BN, BK, WARPS, VEC, Y>();
  launch_nhwc_gemm<BM, BN, C::BK>(conv_nhwc_kernel<T, BM, BN, BK, WARPS, VEC, Y>, C::NT, C::SMEM_BYTES, st, x, w, b,
                                  res, y, s, batch, act, slope, ws, ws_elems);
}

template <class T, class Y = T>
inline void gemv_nhwc(cudaStream_t st, const T* x, const T* w, const float* b, const T* res, Y* y,
                      const NhwcShape& s, int batch, int act, float slope, float*, long long) {
  gemv_nhwc_kernel<T, 8, Y><<<ceil_div(s.cs_out, 8), 256, 0, st>>>(x, w, b, res, y, s, batch, act, slope);
  CF_CHECK(cudaGetLastError());
}

}  // namespace cf
