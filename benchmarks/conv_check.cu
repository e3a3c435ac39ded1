// conv_wgmma (kernels/conv_wgmma.cuh, sm_90a), conv_halo and conv_shift (sm_90a) against conv_nhwc (the known-correct
// mma.sync kernel, tile 128x128x32; its 128x128x64 tile is checked and timed too) on the same buffers: resnet18's
// convolutions at 224 px, its space-to-depth stem (s2d.py: 4x4 over 16 channels, 12 real) and a few edge shapes
// (Kp % 64 == 32, channels past a tile, groups, fp32 logits with padded channels, fewer than 64 real output
// channels), batch 256 / 32 / 1, fp16 and bf16, random inputs, weights and bias (a residual in some cases); then the
// time of every kernel per shape (CUDA events, median of 50 launches after 5 warm-ups) in ms and TFLOP/s. A kernel
// runs only on the shapes it supports (conv_halo, conv_shift: stride 1, 64 output channels). Exits 1 on any mismatch.
// Build and run on an H100/H200 (one file, < 1 min of GPU time):
//   nvcc -arch=sm_90a -O3 -std=c++17 -I src/convforge/cudagen/kernels benchmarks/conv_check.cu -o /tmp/conv_check
//   /tmp/conv_check            # all cases;  /tmp/conv_check quick: batch 32 only, no timing
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "conv_halo.cuh"
#include "conv_shift.cuh"
#include "conv_wgmma.cuh"

using namespace cf;

namespace {

struct Case {
  const char* name;
  int cin, hw, cout, k, stride, groups;
  bool residual, fp32_out;
  int pad = -1;  // -1: k / 2
};

// resnet18 at 224 px (its stem as the space-to-depth 4x4 conv), then edge shapes
const Case kCases[] = {
    {"s2d stem 4x4 16(12)->64 @115", 12, 115, 64, 4, 1, 1, false, false, 0},
    {"alexnet s2d stem 3x3 48->64 @57", 48, 57, 64, 3, 1, 1, false, false, 0},
    {"3x3 64->64 @56", 64, 56, 64, 3, 1, 1, false, false},
    {"3x3 64->64 @56 +res", 64, 56, 64, 3, 1, 1, true, false},
    {"3x3 s2 64->128 @56", 64, 56, 128, 3, 2, 1, false, false},
    {"1x1 s2 64->128 @56", 64, 56, 128, 1, 2, 1, false, false},
    {"3x3 128->128 @28", 128, 28, 128, 3, 1, 1, false, false},
    {"3x3 s2 128->256 @28", 128, 28, 256, 3, 2, 1, false, false},
    {"1x1 s2 128->256 @28", 128, 28, 256, 1, 2, 1, false, false},
    {"3x3 256->256 @14", 256, 14, 256, 3, 1, 1, false, false},
    {"1x1 s2 256->512 @14", 256, 14, 512, 1, 2, 1, false, false},
    {"3x3 512->512 @7", 512, 7, 512, 3, 1, 1, false, false},
    {"edge 3x3 24->40 @28 (Kp%64=32)", 24, 28, 40, 3, 1, 1, true, false},
    {"edge 3x3 g2 64->64 @14", 64, 14, 64, 3, 1, 2, false, false},
    {"edge 1x1 512->10 @7 fp32 out", 512, 7, 10, 1, 1, 1, false, true},
    {"edge 3x3 64->60 @9 +res", 64, 9, 60, 3, 1, 1, true, false},
    {"edge 3x3 32->64 @200x200 +res", 32, 200, 64, 3, 1, 1, true, false},
};

constexpr long long kWorkspaceFloats = 8LL << 20;  // as the generated network (network.cu.j2)

int round8(int v) { return (v + 7) / 8 * 8; }

__device__ float hash_uniform(long long i, unsigned seed) {  // [-1, 1)
  unsigned long long z = static_cast<unsigned long long>(i) * 0x9E3779B97F4A7C15ull + seed * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) / static_cast<float>(1ull << 23) - 1.f;
}

// x / residual: channel c of a pixel is c = i % cs, real below `real`. Weights: element i = (row i / cols, k =
// i % cols); k past K, rows past cout and channels (k % cin_g) past real_c are zero, as repack_weights leaves them.
template <class T>
__global__ void fill_kernel(T* p, long long n, unsigned seed, float scale, int cols, int real, int rows_real,
                            int K, int cin_g) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int col = static_cast<int>(i % cols), row = static_cast<int>(i / cols);
  const int c = K > 0 ? col % cin_g : col;
  const bool zero = c >= real || row >= rows_real || (K > 0 && col >= K);
  p[i] = Half2<T>::make(zero ? 0.f : scale * hash_uniform(i, seed));
}

__global__ void fill_f32_kernel(float* p, long long n, unsigned seed, float scale) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) p[i] = scale * hash_uniform(i, seed);
}

// stats[0] = max |ref|, stats[1] = max |diff|, stats[2] = count of non-finite values (either side); non-negative
// floats order as their bit patterns, so atomicMax on the ints is a float max.
template <class Y>
__global__ void compare_kernel(const Y* ref, const Y* got, long long n, unsigned* stats) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float r = to_float(ref[i]), g = to_float(got[i]);
  if (!isfinite(r) || !isfinite(g)) {
    atomicAdd(stats + 2, 1u);
    return;
  }
  atomicMax(stats, __float_as_uint(fabsf(r)));
  atomicMax(stats + 1, __float_as_uint(fabsf(r - g)));
}

float median_ms(const std::function<void()>& launch, cudaStream_t st) {
  cudaEvent_t a, b;
  CF_CHECK(cudaEventCreate(&a));
  CF_CHECK(cudaEventCreate(&b));
  for (int i = 0; i < 5; ++i) launch();
  std::vector<float> ms;
  for (int i = 0; i < 50; ++i) {
    CF_CHECK(cudaEventRecord(a, st));
    launch();
    CF_CHECK(cudaEventRecord(b, st));
    CF_CHECK(cudaEventSynchronize(b));  // host sync per timed launch
    float v = 0.f;
    CF_CHECK(cudaEventElapsedTime(&v, a, b));
    ms.push_back(v);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

struct Buffers {
  void *x = nullptr, *w = nullptr, *res = nullptr, *y_ref = nullptr, *y_new = nullptr;
  float *bias = nullptr, *ws = nullptr;
  unsigned* stats = nullptr;
};

NhwcShape make_shape(const Case& c) {
  const int cs_in = round8(c.cin), pad = c.pad >= 0 ? c.pad : c.k / 2;
  const int cin_g = c.groups == 1 ? cs_in : c.cin / c.groups;
  const int ho = (c.hw + 2 * pad - c.k) / c.stride + 1, K = c.k * c.k * cin_g;
  return NhwcShape{c.hw, c.hw, cs_in, cin_g, c.cout, round8(c.cout), ho, ho, c.k, c.k, c.stride, c.stride,
                   pad, pad, 1, 1, c.groups, K, (K + 31) / 32 * 32};
}

template <class T>
void fill_inputs(const Case& c, const NhwcShape& s, int batch, Buffers& b, cudaStream_t st) {
  auto blocks = [](long long n) { return ceil_div(n, 256); };
  const long long nx = static_cast<long long>(batch) * s.h * s.w * s.cs_in;
  const long long nw = static_cast<long long>(s.cs_out) * s.Kp;
  const long long ny = static_cast<long long>(batch) * s.ho * s.wo * s.cs_out;
  const int real_c = c.groups == 1 ? c.cin : s.cin_g;
  fill_kernel<T><<<blocks(nx), 256, 0, st>>>(static_cast<T*>(b.x), nx, 1, 1.f, s.cs_in, c.cin, 1 << 30, 0, 0);
  fill_kernel<T><<<blocks(nw), 256, 0, st>>>(static_cast<T*>(b.w), nw, 2, 1.f / std::sqrt(float(s.K)), s.Kp,
                                              real_c, c.cout, s.K, s.cin_g);
  fill_kernel<T><<<blocks(ny), 256, 0, st>>>(static_cast<T*>(b.res), ny, 3, 1.f, s.cs_out, c.cout, 1 << 30, 0, 0);
  fill_f32_kernel<<<blocks(s.cs_out), 256, 0, st>>>(b.bias, s.cs_out, 4, 0.5f);
  CF_CHECK(cudaGetLastError());
}

// The tiles compared with the reference (conv_nhwc 128x128x32): conv_nhwc's k-64 tile (what nhwc.deepen picks for
// 3x3 layers at batch 256 and 32; a check of the checker's tolerance too), then the wgmma tiles, BM x BN x STAGES.
template <class T, class Y>
using Launcher = void (*)(cudaStream_t, const T*, const T*, const float*, const T*, Y*, const NhwcShape&, int, int,
                          float, float*, long long);
template <class T, class Y>
struct Variant {
  const char* name;
  Launcher<T, Y> fn;
  bool (*fits)(const NhwcShape&) = nullptr;  // nullptr: every shape
};
template <class T, class Y>
std::vector<Variant<T, Y>> variants() {
  if constexpr (std::is_same<Y, float>::value) {
    return {{"wgmma 128x128x3", conv_wgmma<T, 128, 128, 3, Y>}};
  } else {
    return {{"conv_nhwc 128x128x64", conv_nhwc<T, 128, 128, 64, 8, 8, Y>},
            {"wgmma 128x128x3", conv_wgmma<T, 128, 128, 3, Y>},
            {"wgmma 128x128x4", conv_wgmma<T, 128, 128, 4, Y>},
            {"wgmma 128x256x4", conv_wgmma<T, 128, 256, 4, Y>},
            {"wgmma 64x256x4", conv_wgmma<T, 64, 256, 4, Y>},
            {"halo 3x3c64 128 4x2", conv_halo<T, 64, 3, 3, 128, 4, 2>, halo_fits<64, 3, 3>},
            {"halo 3x3c64 256 8x2 gres", conv_halo<T, 64, 3, 3, 256, 8, 2, false>, halo_fits<64, 3, 3>},
            {"halo 3x3c32 128 4x2", conv_halo<T, 32, 3, 3, 128, 4, 2>, halo_fits<32, 3, 3>},
            {"halo 4x4c16 128 4x2", conv_halo<T, 16, 4, 4, 128, 4, 2>, halo_fits<16, 4, 4>},
            {"halo 4x4c16 256 8x2", conv_halo<T, 16, 4, 4, 256, 8, 2>, halo_fits<16, 4, 4>},
            {"shift 3x3c64", conv_shift<T, 64, 3, 3>, halo_fits<64, 3, 3>},
            {"shift 3x3c32", conv_shift<T, 32, 3, 3>, halo_fits<32, 3, 3>},
            {"shift 4x4c16", conv_shift<T, 16, 4, 4>, halo_fits<16, 4, 4>},
            {"halo 3x3c48 128 4x2", conv_halo<T, 48, 3, 3, 128, 4, 2>, halo_fits<48, 3, 3>},
            {"shift 3x3c48", conv_shift<T, 48, 3, 3>, halo_fits<48, 3, 3>}};
  }
}

double tflops(const Case& c, const NhwcShape& s, int batch, float ms) {
  const double macs = static_cast<double>(batch) * s.ho * s.wo * c.cout * c.k * c.k * (c.cin / c.groups);
  return 2.0 * macs / (ms * 1e-3) / 1e12;
}

// Checks every variant of one case against conv_nhwc; returns the number of mismatches.
template <class T, class Y>
int run_case(const Case& c, int batch, const char* prec, float tol, bool timing, Buffers& b, cudaStream_t st) {
  const NhwcShape s = make_shape(c);
  fill_inputs<T>(c, s, batch, b, st);
  const T *x = static_cast<T*>(b.x), *w = static_cast<T*>(b.w), *res = c.residual ? static_cast<T*>(b.res) : nullptr;
  Y *y_ref = static_cast<Y*>(b.y_ref), *y_new = static_cast<Y*>(b.y_new);
  const long long ny = static_cast<long long>(batch) * s.ho * s.wo * s.cs_out;
  const int act = c.fp32_out ? ACT_NONE : ACT_RELU;
  auto ref = [&] { conv_nhwc<T, 128, 128, 32, 8, 8, Y>(st, x, w, b.bias, res, y_ref, s, batch, act, 0.f, b.ws,
                                                       kWorkspaceFloats); };
  CF_CHECK(cudaMemsetAsync(y_ref, 0xFF, ny * sizeof(Y), st));  // NaN: an element left unwritten fails
  ref();
  const float ref_ms = timing ? median_ms(ref, st) : 0.f;
  if (timing)
    std::printf("  %-36s %-4s b%-3d %-20s %8.4f ms %7.1f TFLOP/s\n", c.name, prec, batch, "conv_nhwc 128x128x32",
                ref_ms, tflops(c, s, batch, ref_ms));
  int bad = 0;
  for (const auto& v : variants<T, Y>()) {
    if (v.fits && !v.fits(s)) continue;
    auto run = [&] { v.fn(st, x, w, b.bias, res, y_new, s, batch, act, 0.f, b.ws, kWorkspaceFloats); };
    CF_CHECK(cudaMemsetAsync(y_new, 0xFF, ny * sizeof(Y), st));
    run();
    CF_CHECK(cudaMemsetAsync(b.stats, 0, 3 * sizeof(unsigned), st));
    compare_kernel<Y><<<ceil_div(ny, 256), 256, 0, st>>>(y_ref, y_new, ny, b.stats);
    CF_CHECK(cudaGetLastError());
    unsigned h[3];
    CF_CHECK(cudaMemcpyAsync(h, b.stats, sizeof(h), cudaMemcpyDeviceToHost, st));
    CF_CHECK(cudaStreamSynchronize(st));  // host sync: the verdict of this variant
    float max_ref, max_diff;
    std::memcpy(&max_ref, h, 4);
    std::memcpy(&max_diff, h + 1, 4);
    const float rel = max_diff / std::max(max_ref, 1e-20f);
    const bool ok = h[2] == 0 && rel <= tol && max_ref > 0.f;
    bad += !ok;
    const float ms = timing ? median_ms(run, st) : 0.f;
    std::printf("%s %-36s %-4s b%-3d %-20s rel %.2e (max|ref| %.3g, non-finite %u)", ok ? "  " : "!!", c.name, prec,
                batch, v.name, rel, max_ref, h[2]);
    if (timing) std::printf(" %8.4f ms %7.1f TFLOP/s (x%.2f)", ms, tflops(c, s, batch, ms), ref_ms / ms);
    std::printf("%s\n", ok ? "" : "  MISMATCH");
  }
  return bad;
}

template <class T>
int run_precision(const char* prec, float tol, const std::vector<int>& batches, bool timing, Buffers& b,
                  cudaStream_t st) {
  int bad = 0;
  for (int batch : batches)
    for (const Case& c : kCases) {
      bad += c.fp32_out ? run_case<T, float>(c, batch, prec, tol, timing, b, st)
                        : run_case<T, T>(c, batch, prec, tol, timing, b, st);
    }
  return bad;
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "quick";
  int dev = 0, major = 0, minor = 0;
  CF_CHECK(cudaGetDevice(&dev));
  CF_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  CF_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
  if (major != 9 || minor != 0) {
    std::fprintf(stderr, "conv_check needs an sm_90 GPU (H100/H200); this one is sm_%d%d\n", major, minor);
    return 2;
  }
  const std::vector<int> batches = quick ? std::vector<int>{32} : std::vector<int>{256, 32, 1};
  const long long max_x = 256LL * 200 * 200 * 32, max_w = 512LL * 4608, max_y = 256LL * 200 * 200 * 64;
  Buffers b;
  cudaStream_t st;
  try {
    CF_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    CF_CHECK(cudaMalloc(&b.x, max_x * 2));
    CF_CHECK(cudaMalloc(&b.w, max_w * 2));
    CF_CHECK(cudaMalloc(&b.res, max_y * 2));
    CF_CHECK(cudaMalloc(&b.y_ref, max_y * 4));
    CF_CHECK(cudaMalloc(&b.y_new, max_y * 4));
    CF_CHECK(cudaMalloc(&b.bias, 4096 * 4));
    CF_CHECK(cudaMalloc(&b.ws, kWorkspaceFloats * 4));
    CF_CHECK(cudaMalloc(&b.stats, 16));
    std::printf("rel = max |tile - ref| / max |ref|, ref = conv_nhwc 128x128x32, over the whole output (padding "
                "included); x = ref ms / tile ms\n");
    // tolerance: 2 units in the last place of T at the largest output (the fp32 sums differ only in order, then
    // each side rounds to T once: up to 1 ulp apart, 2^-10 of the value for fp16, 2^-7 for bf16)
    int bad = run_precision<__half>("fp16", 2e-3f, batches, !quick, b, st);
    bad += run_precision<__nv_bfloat16>("bf16", 1.6e-2f, batches, !quick, b, st);
    CF_CHECK(cudaDeviceSynchronize());
    std::printf(bad ? "FAIL: %d mismatches\n" : "OK: every tile matches conv_nhwc 128x128x32\n", bad);
    return bad ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "FAIL: %s\n", e.what());
    return 1;
  }
}
