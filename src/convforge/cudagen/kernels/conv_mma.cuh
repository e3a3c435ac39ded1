// Pipelined implicit-GEMM convolution (and dense layers) on tensor cores through mma.sync (sm_80+), fp32
// accumulation: `--precision tf32` (m16n8k8, operands rounded to TF32 with cvt.rna), `fp16` and `bf16` (m16n8k16,
// operands rounded to nearest). Layout: input/output fp32 NCHW; weights [cout][cin/groups][kh][kw], batch norm
// folded in. GEMM view and loaders: igemm.cuh. Tiles are staged as fp32 by cp.async (16-byte weight chunks, 4-byte
// im2col gathers) in a 3-stage ring; each warp reads its fragments straight from the fp32 tiles and converts in
// registers, so no separate conversion pass and no second shared buffer are needed.
// Block: BM (128 or 64) x 128 outputs, k slices of 32, 8 warps as 2 (m) x 4 (n), each owning (BM/2) x 32 outputs
// = BM/32 x 4 fragments of 16 x 8. Shared memory: 3 stages (BM 128: about 110 KB, two blocks per SM on H100/H200);
// the epilogue reuses it to stage the output tile, then stores coalesced NCHW rows (+ bias, + residual, act).
// Padded leading dimensions make every fragment read conflict-free: TF32 reads A[g][t] and B[t][g] (LDA % 32 == 4,
// LDB % 32 == 8); fp16/bf16 read A[g][2t..2t+1] as float2 and B[2t][g] (LDA % 32 == 8, LDB % 32 == 4).
// Replaces conv_tf32_kernel and conv_wmma_kernel (still selectable with CF_CONV_KERNELS=legacy). fp16/bf16 networks
// run conv_nhwc.cuh by default, this kernel with CF_CONV_KERNELS=nchw.
// Speed vs cuDNN: not measured yet; benchmarks/conv_kernels.py times it against the legacy kernels and PyTorch.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "igemm.cuh"
#include "splitk.cuh"

namespace cf {

struct MmaTf32 {
  static constexpr int kStep = 8, kPadA = 4, kPadB = 8;
};
struct MmaF16 {
  static constexpr int kStep = 16, kPadA = 8, kPadB = 4;
};
struct MmaBf16 {
  static constexpr int kStep = 16, kPadA = 8, kPadB = 4;
};

template <class Prec, int BM>
struct MmaCfg {
  static constexpr int BN = 128, BK = 32, NT = 256, STAGES = 3;
  static constexpr int LDA = BK + Prec::kPadA, LDB = BN + Prec::kPadB, LDC = BN + 8;
  static constexpr int STAGE = BM * LDA + BK * LDB;
  static constexpr int MI = BM / 32, NJ = 4;  // fragments per warp along m (16 rows) and n (8 columns)
  static constexpr int SMEM_FLOATS = STAGES * STAGE > BM * LDC ? STAGES * STAGE : BM * LDC;
  static constexpr int SMEM_BYTES = SMEM_FLOATS * 4;
  static_assert(BM == 64 || BM == 128, "BM is 64 or 128");
};

__device__ __forceinline__ uint32_t tf32_bits(float v) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(v));
  return r;
}

template <class Prec>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {  // lo goes to the low 16 bits (lower k index)
  if constexpr (std::is_same<Prec, MmaF16>::value) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
  } else {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
  }
}

// One 16 x 8 x kStep MMA: c += a * b (a row-major 16 x k, b column-major k x 8), fp32 accumulators.
template <class Prec>
__device__ __forceinline__ void mma_16x8(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (std::is_same<Prec, MmaTf32>::value) {
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else if constexpr (std::is_same<Prec, MmaF16>::value) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
#else
  __trap();  // never launched below sm_80: use_legacy_conv() routes those devices to the legacy kernels
#endif
}

// Zeroes a warp's MI x NJ m16n8 accumulator fragments (4 fp32 each).
template <int MI, int NJ>
__device__ __forceinline__ void zero_fragments(float (&acc)[MI][NJ][4]) {
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NJ; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;
}

// A fragment (16 x kStep) from As[m][k]; p points at row g (= lane / 4) of the fragment, column kk.
// PTX ISA fragment layouts: TF32 a0 (g, t) a1 (g+8, t) a2 (g, t+4) a3 (g+8, t+4); fp16/bf16 registers hold pairs
// (g, 2t..2t+1), (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..), with t = lane % 4.
template <class Prec, int LDA>
__device__ __forceinline__ void load_a_frag(uint32_t (&a)[4], const float* p, int t) {
  if constexpr (std::is_same<Prec, MmaTf32>::value) {
    a[0] = tf32_bits(p[t]);
    a[1] = tf32_bits(p[8 * LDA + t]);
    a[2] = tf32_bits(p[t + 4]);
    a[3] = tf32_bits(p[8 * LDA + t + 4]);
  } else {
    const float2 v0 = *reinterpret_cast<const float2*>(p + 2 * t);
    const float2 v1 = *reinterpret_cast<const float2*>(p + 8 * LDA + 2 * t);
    const float2 v2 = *reinterpret_cast<const float2*>(p + 2 * t + 8);
    const float2 v3 = *reinterpret_cast<const float2*>(p + 8 * LDA + 2 * t + 8);
    a[0] = pack2<Prec>(v0.x, v0.y);
    a[1] = pack2<Prec>(v1.x, v1.y);
    a[2] = pack2<Prec>(v2.x, v2.y);
    a[3] = pack2<Prec>(v3.x, v3.y);
  }
}

// B fragment (kStep x 8) from Bs[k][n]; q points at row kk, column g of the fragment.
// TF32: b0 (k = t, n = g), b1 (k = t+4); fp16/bf16: pairs (k = 2t..2t+1, g) and (k = 2t+8..2t+9, g).
template <class Prec, int LDB>
__device__ __forceinline__ void load_b_frag(uint32_t (&b)[2], const float* q, int t) {
  if constexpr (std::is_same<Prec, MmaTf32>::value) {
    b[0] = tf32_bits(q[t * LDB]);
    b[1] = tf32_bits(q[(t + 4) * LDB]);
  } else {
    b[0] = pack2<Prec>(q[(2 * t) * LDB], q[(2 * t + 1) * LDB]);
    b[1] = pack2<Prec>(q[(2 * t + 8) * LDB], q[(2 * t + 9) * LDB]);
  }
}

template <class Prec, int BM>
// (256, 2): at most 128 registers, so two blocks share an SM (ptxas, sm_90: no spills for fp16/bf16, 8 bytes
// for TF32; 168 registers and one block per SM without the bound).
__global__ void __launch_bounds__(256, 2)
conv_mma_kernel(const float* __restrict__ x, const float* __restrict__ wgt, const float* __restrict__ bias,
                const float* __restrict__ residual, float* __restrict__ y, ConvShape s, int batch, int act,
                float slope, int splits, float* __restrict__ partial, bool vec_w) {
  using C = MmaCfg<Prec, BM>;
  extern __shared__ __align__(16) float smem[];
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const ConvGemm t = conv_gemm(s, batch, splits, BM, C::BN, C::BK);
  const float* wg = wgt + static_cast<long long>(t.g) * t.cout_g * t.K;
  GatherB<C::BK, C::BN, C::NT, C::LDB> gather;
  gather.init(s, t, x, tid);

  const int wm = (warp / 4) * (BM / 2), wn = (warp % 4) * 32;
  const int g8 = lane / 4, t4 = lane % 4;
  float acc[C::MI][C::NJ][4];
  zero_fragments(acc);

  auto load = [&](int st, int tile) {
    float* As = smem + st * C::STAGE;
    load_w_rows<BM, C::BK, C::NT, C::LDA>(As, wg, t, t.k_begin + tile * C::BK, tid, vec_w);
    gather.load(As + BM * C::LDA, s, t.k_end, x);
  };
  auto compute = [&](int st) {
    const float* As = smem + st * C::STAGE;
    const float* Bs = As + BM * C::LDA;
#pragma unroll
    for (int kk = 0; kk < C::BK; kk += Prec::kStep) {
      uint32_t a[C::MI][4], b[C::NJ][2];
#pragma unroll
      for (int i = 0; i < C::MI; ++i) load_a_frag<Prec, C::LDA>(a[i], As + (wm + i * 16 + g8) * C::LDA + kk, t4);
#pragma unroll
      for (int j = 0; j < C::NJ; ++j) load_b_frag<Prec, C::LDB>(b[j], Bs + kk * C::LDB + wn + j * 8 + g8, t4);
#pragma unroll
      for (int i = 0; i < C::MI; ++i)
#pragma unroll
        for (int j = 0; j < C::NJ; ++j) mma_16x8<Prec>(acc[i][j], a[i], b[j]);
    }
  };
  const int tiles = t.k_end > t.k_begin ? (t.k_end - t.k_begin + C::BK - 1) / C::BK : 0;
  pipeline<C::STAGES>(tiles, load, compute);  // ends with a __syncthreads: the stages are free

  // Accumulators c0,c1 -> (row g, columns 2t, 2t+1), c2,c3 -> (row g+8, same columns); LDC % 32 == 8 keeps these
  // float2 stores conflict-free.
  float* Cs = smem;
#pragma unroll
  for (int i = 0; i < C::MI; ++i)
#pragma unroll
    for (int j = 0; j < C::NJ; ++j) {
      float* c = Cs + (wm + i * 16 + g8) * C::LDC + wn + j * 8 + 2 * t4;
      *reinterpret_cast<float2*>(c) = make_float2(acc[i][j][0], acc[i][j][1]);
      *reinterpret_cast<float2*>(c + 8 * C::LDC) = make_float2(acc[i][j][2], acc[i][j][3]);
    }
  __syncthreads();
  store_tile<BM, C::BN, C::NT, C::LDC>(Cs, t, s, batch, bias, residual, y, partial, act, slope, tid);
}

template <class Prec, int BM>
inline void conv_mma_prepare() {
  static std::atomic<unsigned long long> ready{0};
  allow_smem_once(ready, conv_mma_kernel<Prec, BM>, MmaCfg<Prec, BM>::SMEM_BYTES);
}

// Called by the generated network's constructor (outside graph capture); nothing to do for the legacy kernels.
template <class Prec>
inline void conv_mma_init() {
  if (use_legacy_conv()) return;
  conv_mma_prepare<Prec, 64>();
  conv_mma_prepare<Prec, 128>();
}

template <class Prec, int BM>
inline void launch_mma(cudaStream_t st, const float* x, const float* w, const float* b, const float* res, float* y,
                       const ConvShape& s, int batch, int act, float slope, float* ws, long long ws_elems) {
  using C = MmaCfg<Prec, BM>;
  conv_mma_prepare<Prec, BM>();
  const long long ncols = static_cast<long long>(batch) * s.ho * s.wo;
  const int cout_g = s.cout / s.groups, k = s.cin / s.groups * s.kh * s.kw;
  const long long blocks = static_cast<long long>(ceil_div(ncols, C::BN)) * ceil_div(cout_g, BM) * s.groups;
  const int splits = choose_splits(blocks, k, C::BK, ncols * s.cout, ws_elems);
  // 16-byte weight copies need every row start (m * K floats) and the base pointer 16-byte aligned.
  const bool vec_w = k % 4 == 0 && (reinterpret_cast<uintptr_t>(w) & 15) == 0;
  dim3 grid(ceil_div(ncols, C::BN), ceil_div(cout_g, BM), s.groups * splits);
  conv_mma_kernel<Prec, BM><<<grid, C::NT, C::SMEM_BYTES, st>>>(x, w, b, res, y, s, batch, act, slope, splits,
                                                                  splits > 1 ? ws : nullptr, vec_w);
  CF_CHECK(cudaGetLastError());
  if (splits > 1) splitk_reduce(st, ws, splits, b, res, y, s, batch, act, slope);
}

template <class Prec>
inline void conv_mma(cudaStream_t st, const float* x, const float* w, const float* b, const float* res, float* y,
                     const ConvShape& s, int batch, int act, float slope, float* ws, long long ws_elems) {
  if (igemm_wide_m(s))
    launch_mma<Prec, 128>(st, x, w, b, res, y, s, batch, act, slope, ws, ws_elems);
  else
    launch_mma<Prec, 64>(st, x, w, b, res, y, s, batch, act, slope, ws, ws_elems);
}

}  // namespace cf
