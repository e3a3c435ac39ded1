// C entry point for `convforge bench conv`: the generated network's fp32 convolution, callable through ctypes.
// Layout: x fp32 NCHW, w [k][c/groups][r][s] (PyTorch order), y fp32 NCHW, all contiguous device memory; no bias,
// no residual, no activation (a plain cross-correlation, as F.conv2d). Square stride and padding, dilation 1.
// Launch: the generator's own dispatcher cf::conv_fp32 (conv_fp32.cuh, included, not copied), so the kernel (the
// pipelined FMA kernel of conv_ffma.cuh, the legacy one when CF_CONV_KERNELS=legacy, or the GEMV kernel for a dense
// 1x1 layer at batch <= 8) and the split-K count are chosen exactly as in a generated network; the caller passes
// a workspace of ws_elems floats (the network uses 8 Mi).
// Runs on the stream passed in (torch's current stream); asynchronous, no host sync.
// Speed vs cuDNN: per layer not yet measured (this is what the codegen column of `convforge bench conv` measures);
// whole networks in conv_fp32.cuh (H100, resnet18 224px batch 256: 4.7x slower than cuDNN with TF32).
#include <cstring>
#include <exception>

#include "conv_fp32.cuh"

namespace {

void write_error(char* err, int err_len, const char* msg) {
  if (err == nullptr || err_len <= 0) return;
  std::strncpy(err, msg, static_cast<size_t>(err_len) - 1);
  err[err_len - 1] = '\0';
}

}  // namespace

// Returns 0 on success; otherwise 1 and a one-line reason in err (a CUDA error is never thrown across the C ABI).
extern "C" int cf_bench_conv_fp32(const float* x, const float* w, float* y, float* ws, long long ws_elems, int n,
                                  int c, int h, int wd, int k, int r, int s, int stride, int padding, int groups,
                                  void* stream, char* err, int err_len) {
  try {
    cf::ConvShape shape{};
    shape.cin = c;
    shape.h = h;
    shape.w = wd;
    shape.cout = k;
    shape.kh = r;
    shape.kw = s;
    shape.sh = shape.sw = stride;
    shape.ph = shape.pw = padding;
    shape.dh = shape.dw = 1;
    shape.groups = groups;
    shape.ho = (h + 2 * padding - r) / stride + 1;
    shape.wo = (wd + 2 * padding - s) / stride + 1;
    cf::conv_fp32(static_cast<cudaStream_t>(stream), x, w, nullptr, nullptr, y, shape, n, cf::ACT_NONE, 0.f, ws,
                  ws_elems);
    return 0;
  } catch (const std::exception& e) {
    write_error(err, err_len, e.what());
    return 1;
  }
}
