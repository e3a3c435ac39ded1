// cuDNN/cuBLAS backend (`--backend cudnn`), shared state and the fp32/tf32 path. What runs where:
//  - fp32 / tf32 (this file): convolutions through cuDNN's legacy API (cudnnConvolutionForward, or
//    cudnnConvolutionBiasActivationForward where it applies: bias + ReLU, optionally + the residual as z), dense
//    layers through cuBLAS (cublasGemmEx). Everything else (pooling, leaky ReLU, maxout, softmax, unfused residual
//    adds, batch norm that could not be folded) reuses the native kernels.
//  - fp16 / bf16 (cudnn_nhwc.cuh, on this file's CudnnState): the native NHWC forward pass with its convolutions
//    through cuDNN and its dense layers through cuBLAS; every other layer keeps its native NHWC kernel.
// Layout: fp32 / tf32: fp32 NCHW activations, like the native backend (so those kernels are shared unchanged);
// weights [cout][cin/groups][kh][kw] = cuDNN's NCHW filter layout; dense weights [out][in] (row-major) ->
// cublasGemmEx with the transposed operand. fp16 / bf16: T NHWC activations with channels padded to 8 and weights
// repacked at start-up (cudnn_nhwc.cuh says how).
// Precision: fp32 sets CUDNN_FMA_MATH and CUBLAS_COMPUTE_32F (exact fp32; cuDNN's default math would allow TF32 on
// Ampere and later); tf32 allows tensor-op math (CUDNN_TENSOR_OP_MATH, CUBLAS_COMPUTE_32F_FAST_TF32); fp16 / bf16
// take CUDNN_DATA_HALF / CUDNN_DATA_BFLOAT16 operands with fp32 accumulation (compute type CUDNN_DATA_FLOAT,
// CUBLAS_COMPUTE_32F) on tensor cores.
// Algorithms: chosen per (layer, batch size) the first time a batch size is used, in an eager pass before the CUDA
// graph is recorded: cudnnGetConvolutionForwardAlgorithm_v7 heuristics, or, with CF_CUDNN_FIND=1 in the
// environment, cudnnFindConvolutionForwardAlgorithmEx (timed on the real buffers). Choices are cached in
// cudnn_algos.txt beside weights.bin (keyed by GPU name, cuDNN version, precision and layout, e.g. "fp16-nhwc", and
// heuristic or find; delete it to choose again). The workspace (kCudnnWorkspaceBytes) is allocated once; algorithms
// needing more are skipped. A layer cuDNN cannot express exactly (asymmetric 'same' padding of even kernels; fp16 /
// bf16 also: a convolution writing the fp32 logits, cudnn_nhwc.py) runs the native kernel instead.
// Speed (H200, heuristics, benchmarks/results/codegen_speed.md): resnet18 224px batch 256 fp32 32.5 ms (native
// 65.8 ms, PyTorch eager with TF32 off 25.2 ms), tf32 17.7 ms (PyTorch eager TF32 12.0 ms); batch 1 fp32 1.11 ms
// (native 0.63 ms), tf32 0.36 ms; digits-cnn batch 256 0.066 ms (native 0.150 ms, PyTorch eager 0.45 ms).
#pragma once
#include <cublas_v2.h>
#include <cudnn.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>

#include "common.cuh"
#include "conv_fp32.cuh"
#include "conv_tf32.cuh"

namespace cf {

#define CF_CUDNN(call)                                                                                      \
  do {                                                                                                      \
    cudnnStatus_t st_ = (call);                                                                             \
    if (st_ != CUDNN_STATUS_SUCCESS)                                                                        \
      throw std::runtime_error(std::string("cuDNN error in ") + #call + ": " + cudnnGetErrorString(st_));   \
  } while (0)

#define CF_CUBLAS(call)                                                                                     \
  do {                                                                                                      \
    cublasStatus_t st_ = (call);                                                                            \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                                       \
      throw std::runtime_error(std::string("cuBLAS error in ") + #call + ": " + cublasGetStatusString(st_)); \
  } while (0)

constexpr size_t kCudnnWorkspaceBytes = 256u << 20;  // convolution workspace, allocated once
constexpr size_t kCublasWorkspaceBytes = 32u << 20;  // cuBLAS workspace (set explicitly: graph capture)

// y = act(y + bias + residual), in place: the epilogue of an unfused cuDNN convolution or a cuBLAS dense layer.
__global__ void bias_res_act_kernel(float* y, const float* __restrict__ bias, const float* __restrict__ residual,
                                    long long total, int cout, int plane, int act, float slope) {
  long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  float v = y[i];
  if (bias) v += bias[(i / plane) % cout];
  if (residual) v += residual[i];
  y[i] = apply_act(v, act, slope);
}

struct CudnnLayer {  // one convolution at one batch size
  cudnnTensorDescriptor_t x = nullptr, y = nullptr, b = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  cudnnConvolutionFwdAlgo_t algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
  int path = 0;  // 0: cudnnConvolutionForward + epilogue kernel, 1: fused bias+ReLU(+z), 2: cuBLAS, 3: native
};

struct CudnnState {
  cudnnHandle_t dnn = nullptr;
  cublasHandle_t blas = nullptr;
  cudnnActivationDescriptor_t relu = nullptr;
  void* ws = nullptr;
  void* blas_ws = nullptr;
  bool tf32 = false, half = false, find = false, planning = false, cache_dirty = false;
  cudnnDataType_t dtype = CUDNN_DATA_FLOAT;  // of activations and weights: FLOAT, or HALF / BFLOAT16 (NHWC)
  int cursor = 0, batch = 0;
  std::string cache_path, cache_key;
  std::map<std::string, std::pair<int, int>> cache;  // "layer batch" -> (algorithm, math type)
  std::map<std::pair<int, int>, CudnnLayer> layers;  // (layer, batch) -> descriptors and choice

  // precision: fp32 | tf32 (NCHW, this file) | fp16 | bf16 (NHWC, cudnn_nhwc.cuh)
  void init(cudaStream_t stream, const std::string& dir, const std::string& precision) {
    tf32 = precision == "tf32";
    half = precision == "fp16" || precision == "bf16";
    dtype = precision == "fp16" ? CUDNN_DATA_HALF : precision == "bf16" ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
    const char* env = std::getenv("CF_CUDNN_FIND");
    find = env && env[0] == '1';
    CF_CUDNN(cudnnCreate(&dnn));
    CF_CUDNN(cudnnSetStream(dnn, stream));
    CF_CUBLAS(cublasCreate(&blas));
    CF_CUBLAS(cublasSetStream(blas, stream));  // resets the workspace: set ours after it
    CF_CHECK(cudaMalloc(&blas_ws, kCublasWorkspaceBytes));
    CF_CUBLAS(cublasSetWorkspace(blas, blas_ws, kCublasWorkspaceBytes));
    // fp16/bf16: tensor cores, with split-K sums kept in fp32 rather than the output type
    cublasMath_t blas_math = half ? static_cast<cublasMath_t>(CUBLAS_DEFAULT_MATH |
                                                              CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)
                                  : tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_PEDANTIC_MATH;
    CF_CUBLAS(cublasSetMathMode(blas, blas_math));
    CF_CHECK(cudaMalloc(&ws, kCudnnWorkspaceBytes));
    CF_CUDNN(cudnnCreateActivationDescriptor(&relu));
    CF_CUDNN(cudnnSetActivationDescriptor(relu, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0));
    int dev = 0;
    cudaDeviceProp prop;
    CF_CHECK(cudaGetDevice(&dev));
    CF_CHECK(cudaGetDeviceProperties(&prop, dev));
    std::string gpu = prop.name;
    for (char& c : gpu)
      if (c == ' ' || c == '\t') c = '_';
    cache_key = gpu + " cudnn" + std::to_string(cudnnGetVersion()) + " " + precision + (half ? "-nhwc" : "-nchw") +
                (find ? " find" : " heuristic");
    cache_path = dir + "/cudnn_algos.txt";
    read_cache();
  }

  void destroy() {
    for (auto& kv : layers) {
      CudnnLayer& l = kv.second;
      if (l.x) cudnnDestroyTensorDescriptor(l.x);
      if (l.y) cudnnDestroyTensorDescriptor(l.y);
      if (l.b) cudnnDestroyTensorDescriptor(l.b);
      if (l.w) cudnnDestroyFilterDescriptor(l.w);
      if (l.conv) cudnnDestroyConvolutionDescriptor(l.conv);
    }
    layers.clear();
    if (relu) cudnnDestroyActivationDescriptor(relu);
    if (dnn) cudnnDestroy(dnn);
    if (blas) cublasDestroy(blas);
    cudaFree(ws);
    cudaFree(blas_ws);
  }

  // Cache file: a first line naming the GPU, cuDNN version and mode, then "layer batch algorithm math" lines.
  void read_cache() {
    std::ifstream f(cache_path);
    std::string first;
    if (!f || !std::getline(f, first) || first != cache_key) return;
    int layer, batch, algo, math;
    while (f >> layer >> batch >> algo >> math)
      cache[std::to_string(layer) + " " + std::to_string(batch)] = std::make_pair(algo, math);
  }

  void write_cache() {  // best effort: a read-only folder only costs the choice next time
    std::string tmp = cache_path + ".tmp" + std::to_string(reinterpret_cast<uintptr_t>(this));
    {
      std::ofstream f(tmp);
      if (!f) return;
      f << cache_key << "\n";
      for (auto& kv : cache) f << kv.first << " " << kv.second.first << " " << kv.second.second << "\n";
      if (!f) return;
    }
    std::rename(tmp.c_str(), cache_path.c_str());
    cache_dirty = false;
  }

  // The eager pass before a batch size's graph is recorded: each conv call then sets up its layer.
  void begin_plan(int n) {
    planning = true;
    cursor = 0;
    batch = n;
  }
  void end_plan() {
    planning = false;
    if (cache_dirty) write_cache();
  }
  void begin_pass(int n) {
    cursor = 0;
    batch = n;
  }

  bool acceptable(cudnnMathType_t math, cudnnStatus_t status, size_t memory) const {
    if (status != CUDNN_STATUS_SUCCESS || memory > kCudnnWorkspaceBytes) return false;
    // fp16 inside: neither fp32 nor tf32, and a narrower exponent than bf16
    if (math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) return dtype == CUDNN_DATA_HALF;
    return tf32 || half || math != CUDNN_TENSOR_OP_MATH;
  }

  // The first acceptable result (fastest for Find, most promising for the heuristics), and its math type.
  std::pair<int, int> choose(CudnnLayer& l, const void* x, const void* w, void* y) {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int got = 0;
    if (find)
      CF_CUDNN(cudnnFindConvolutionForwardAlgorithmEx(dnn, l.x, x, l.w, w, l.conv, l.y, y,
                                                      CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, perf, ws,
                                                      kCudnnWorkspaceBytes));
    else
      CF_CUDNN(cudnnGetConvolutionForwardAlgorithm_v7(dnn, l.x, l.w, l.conv, l.y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT,
                                                      &got, perf));
    for (int i = 0; i < got; ++i)
      if (acceptable(perf[i].mathType, perf[i].status, perf[i].memory))
        return std::make_pair(static_cast<int>(perf[i].algo), static_cast<int>(perf[i].mathType));
    if (half)  // the algorithm cuDNN implements for NHWC fp16/bf16 whatever the shape
      return std::make_pair(static_cast<int>(CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM),
                            static_cast<int>(CUDNN_TENSOR_OP_MATH));
    return std::make_pair(static_cast<int>(CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM), static_cast<int>(CUDNN_FMA_MATH));
  }

  // y = relu(conv(x) + bias + res) in one call: the residual is cuDNN's z (weight 1); without one, z = y, weight 0.
  cudnnStatus_t fused(const CudnnLayer& l, const void* x, const void* w, const void* bias, const void* res,
                      void* y) const {
    float one = 1.f, zero = 0.f;
    return cudnnConvolutionBiasActivationForward(dnn, &one, l.x, x, l.w, w, l.conv, l.algo, ws, kCudnnWorkspaceBytes,
                                                 res ? &one : &zero, l.y, res ? res : y, l.b, bias, relu, l.y, y);
  }

  // Path 1 (the fused call) where the layer ends in ReLU and cuDNN runs the call for this case, else path 0; tried
  // once, eagerly, while planning.
  void try_fused(CudnnLayer& l, int act, const void* x, const void* w, const void* bias, const void* res,
                 void* y) const {
    l.path = 0;
    if (act != ACT_RELU || !bias) return;
    if (fused(l, x, w, bias, res, y) == CUDNN_STATUS_SUCCESS) l.path = 1;
    cudaGetLastError();  // a refused fused call leaves nothing behind that matters
  }

  // The (algorithm, math type) of a layer at batch n: from cudnn_algos.txt, else chosen now and cached.
  std::pair<int, int> choice(CudnnLayer& l, int layer, int n, const void* x, const void* w, void* y) {
    std::string key = std::to_string(layer) + " " + std::to_string(n);
    auto hit = cache.find(key);
    if (hit == cache.end()) {
      hit = cache.emplace(key, choose(l, x, w, y)).first;
      cache_dirty = true;
    }
    return hit->second;
  }

  void setup(CudnnLayer& l, int layer, const float* x, const float* w, const float* bias, const float* res, float* y,
             const ConvShape& s, int n, int act) {
    if (s.h == 1 && s.w == 1 && s.kh == 1 && s.kw == 1 && s.groups == 1) {
      l.path = 2;
      return;
    }
    CF_CUDNN(cudnnCreateTensorDescriptor(&l.x));
    CF_CUDNN(cudnnCreateTensorDescriptor(&l.y));
    CF_CUDNN(cudnnCreateTensorDescriptor(&l.b));
    CF_CUDNN(cudnnCreateFilterDescriptor(&l.w));
    CF_CUDNN(cudnnCreateConvolutionDescriptor(&l.conv));
    CF_CUDNN(cudnnSetTensor4dDescriptor(l.x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, s.cin, s.h, s.w));
    CF_CUDNN(cudnnSetTensor4dDescriptor(l.y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, s.cout, s.ho, s.wo));
    CF_CUDNN(cudnnSetTensor4dDescriptor(l.b, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, s.cout, 1, 1));
    CF_CUDNN(cudnnSetFilter4dDescriptor(l.w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, s.cout, s.cin / s.groups, s.kh,
                                        s.kw));
    CF_CUDNN(cudnnSetConvolution2dDescriptor(l.conv, s.ph, s.pw, s.sh, s.sw, s.dh, s.dw, CUDNN_CROSS_CORRELATION,
                                             CUDNN_DATA_FLOAT));
    CF_CUDNN(cudnnSetConvolutionGroupCount(l.conv, s.groups));
    CF_CUDNN(cudnnSetConvolutionMathType(l.conv, tf32 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));
    int dn, dc, dh, dw;
    CF_CUDNN(cudnnGetConvolution2dForwardOutputDim(l.conv, l.x, l.w, &dn, &dc, &dh, &dw));
    if (dh != s.ho || dw != s.wo) {  // asymmetric padding: cuDNN pads both sides alike
      l.path = 3;
      return;
    }
    std::pair<int, int> algo_math = choice(l, layer, n, x, w, y);
    l.algo = static_cast<cudnnConvolutionFwdAlgo_t>(algo_math.first);
    // fp32 stays on FMA math whatever the choice (cuDNN's default math allows TF32); tf32 takes the algorithm's.
    cudnnMathType_t math = tf32 ? static_cast<cudnnMathType_t>(algo_math.second) : CUDNN_FMA_MATH;
    CF_CUDNN(cudnnSetConvolutionMathType(l.conv, math));
    try_fused(l, act, x, w, bias, res, y);
  }
};

inline void bias_res_act(cudaStream_t st, float* y, const float* bias, const float* res, const ConvShape& s, int n,
                         int act, float slope) {
  if (!bias && !res && act == ACT_NONE) return;
  long long total = static_cast<long long>(n) * s.cout * s.ho * s.wo;
  bias_res_act_kernel<<<ceil_div(total, 256), 256, 0, st>>>(y, bias, res, total, s.cout, s.ho * s.wo, act, slope);
  CF_CHECK(cudaGetLastError());
}

// One convolution or dense layer. In the planning pass the layer is set up (and run); afterwards it is replayed.
inline void conv_cudnn(CudnnState& cs, cudaStream_t st, const float* x, const float* w, const float* b,
                       const float* res, float* y, const ConvShape& s, int n, int act, float slope, float* ws,
                       long long ws_elems) {
  int layer = cs.cursor++;
  auto key = std::make_pair(layer, n);
  auto it = cs.layers.find(key);
  if (it == cs.layers.end()) {
    if (!cs.planning) throw std::runtime_error("cuDNN layer " + std::to_string(layer) + " was not planned");
    it = cs.layers.emplace(key, CudnnLayer()).first;
    cs.setup(it->second, layer, x, w, b, res, y, s, n, act);
  }
  CudnnLayer& l = it->second;
  float one = 1.f, zero = 0.f;
  if (l.path == 3) {
    (cs.tf32 ? conv_tf32 : conv_fp32)(st, x, w, b, res, y, s, n, act, slope, ws, ws_elems);
  } else if (l.path == 2) {  // y[n][out] = x[n][in] W[out][in]^T, column-major: y^T = W^T' x^T
    CF_CUBLAS(cublasGemmEx(cs.blas, CUBLAS_OP_T, CUBLAS_OP_N, s.cout, n, s.cin, &one, w, CUDA_R_32F, s.cin, x,
                           CUDA_R_32F, s.cin, &zero, y, CUDA_R_32F, s.cout,
                           cs.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    bias_res_act(st, y, b, res, s, n, act, slope);
  } else if (l.path == 1) {
    CF_CUDNN(cs.fused(l, x, w, b, res, y));
  } else {
    CF_CUDNN(cudnnConvolutionForward(cs.dnn, &one, l.x, x, l.w, w, l.conv, l.algo, cs.ws, kCudnnWorkspaceBytes,
                                     &zero, l.y, y));
    bias_res_act(st, y, b, res, s, n, act, slope);
  }
}

}  // namespace cf
