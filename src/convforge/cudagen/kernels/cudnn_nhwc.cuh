// cuDNN/cuBLAS backend, fp16 / bf16 (`--backend cudnn --precision fp16|bf16`): the convolutions and dense layers of
// the native NHWC forward pass (conv_nhwc.cuh, nhwc_ops.cuh), handed to cuDNN and cuBLAS; everything else (input
// conversion, pooling, unfused residual adds, maxout, softmax, convolutions cuDNN cannot express) stays native.
// Layout: T[N][H][W][cs] activations as on the native NHWC path (cs = channels rounded up to 8, padded channels 0),
// described to cuDNN as CUDNN_TENSOR_NHWC tensors of cs channels; weights packed once at start-up into cuDNN's NHWC
// filter layout T[cs_out][kh][kw][cin_g] (repack_weights with Kp = K; rows and channels past the real ones are 0);
// the bias of the fused call as T[cs_out]. Dense layers: the native packed weights T[cs_out][Kp] times the flat rows
// T[N][K] through cublasGemmEx (the output layer's logits written fp32, as on the native path).
// Precision: T operands, fp32 accumulation (convolution compute type CUDNN_DATA_FLOAT, CUBLAS_COMPUTE_32F), tensor
// cores (CUDNN_TENSOR_OP_MATH; cuBLAS default math without reduced-precision split-K sums).
// Epilogue: cudnnConvolutionBiasActivationForward (bias + ReLU, + the residual as z) where the layer's activation is
// ReLU and cuDNN accepts the call for this data type (tried once while planning, as in cudnn_ops.cuh); otherwise
// cudnnConvolutionForward and the NHWC epilogue below (fp32 bias, residual, any activation, padded channels 0).
// Algorithms: chosen and cached as for fp32 (cudnn_ops.cuh; cudnn_algos.txt keyed "fp16-nhwc" / "bf16-nhwc").
// A stride-1 stem over a 4-channel input stays native too: cuDNN runs it without tensor cores (cudnn_nhwc.py). A
// strided stem is rewritten space-to-depth at generation (s2d.py: 16 or 48 channels a pixel) and runs through cuDNN;
// CF_CUDNN_STEM=native runs it with the native kernel instead (cudnn_stem_native below): resnet18 224 px batch 256
// on an H200, 2.90 ms with the stem in cuDNN vs 3.23 ms native.
// Speed (H200, heuristics, median of 200 graph replays, 224 px, random weights; codegen_speed.md), batch 256:
// resnet18 2.85 ms (native fp16 5.06 ms, PyTorch eager fp16 autocast 8.34 ms), alexnet 0.91 ms (native 1.63 ms);
// batch 32 resnet18 0.53 / alexnet 0.21 ms; batch 1 0.17 / 0.11 ms. Per layer (--bench-layers): cuDNN's sm90 xmma
// kernels take a third to a half of the native kernels' time; resnet18's first 1x1 stride-2 shortcut gets a slow
// kernel from the heuristics (0.33 ms vs 0.08 native; CF_CUDNN_FIND=1 picks another algorithm, not timed since).
#pragma once
#include "conv_nhwc.cuh"
#include "cudnn_ops.cuh"

namespace cf {

template <class T>
struct CudaType;  // cuBLAS's name of an element type
template <>
struct CudaType<__half> {
  static constexpr cudaDataType_t value = CUDA_R_16F;
};
template <>
struct CudaType<__nv_bfloat16> {
  static constexpr cudaDataType_t value = CUDA_R_16BF;
};
template <>
struct CudaType<float> {
  static constexpr cudaDataType_t value = CUDA_R_32F;
};

// CF_CUDNN_STEM=native in the environment: the space-to-depth stem runs the native kernel rather than cuDNN, so one
// binary times both (read once per process).
inline bool cudnn_stem_native() {
  static const bool native = [] {
    const char* v = std::getenv("CF_CUDNN_STEM");
    return v != nullptr && std::strcmp(v, "native") == 0;
  }();
  return native;
}

// y = act(y + bias + residual) on 8 channels a thread, in place; channels >= cout become 0 (finish8).
template <class T, class Y>
__global__ void bias_res_act_nhwc_kernel(Y* y, const float* __restrict__ bias, const T* __restrict__ residual,
                                         long long total8, int cs, int cout, int act, float slope) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total8) return;
  const long long o = i * 8;
  float v[8];
  load8(y + o, v);
  finish8(v, o, static_cast<int>(o % cs), cout, y, bias, residual, act, slope);
}

template <class T, class Y>
inline void bias_res_act_nhwc(cudaStream_t st, Y* y, const float* bias, const T* res, long long elems, int cs,
                              int cout, int act, float slope) {
  if (!bias && !res && act == ACT_NONE) return;  // cuDNN / cuBLAS already wrote 0 to the padded channels
  const long long total8 = elems / 8;
  bias_res_act_nhwc_kernel<T, Y><<<ceil_div(total8, 256), 256, 0, st>>>(y, bias, res, total8, cs, cout, act, slope);
  CF_CHECK(cudaGetLastError());
}

// Descriptors, algorithm and fused-or-not of one NHWC convolution at batch n (the planning pass, eagerly).
template <class T>
inline void setup_nhwc(CudnnState& cs, CudnnLayer& l, int layer, const T* x, const T* w, const T* bias_t,
                       const T* res, T* y, const NhwcShape& s, int n, int act) {
  CF_CUDNN(cudnnCreateTensorDescriptor(&l.x));
  CF_CUDNN(cudnnCreateTensorDescriptor(&l.y));
  CF_CUDNN(cudnnCreateTensorDescriptor(&l.b));
  CF_CUDNN(cudnnCreateFilterDescriptor(&l.w));
  CF_CUDNN(cudnnCreateConvolutionDescriptor(&l.conv));
  CF_CUDNN(cudnnSetTensor4dDescriptor(l.x, CUDNN_TENSOR_NHWC, cs.dtype, n, s.cs_in, s.h, s.w));
  CF_CUDNN(cudnnSetTensor4dDescriptor(l.y, CUDNN_TENSOR_NHWC, cs.dtype, n, s.cs_out, s.ho, s.wo));
  CF_CUDNN(cudnnSetTensor4dDescriptor(l.b, CUDNN_TENSOR_NHWC, cs.dtype, 1, s.cs_out, 1, 1));
  CF_CUDNN(cudnnSetFilter4dDescriptor(l.w, cs.dtype, CUDNN_TENSOR_NHWC, s.cs_out, s.cin_g, s.kh, s.kw));
  CF_CUDNN(cudnnSetConvolution2dDescriptor(l.conv, s.ph, s.pw, s.sh, s.sw, s.dh, s.dw, CUDNN_CROSS_CORRELATION,
                                           CUDNN_DATA_FLOAT));
  CF_CUDNN(cudnnSetConvolutionGroupCount(l.conv, s.groups));
  CF_CUDNN(cudnnSetConvolutionMathType(l.conv, CUDNN_TENSOR_OP_MATH));
  int dn, dc, dh, dw;
  CF_CUDNN(cudnnGetConvolution2dForwardOutputDim(l.conv, l.x, l.w, &dn, &dc, &dh, &dw));
  if (dh != s.ho || dw != s.wo)  // cudnn_nhwc.py gives such layers the native kernel
    throw std::runtime_error("cuDNN layer " + std::to_string(layer) + ": output size differs from the model's");
  const std::pair<int, int> algo_math = cs.choice(l, layer, n, x, w, y);
  l.algo = static_cast<cudnnConvolutionFwdAlgo_t>(algo_math.first);
  CF_CUDNN(cudnnSetConvolutionMathType(l.conv, static_cast<cudnnMathType_t>(algo_math.second)));
  cs.try_fused(l, act, x, w, bias_t, res, y);  // kept where cuDNN runs it for this data type and shape
}

// One convolution on T NHWC activations (its layer index keys the algorithm choice). bias: fp32 [cout] for the
// epilogue kernel; bias_t: T [cs_out] for the fused call (nullptr: no fused call).
template <class T>
inline void conv_cudnn_nhwc(CudnnState& cs, int layer, cudaStream_t st, const T* x, const T* w, const float* bias,
                            const T* bias_t, const T* res, T* y, const NhwcShape& s, int n, int act, float slope) {
  auto key = std::make_pair(layer, n);
  auto it = cs.layers.find(key);
  if (it == cs.layers.end()) {
    if (!cs.planning) throw std::runtime_error("cuDNN layer " + std::to_string(layer) + " was not planned");
    it = cs.layers.emplace(key, CudnnLayer()).first;
    setup_nhwc(cs, it->second, layer, x, w, bias_t, res, y, s, n, act);
  }
  CudnnLayer& l = it->second;
  if (l.path == 1) {
    CF_CUDNN(cs.fused(l, x, w, bias_t, res, y));
    return;
  }
  float one = 1.f, zero = 0.f;
  CF_CUDNN(cudnnConvolutionForward(cs.dnn, &one, l.x, x, l.w, w, l.conv, l.algo, cs.ws, kCudnnWorkspaceBytes, &zero,
                                   l.y, y));
  bias_res_act_nhwc(st, y, bias, res, static_cast<long long>(n) * s.ho * s.wo * s.cs_out, s.cs_out, s.cout, act,
                    slope);
}

// One dense layer: y[n][cs_out] = x[n][K] W[cs_out][Kp]^T over the first K columns; in cuBLAS's column-major view
// y^T = W^T' x^T. Y = T, or float for the logits the output layer reads.
template <class T, class Y>
inline void dense_cublas_nhwc(CudnnState& cs, cudaStream_t st, const T* x, const T* w, const float* bias,
                              const T* res, Y* y, const NhwcShape& s, int n, int act, float slope) {
  float one = 1.f, zero = 0.f;
  CF_CUBLAS(cublasGemmEx(cs.blas, CUBLAS_OP_T, CUBLAS_OP_N, s.cs_out, n, s.K, &one, w, CudaType<T>::value, s.Kp, x,
                         CudaType<T>::value, s.cs_in, &zero, y, CudaType<Y>::value, s.cs_out, CUBLAS_COMPUTE_32F,
                         CUBLAS_GEMM_DEFAULT));
  bias_res_act_nhwc(st, y, bias, res, static_cast<long long>(n) * s.cs_out, s.cs_out, s.cout, act, slope);
}

}  // namespace cf
