// convforge generated-code runtime: error checks, activations, launch helpers.
// Layout: every activation tensor is fp32 NCHW, contiguous; dense inputs/outputs are N x features.
// Speed: no kernels here.
#pragma once
#include <cuda_runtime.h>
#include <cstdio>
#include <stdexcept>
#include <string>

namespace cf {

// Every CUDA call is checked; a failure becomes one line naming the call (the program prints it, exits 1).
#define CF_CHECK(call)                                                                              \
  do {                                                                                              \
    cudaError_t err_ = (call);                                                                      \
    if (err_ != cudaSuccess)                                                                        \
      throw std::runtime_error(std::string("CUDA error in ") + #call + ": " + cudaGetErrorString(err_)); \
  } while (0)

enum Act : int { ACT_NONE = 0, ACT_RELU = 1, ACT_LEAKY = 2, ACT_SIGMOID = 3, ACT_TANH = 4 };

__device__ __forceinline__ float apply_act(float v, int act, float slope) {
  if (act == ACT_RELU) return v > 0.f ? v : 0.f;
  if (act == ACT_LEAKY) return v > 0.f ? v : v * slope;
  if (act == ACT_SIGMOID) return 1.f / (1.f + expf(-v));
  if (act == ACT_TANH) return tanhf(v);
  return v;
}

inline int ceil_div(long long a, long long b) { return static_cast<int>((a + b - 1) / b); }

// Shape of one convolution (a dense layer is a 1x1 convolution on a 1x1 image).
struct ConvShape {
  int cin, h, w;         // input channels and size
  int cout, ho, wo;      // output channels and size
  int kh, kw, sh, sw;    // kernel and stride
  int ph, pw, dh, dw;    // padding (top/left) and dilation
  int groups;
};

}  // namespace cf
