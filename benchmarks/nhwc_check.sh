#!/usr/bin/env bash
# fp16/bf16 NHWC layers on the GPU machine, in one call of under 8 minutes (H200, 16 cores; the tests are cut at
# 6 minutes, the benchmark at 7 min 50 s from the start):
#   1. pytest -m gpu tests/cudagen -x: every zoo model's generated program against PyTorch (fp32; fp16 with the NHWC
#      layers; bf16), the CF_CONV_KERNELS=nchw and legacy kernels of the same binaries, compute-sanitizer memcheck;
#   2. benchmarks/conv_kernels.py: alexnet and resnet18 at 224 px, fp16 and bf16, batch 1 / 32 / 256: the NHWC
#      layers (`new`) vs the fp32-NCHW pipelined kernels (`nchw`) vs PyTorch eager autocast, with correctness checks.
# The benchmark's projects are built in the background (nice) while the tests run, so step 2 mostly times.
#
#   OUT=DIR bash benchmarks/nhwc_check.sh      # OUT defaults to benchmarks/results
#   COMPILE=1 ...                              # also torch.compile (default mode) at batch 256: minutes more
#
# Writes under $OUT: nhwc_gpu_tests.log / .jsonl (per-case max |diff| and agreement), conv_kernels.md / .json / .log,
# nhwc_bench_build.log. Exit status 0 only when the tests and every benchmark check pass.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results}"
WORK="${WORKDIR:-/tmp/convforge_nhwc_bench}"
mkdir -p "$OUT"
export PYTHONPATH=src
export CONVFORGE_CODEGEN_RESULTS="$OUT/nhwc_gpu_tests.jsonl"
BENCH=(benchmarks/conv_kernels.py --out "$OUT" --models alexnet resnet18 --precisions fp16 bf16 --kernels new nchw
  --batches 1 32 256 --iters 30 --workdir "$WORK")
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }

nice -n 10 python3 "${BENCH[@]}" --build-only --jobs 4 > "$OUT/nhwc_bench_build.log" 2>&1 &
build_pid=$!

timeout 360 python3 -m pytest -m gpu tests/cudagen -x -q -p no:cacheprovider 2>&1 | tee "$OUT/nhwc_gpu_tests.log"
tests_rc=${PIPESTATUS[0]}
echo "gpu tests: exit $tests_rc after $(elapsed) s" | tee -a "$OUT/nhwc_gpu_tests.log"

wait "$build_pid"
echo "benchmark builds: exit $? after $(elapsed) s ($(tail -n 1 "$OUT/nhwc_bench_build.log"))"
extra=()
if [ "${COMPILE:-0}" = 1 ]; then extra=(--compile-batches 256); fi
left=$(( 470 - $(elapsed) ))
timeout $(( left > 60 ? left : 60 )) python3 "${BENCH[@]}" ${extra[@]+"${extra[@]}"} 2>&1 | tee "$OUT/conv_kernels.log"
bench_rc=${PIPESTATUS[0]}
echo "gpu tests exit $tests_rc, benchmark exit $bench_rc, total $(elapsed) s"
[ "$tests_rc" = 0 ] && [ "$bench_rc" = 0 ]
