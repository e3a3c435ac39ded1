// fp16 / bf16 implicit-GEMM convolution for sm_90a (Hopper) with warpgroup MMAs (wgmma.mma_async): the same
// interface, layouts and semantics as conv_nhwc_kernel (conv_nhwc.cuh: NhwcShape, packed T[rows][Kp] weights, NHWC
// x / y / residual, split-K partial sums, groups, Y = float for the logits layer, padded output channels written 0).
// Why: mma.sync on Hopper runs well below wgmma's rate; cuDNN's sm90 kernels (wgmma) ran resnet18's 3x3 layers at
// 400-750 TFLOP/s on an H200 where conv_nhwc tops out at ~250-290 (benchmarks/results/nhwc_tiles_*.md).
// Measured (H200, fp16, batch 256; benchmarks/results/wgmma_check_*.log, nhwc_tiles_wgmma_*.md): resnet18's 3x3
// layers of 128-512 channels 300-376 TFLOP/s (conv_nhwc 225-290, cuDNN 620-770); its 64-channel layers and the stem
// slower than conv_nhwc, which keeps them (nhwc.auto_wgmma).
// Design: 2 warpgroups (256 threads), both loading and both multiplying (no producer warps). Tile BM x BN x 64:
// BM 128 = two m64 warpgroup rows sharing the BN pixels, or BM 64 = one m64 row with the pixels split in two halves.
// Both operands are k-major in shared memory, rows of 64 elements = 128 bytes with wgmma's 128-byte swizzle (16-byte
// chunk q of row r at chunk q ^ (r % 8)), filled by 16-byte cp.async (weights: plain rows; pixels: conv_nhwc's
// im2col cursor, zero fill for padding) into a ring of STAGES k slices, STAGES - 2 of them in flight ahead: one
// wgmma batch stays in flight across the barrier (wait_group 1), so the slice refilled is the one read two
// iterations ago. Accumulators fp32 in registers (BM * BN / 256 per thread), staged in shared memory as Cs[n][m]
// for conv_nhwc's epilogue (nhwc_store_tile).
// Limits: 8-channel input pixels (VEC 8: the 4-channel stem keeps conv_nhwc), sm_90a only (other archs __trap();
// the generator launches it only in sm_90a builds, nhwc.auto_wgmma, and require_wgmma_code stops a rebuild for
// another arch at start-up).
#pragma once
#include "conv_nhwc.cuh"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ == 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define CF_WGMMA_ENABLED 1
#endif

namespace cf {

template <int BM, int BN, int STAGES_ = 4>
struct WgmmaTile {
  static constexpr int BK = 64, STAGES = STAGES_, NT = 256;  // BK 64 elements: one 128-byte swizzled row
  static constexpr int WG_M = BM / 64, WG_N = 2 / WG_M;  // warpgroups along m and n
  static constexpr int WN = BN / WG_N;                    // pixels per wgmma (its N)
  static constexpr int ACC = WN / 2;                      // fp32 accumulators per thread
  static constexpr int STAGE = (BM + BN) * BK;            // T elements per ring slice
  static constexpr int LDC = BM + 4;                      // staged Cs[n][m]; % 32 == 4: see the epilogue
  static constexpr int RING_BYTES = STAGES * STAGE * 2, OUT_BYTES = BN * LDC * 4;
  static constexpr int SMEM_BYTES = (RING_BYTES > OUT_BYTES ? RING_BYTES : OUT_BYTES) + 1024;  // + 1024 alignment
  // 2 CTAs per SM where their shared memory fits and 64 accumulators leave room in 128 registers (128x128x3)
  static constexpr int MIN_BLOCKS = SMEM_BYTES * 2 <= 227 * 1024 && ACC <= 64 ? 2 : 1;
  static_assert(BM == 64 || BM == 128, "BM: one or two m64 warpgroup rows");
  static_assert(WN == 128 || WN == 256, "wgmma N of 128 or 256");
  static_assert(STAGES >= 3, "one slice multiplied, one draining (wait_group 1), >= 1 in flight");
  static_assert(SMEM_BYTES <= 227 * 1024, "more shared memory than a CTA may have");
};

#ifdef CF_WGMMA_ENABLED
// Shared-memory matrix descriptor of a k-major tile with the 128-byte swizzle: 8-row core groups 1024 bytes apart
// (stride byte offset), leading byte offset unused for swizzled k-major tiles (1 by convention), swizzle mode 1.
// The tile base must be 1024-byte aligned (base offset 0); a k16 step moves the start address 32 bytes.
__device__ __forceinline__ uint64_t wgmma_desc(const void* smem) {
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  return static_cast<uint64_t>((addr & 0x3FFFF) >> 4) | (1ull << 16) | (static_cast<uint64_t>(1024 >> 4) << 32) |
         (1ull << 62);
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// cp.async writes go through the generic proxy, wgmma reads through the async proxy: each thread fences its landed
// copies before the barrier that publishes them.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// Keeps the compiler from moving accumulator reads or writes across a wgmma wait (the registers change
// asynchronously).
template <int N>
__device__ __forceinline__ void fence_acc(float (&acc)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(acc[i])::"memory");
}

// One m64nNk16 wgmma, D += A * B with D fp32 (N / 2 registers a thread), A and B from shared-memory descriptors,
// both k-major (no transpose), scale-d 1 (accumulate; the accumulators start at 0).
#define CF_WGMMA_N128(TYPE, acc, da, db) \
  asm volatile( \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n" \
      "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE "." TYPE " {" \
      "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15," \
      "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31," \
      "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47," \
      "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63" \
      "}, %64, %65, p, 1, 1, 0, 0;\n}\n" \
      : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3]), "+f"(acc[4]), "+f"(acc[5]), \
        "+f"(acc[6]), "+f"(acc[7]), "+f"(acc[8]), "+f"(acc[9]), "+f"(acc[10]), "+f"(acc[11]), \
        "+f"(acc[12]), "+f"(acc[13]), "+f"(acc[14]), "+f"(acc[15]), "+f"(acc[16]), "+f"(acc[17]), \
        "+f"(acc[18]), "+f"(acc[19]), "+f"(acc[20]), "+f"(acc[21]), "+f"(acc[22]), "+f"(acc[23]), \
        "+f"(acc[24]), "+f"(acc[25]), "+f"(acc[26]), "+f"(acc[27]), "+f"(acc[28]), "+f"(acc[29]), \
        "+f"(acc[30]), "+f"(acc[31]), "+f"(acc[32]), "+f"(acc[33]), "+f"(acc[34]), "+f"(acc[35]), \
        "+f"(acc[36]), "+f"(acc[37]), "+f"(acc[38]), "+f"(acc[39]), "+f"(acc[40]), "+f"(acc[41]), \
        "+f"(acc[42]), "+f"(acc[43]), "+f"(acc[44]), "+f"(acc[45]), "+f"(acc[46]), "+f"(acc[47]), \
        "+f"(acc[48]), "+f"(acc[49]), "+f"(acc[50]), "+f"(acc[51]), "+f"(acc[52]), "+f"(acc[53]), \
        "+f"(acc[54]), "+f"(acc[55]), "+f"(acc[56]), "+f"(acc[57]), "+f"(acc[58]), "+f"(acc[59]), \
        "+f"(acc[60]), "+f"(acc[61]), "+f"(acc[62]), "+f"(acc[63]) \
      : "l"(da), "l"(db), "n"(1))

#define CF_WGMMA_N256(TYPE, acc, da, db) \
  asm volatile( \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n" \
      "wgmma.mma_async.sync.aligned.m64n256k16.f32." TYPE "." TYPE " {" \
      "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15," \
      "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31," \
      "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47," \
      "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63," \
      "%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79," \
      "%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95," \
      "%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111," \
      "%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,%126,%127" \
      "}, %128, %129, p, 1, 1, 0, 0;\n}\n" \
      : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3]), "+f"(acc[4]), "+f"(acc[5]), \
        "+f"(acc[6]), "+f"(acc[7]), "+f"(acc[8]), "+f"(acc[9]), "+f"(acc[10]), "+f"(acc[11]), \
        "+f"(acc[12]), "+f"(acc[13]), "+f"(acc[14]), "+f"(acc[15]), "+f"(acc[16]), "+f"(acc[17]), \
        "+f"(acc[18]), "+f"(acc[19]), "+f"(acc[20]), "+f"(acc[21]), "+f"(acc[22]), "+f"(acc[23]), \
        "+f"(acc[24]), "+f"(acc[25]), "+f"(acc[26]), "+f"(acc[27]), "+f"(acc[28]), "+f"(acc[29]), \
        "+f"(acc[30]), "+f"(acc[31]), "+f"(acc[32]), "+f"(acc[33]), "+f"(acc[34]), "+f"(acc[35]), \
        "+f"(acc[36]), "+f"(acc[37]), "+f"(acc[38]), "+f"(acc[39]), "+f"(acc[40]), "+f"(acc[41]), \
        "+f"(acc[42]), "+f"(acc[43]), "+f"(acc[44]), "+f"(acc[45]), "+f"(acc[46]), "+f"(acc[47]), \
        "+f"(acc[48]), "+f"(acc[49]), "+f"(acc[50]), "+f"(acc[51]), "+f"(acc[52]), "+f"(acc[53]), \
        "+f"(acc[54]), "+f"(acc[55]), "+f"(acc[56]), "+f"(acc[57]), "+f"(acc[58]), "+f"(acc[59]), \
        "+f"(acc[60]), "+f"(acc[61]), "+f"(acc[62]), "+f"(acc[63]), "+f"(acc[64]), "+f"(acc[65]), \
        "+f"(acc[66]), "+f"(acc[67]), "+f"(acc[68]), "+f"(acc[69]), "+f"(acc[70]), "+f"(acc[71]), \
        "+f"(acc[72]), "+f"(acc[73]), "+f"(acc[74]), "+f"(acc[75]), "+f"(acc[76]), "+f"(acc[77]), \
        "+f"(acc[78]), "+f"(acc[79]), "+f"(acc[80]), "+f"(acc[81]), "+f"(acc[82]), "+f"(acc[83]), \
        "+f"(acc[84]), "+f"(acc[85]), "+f"(acc[86]), "+f"(acc[87]), "+f"(acc[88]), "+f"(acc[89]), \
        "+f"(acc[90]), "+f"(acc[91]), "+f"(acc[92]), "+f"(acc[93]), "+f"(acc[94]), "+f"(acc[95]), \
        "+f"(acc[96]), "+f"(acc[97]), "+f"(acc[98]), "+f"(acc[99]), "+f"(acc[100]), "+f"(acc[101]), \
        "+f"(acc[102]), "+f"(acc[103]), "+f"(acc[104]), "+f"(acc[105]), "+f"(acc[106]), "+f"(acc[107]), \
        "+f"(acc[108]), "+f"(acc[109]), "+f"(acc[110]), "+f"(acc[111]), "+f"(acc[112]), "+f"(acc[113]), \
        "+f"(acc[114]), "+f"(acc[115]), "+f"(acc[116]), "+f"(acc[117]), "+f"(acc[118]), "+f"(acc[119]), \
        "+f"(acc[120]), "+f"(acc[121]), "+f"(acc[122]), "+f"(acc[123]), "+f"(acc[124]), "+f"(acc[125]), \
        "+f"(acc[126]), "+f"(acc[127]) \
      : "l"(da), "l"(db), "n"(1))

template <class T>
struct WgmmaType;
template <>
struct WgmmaType<__half> {
  template <int N>
  static __device__ __forceinline__ void mma(float (&acc)[N / 2], uint64_t a, uint64_t b) {
    if constexpr (N == 128) {
      CF_WGMMA_N128("f16", acc, a, b);
    } else {
      CF_WGMMA_N256("f16", acc, a, b);
    }
  }
};
template <>
struct WgmmaType<__nv_bfloat16> {
  template <int N>
  static __device__ __forceinline__ void mma(float (&acc)[N / 2], uint64_t a, uint64_t b) {
    if constexpr (N == 128) {
      CF_WGMMA_N128("bf16", acc, a, b);
    } else {
      CF_WGMMA_N256("bf16", acc, a, b);
    }
  }
};
#endif

// Weight slice As[m][k] for rows m0.. and k0..k0+63, swizzled; rows past Mg and k past k_end are zero.
template <class T, int BM, int NT>
__device__ __forceinline__ void wgmma_load_weights(T* As, const T* wg, const T* wgt, const NhwcShape& s,
                                                   const NhwcGemm& t, int k0) {
  constexpr int CHUNKS = 8;  // 16-byte chunks per 64-element row
  static_assert(BM * CHUNKS % NT == 0, "weight chunks must split evenly over the threads");
#pragma unroll
  for (int i = 0; i < BM * CHUNKS / NT; ++i) {
    const int idx = threadIdx.x + i * NT, row = idx / CHUNKS, q = idx % CHUNKS, m = t.m0 + row, k = k0 + q * 8;
    const bool ok = m < t.Mg && k < t.k_end;
    const T* src = ok ? wg + static_cast<long long>(m) * s.Kp + k : wgt;
    cp_async_f32x4(reinterpret_cast<float*>(As + swizzle128(row, q)),
                   reinterpret_cast<const float*>(src), ok);
  }
}

template <class T, int BM, int BN, int STAGES, class Y>
__global__ void __launch_bounds__(256, WgmmaTile<BM, BN, STAGES>::MIN_BLOCKS)
conv_wgmma_kernel(const T* __restrict__ x, const T* __restrict__ wgt, const float* __restrict__ bias,
                  const T* __restrict__ residual, Y* __restrict__ y, NhwcShape s, int batch, int act, float slope,
                  int splits, float* __restrict__ partial) {
#ifdef CF_WGMMA_ENABLED
  using C = WgmmaTile<BM, BN, STAGES>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  // the swizzle pattern is a function of address bits 4-9: slices start on 1024-byte boundaries
  const uint32_t raw = static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw));
  unsigned char* base = smem_raw + ((1024 - (raw & 1023)) & 1023);
  T* smem = reinterpret_cast<T*>(base);
  const NhwcGemm t = nhwc_gemm(s, batch, splits, BM, BN, C::BK);
  const T* wg = wgt + static_cast<long long>(t.g) * t.Mg * s.Kp;
  NhwcGather<T, BN, C::NT, 8, C::BK, C::BK, true> gather;
  gather.init(s, t, x, threadIdx.x);

  const int warpgroup = threadIdx.x / 128;
  const int wm = (warpgroup % C::WG_M) * 64, wn = (warpgroup / C::WG_M) * C::WN;
  float acc[C::ACC];
#pragma unroll
  for (int i = 0; i < C::ACC; ++i) acc[i] = 0.f;

  auto load = [&](int st, int tile) {
    T* As = smem + st * C::STAGE;
    wgmma_load_weights<T, BM, C::NT>(As, wg, wgt, s, t, t.k_begin + tile * C::BK);
    gather.load(As + BM * C::BK, s, x);
  };
  auto compute = [&](int st) {
    const T* As = smem + st * C::STAGE;
    const uint64_t a = wgmma_desc(As + wm * C::BK), b = wgmma_desc(As + (BM + wn) * C::BK);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < C::BK / 16; ++kk)  // + 32 bytes = 2 in the descriptor's 16-byte units
      WgmmaType<T>::template mma<C::WN>(acc, a + 2 * kk, b + 2 * kk);
    wgmma_commit();
  };

  constexpr int AHEAD = C::STAGES - 2;  // slices in flight ahead of the one multiplied
  const int tiles = (t.k_end - t.k_begin + C::BK - 1) / C::BK;
#pragma unroll
  for (int st = 0; st < AHEAD; ++st) {
    if (st < tiles) load(st, st);
    cp_async_commit();
  }
  for (int kt = 0; kt < tiles; ++kt) {
    cp_async_wait<AHEAD - 1>();  // AHEAD + kt groups committed: slice kt has landed for this thread
    fence_proxy_async();
    __syncthreads();  // slice kt visible to all; every warpgroup's wgmma of slice kt - 2 done (wait<1> below)
    const int next = kt + AHEAD;
    if (next < tiles) load(next % C::STAGES, next);
    cp_async_commit();
    fence_acc(acc);
    compute(kt % C::STAGES);
    wgmma_wait<1>();
    fence_acc(acc);
  }
  wgmma_wait<0>();
  fence_acc(acc);
  cp_async_wait<0>();
  __syncthreads();  // the ring becomes Cs

  // wgmma m64nN accumulator layout: warp w of the warpgroup holds rows 16w..16w+15; per n8 block j, acc[4j],
  // acc[4j+1] -> (m = g, n = 8j + 2q, +1), acc[4j+2], acc[4j+3] -> (m = g + 8, same n), g = lane / 4, q = lane % 4.
  // Cs[n][m] stores of a warp hit bank (8q + g + const) % 32 (LDC % 32 == 4): all different.
  float* Cs = reinterpret_cast<float*>(base);
  const int lane = threadIdx.x % 32, g8 = lane / 4, q4 = lane % 4;
  const int m_row = wm + (threadIdx.x % 128) / 32 * 16 + g8;
#pragma unroll
  for (int j = 0; j < C::WN / 8; ++j) {
    float* c = Cs + (wn + j * 8 + 2 * q4) * C::LDC + m_row;
    c[0] = acc[4 * j];
    c[C::LDC] = acc[4 * j + 1];
    c[8] = acc[4 * j + 2];
    c[C::LDC + 8] = acc[4 * j + 3];
  }
  __syncthreads();
  nhwc_store_tile<BM, BN, C::NT, C::LDC>(Cs, s, t, y, bias, residual, act, slope, partial);
#else
  __trap();  // built for another arch: the generator never launches it there (nhwc.py, CF_NHWC_WGMMA)
#endif
}

// 1 when this device code is sm_90a (the only code in which conv_wgmma_kernel is not a trap); a template so that
// the header can be included by several translation units.
template <int = 0>
__global__ void wgmma_code_kernel(int* built) {
#ifdef CF_WGMMA_ENABLED
  *built = 1;
#else
  *built = 0;
#endif
}

// ---- host side --------------------------------------------------------------------------------------------------
// Once per device, at start-up (the network's constructor, outside graph capture): a project rebuilt for another
// arch (make ARCH=sm_80) or run on a non-Hopper GPU stops here with what to do, instead of trapping in a layer.
inline void require_wgmma_code() {
  static std::atomic<unsigned long long> checked{0};
  int dev = 0;
  CF_CHECK(cudaGetDevice(&dev));
  const unsigned long long bit = 1ULL << (dev & 63);
  if (checked.load() & bit) return;
  int* built = nullptr;
  int host = 0;
  CF_CHECK(cudaMalloc(&built, sizeof(int)));
  wgmma_code_kernel<><<<1, 1>>>(built);
  const cudaError_t launched = cudaGetLastError();
  if (launched == cudaSuccess) CF_CHECK(cudaMemcpy(&host, built, sizeof(int), cudaMemcpyDeviceToHost));
  CF_CHECK(cudaFree(built));
  if (launched != cudaSuccess || host != 1)
    throw std::runtime_error(
        "this network's wgmma layers run only on an H100/H200 with a build for sm_90a (make ARCH=sm_90a); for "
        "another GPU, regenerate it with CF_NHWC_WGMMA=0");
  checked.fetch_or(bit);
}

template <class T, int BM, int BN, int STAGES, class Y = T>
inline void conv_wgmma_prepare() {
  static std::atomic<unsigned long long> ready{0};
  require_wgmma_code();
  allow_smem_once(ready, conv_wgmma_kernel<T, BM, BN, STAGES, Y>, WgmmaTile<BM, BN, STAGES>::SMEM_BYTES);
}

// Same arguments as conv_nhwc (nhwc_ops.cuh callers); x must have 8-channel-aligned pixels (cin_g % 8 == 0).
template <class T, int BM, int BN, int STAGES, class Y = T>
inline void conv_wgmma(cudaStream_t st, const T* x, const T* w, const float* b, const T* res, Y* y,
                       const NhwcShape& s, int batch, int act, float slope, float* ws, long long ws_elems) {
  using C = WgmmaTile<BM, BN, STAGES>;
  conv_wgmma_prepare<T, BM, BN, STAGES, Y>();
  launch_nhwc_gemm<BM, BN, C::BK>(conv_wgmma_kernel<T, BM, BN, STAGES, Y>, C::NT, C::SMEM_BYTES, st, x, w, b, res, y,
                                  s, batch, act, slope, ws, ws_elems);
}

}  // namespace cf
