#!/usr/bin/env bash
# One command for the day a GPU is lent (method: tests/gpu/METHOD.md):
#   1. build the kernel library for this GPU + the tests     4. real-model block fixtures (Set5 x2, 5 blocks)
#   2. kernel tests: emulated and native (ctest), plugin      5. benchmark sparse kernels vs dense PyTorch/cuDNN FP16
#      GPU harness (when TensorRT headers are present)
#   3. native tests under compute-sanitizer (4 tools)         6. append the results to docs/BENCHMARKS.md
# Environment: BUILD (build dir), OUT_DIR (results), SHARED, WEIGHTS, SET5, FIXTURE_DIR (pre-made fixtures),
#              ITERS (timed iterations, default 300), PYTHON, BENCH_MD, SKIP_SANITIZER=1, CUDA_HOME,
#              TensorRT_ROOT, ONNXRUNTIME_ROOT (default: ../shared/third_party/...).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build-gpu}
OUT_DIR=${OUT_DIR:-$BUILD/gpu-results}
SHARED=${SHARED:-$ROOT/../shared}
WEIGHTS=${WEIGHTS:-$SHARED/weights/smsr_x2_official.pt}
SET5=${SET5:-$SHARED/data/Set5/LR_bicubic/X2}
FIXTURE_DIR=${FIXTURE_DIR:-$OUT_DIR/fixtures}
ITERS=${ITERS:-300}
PYTHON=${PYTHON:-python3}
BENCH_MD=${BENCH_MD:-$ROOT/docs/BENCHMARKS.md}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
mkdir -p "$OUT_DIR" "$FIXTURE_DIR"
LOG=$OUT_DIR/run.log
: > "$LOG"
say() { echo "== $*" | tee -a "$LOG"; }
fail() { echo "run.sh: $*" | tee -a "$LOG" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------- 0. device
command -v nvidia-smi > /dev/null || fail "nvidia-smi not found: this script needs an NVIDIA GPU (CPU machines: ctest runs the emulated kernels)"
DEVICE=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
CC=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')
DRIVER=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1)
NVCC=${NVCC:-$CUDA_HOME/bin/nvcc}
[ -x "$NVCC" ] || NVCC=$(command -v nvcc || true)
[ -n "$NVCC" ] || fail "nvcc not found (set CUDA_HOME or NVCC)"
say "device: $DEVICE (sm_$CC), driver $DRIVER, $("$NVCC" --version | tail -1)"

# ---------------------------------------------------------------------------------------------- 1. build
say "configure + build ($BUILD, sm_$CC)"
# TensorRT headers (for the plugin and its GPU harness) and ONNX Runtime headers, when present.
TensorRT_ROOT=${TensorRT_ROOT:-$SHARED/third_party/tensorrt-10.14}
ONNXRUNTIME_ROOT=${ONNXRUNTIME_ROOT:-$SHARED/third_party/onnxruntime-1.21}
extra=()
[ -d "$TensorRT_ROOT" ] && extra+=("-DTensorRT_ROOT=$TensorRT_ROOT")
[ -d "$ONNXRUNTIME_ROOT" ] && extra+=("-DONNXRUNTIME_ROOT=$ONNXRUNTIME_ROOT")
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER="$NVCC" \
      -DSMSR_CUDA_ARCHITECTURES="$CC" -DSMSR_GPU_TESTS=ON ${extra[@]+"${extra[@]}"} >> "$LOG" 2>&1 \
  || fail "cmake configure failed (see $LOG)"
cmake --build "$BUILD" -j "$(nproc)" >> "$LOG" 2>&1 || fail "build failed (see $LOG)"

# ---------------------------------------------------------------------------------------------- 2. tests
say "kernel tests (emulated + native) via ctest"
ctest --test-dir "$BUILD" -R "smsr_kernels|smsr_simt" --output-on-failure > "$OUT_DIR/ctest.txt" 2>&1 \
  || fail "ctest failed: $OUT_DIR/ctest.txt"
tail -3 "$OUT_DIR/ctest.txt" | tee -a "$LOG"
NATIVE=$BUILD/plugins/smsrSparseBlock/kernels/smsr_kernels_native_test
BENCH=$BUILD/plugins/smsrSparseBlock/kernels/smsr_kernels_bench
"$NATIVE" > "$OUT_DIR/native_test.txt" 2>&1 || fail "native kernel test failed: $OUT_DIR/native_test.txt"
say "native kernel test passed on $DEVICE"
# TensorRT plugin harness (plugins/smsrSparseBlock/tests): plugin enqueue vs the kernel library vs a CPU evaluation.
HARNESS=$(find "$BUILD" -name smsr_trt_plugin_gpu_harness -type f -perm -u+x | head -1)
PLUGIN_SO=$(find "$BUILD" -name libsmsr_trt_plugin.so | head -1)
if [ -n "$HARNESS" ] && [ -n "$PLUGIN_SO" ]; then
  "$HARNESS" "$PLUGIN_SO" > "$OUT_DIR/plugin_harness.txt" 2>&1 || fail "plugin GPU harness failed: $OUT_DIR/plugin_harness.txt"
  say "TensorRT plugin GPU harness passed"
else
  say "TensorRT plugin not built (no TensorRT headers): plugin GPU harness skipped"
fi

# ---------------------------------------------------------------------------------------------- 3. sanitizer
SAN=${COMPUTE_SANITIZER:-$CUDA_HOME/bin/compute-sanitizer}
[ -x "$SAN" ] || SAN=$(command -v compute-sanitizer || true)
if [ "${SKIP_SANITIZER:-0}" = 1 ]; then
  say "compute-sanitizer skipped (SKIP_SANITIZER=1)"
elif [ -z "$SAN" ]; then
  say "compute-sanitizer not found: sanitizer runs skipped"
else
  for tool in memcheck racecheck synccheck initcheck; do
    say "compute-sanitizer --tool $tool"
    "$SAN" --tool "$tool" --error-exitcode 99 "$NATIVE" --quick > "$OUT_DIR/sanitizer_$tool.txt" 2>&1 \
      || fail "compute-sanitizer $tool reported errors: $OUT_DIR/sanitizer_$tool.txt"
    tail -1 "$OUT_DIR/sanitizer_$tool.txt" | tee -a "$LOG"
  done
  if [ -n "$HARNESS" ] && [ -n "$PLUGIN_SO" ]; then
    say "compute-sanitizer --tool memcheck on the plugin harness"
    "$SAN" --tool memcheck --error-exitcode 99 "$HARNESS" "$PLUGIN_SO" > "$OUT_DIR/sanitizer_plugin.txt" 2>&1 \
      || fail "compute-sanitizer memcheck reported errors in the plugin harness: $OUT_DIR/sanitizer_plugin.txt"
  fi
fi

# ---------------------------------------------------------------------------------------------- 4. fixtures
images=$(ls "$SET5"/*.png 2> /dev/null || true)
if ls "$FIXTURE_DIR"/*_b*.bin > /dev/null 2>&1; then
  say "using existing fixtures in $FIXTURE_DIR"
elif [ -n "$images" ] && [ -f "$WEIGHTS" ] && "$PYTHON" -c "import torch, PIL" 2> /dev/null; then
  say "dumping block fixtures (Set5 x2, blocks 0..4) into $FIXTURE_DIR"
  for img in $images; do
    for b in 0 1 2 3 4; do
      "$PYTHON" "$ROOT/tests/fixtures/dump_block_fixture.py" --weights "$WEIGHTS" --image "$img" --block $b \
        --out "$FIXTURE_DIR/$(basename "$img" .png)_b$b.bin" >> "$LOG" 2>&1 || fail "fixture dump failed ($img, block $b)"
    done
  done
else
  fail "no fixtures: need Set5 ($SET5), weights ($WEIGHTS) and torch, or pre-made FIXTURE_DIR=... (METHOD.md)"
fi

say "native kernel test on the real-model blocks (block 0 of every Set5 image)"
for fx in "$FIXTURE_DIR"/*_b0.bin; do
  "$NATIVE" --fixture "$fx" > "$OUT_DIR/native_$(basename "$fx" .bin).txt" 2>&1 \
    || fail "native kernel test failed on $fx: $OUT_DIR/native_$(basename "$fx" .bin).txt"
done

# ---------------------------------------------------------------------------------------------- 5. benchmarks
RESULTS=$OUT_DIR/bench.jsonl
: > "$RESULTS"
HAVE_TORCH_CUDA=0
"$PYTHON" -c "import torch; assert torch.cuda.is_available()" 2> /dev/null && HAVE_TORCH_CUDA=1
[ $HAVE_TORCH_CUDA = 1 ] || say "PyTorch with CUDA not available: dense cuDNN baseline skipped"
declare -A dense_done=()
bench_dense() { # shape label
  local key="$1|$2"
  [ $HAVE_TORCH_CUDA = 1 ] || return 0
  [ -z "${dense_done[$key]:-}" ] || return 0
  dense_done[$key]=1
  for g in "" "--graph"; do
    "$PYTHON" "$ROOT/tests/gpu/bench_dense_torch.py" --shape "$1" --type fp16 --iters "$ITERS" $g --label "$2" \
      >> "$RESULTS" 2>> "$LOG" || say "dense benchmark failed for $1 (see $LOG)"
  done
}
say "benchmarks: Set5 x2 blocks and 1280x720 (median of $ITERS runs each)"
for fx in "$FIXTURE_DIR"/*_b*.bin; do
  name=$(basename "$fx" .bin)
  for g in "" "--graph"; do
    "$BENCH" --fixture "$fx" --type fp16 --iters "$ITERS" $g --label "set5:$name" >> "$RESULTS"
    "$BENCH" --fixture "$fx" --tile-to 720x1280 --type fp16 --iters "$ITERS" $g --label "720p:$name" >> "$RESULTS"
  done
  "$BENCH" --fixture "$fx" --tile-to 720x1280 --type fp32 --iters "$ITERS" --graph --label "720p:$name" >> "$RESULTS"
  shape=$("$PYTHON" -c "import struct,sys; h=struct.unpack('<5i', open(sys.argv[1],'rb').read(20)); print(f'{h[1]},{h[2]},{h[3]},{h[4]}')" "$fx")
  bench_dense "$shape" "set5:${name%_b*}"
done
bench_dense "1,64,720,1280" "720p"
say "raw results: $RESULTS"

# ---------------------------------------------------------------------------------------------- 6. report
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2> /dev/null || echo "uncommitted")
"$PYTHON" "$ROOT/tests/gpu/summarize.py" "$RESULTS" --device "$DEVICE (sm_$CC, driver $DRIVER)" --commit "$COMMIT" \
  --sanitizer "$( [ -n "$SAN" ] && [ "${SKIP_SANITIZER:-0}" != 1 ] && echo "memcheck, racecheck, synccheck, initcheck clean" || echo "not run")" \
  > "$OUT_DIR/summary.md"
cat "$OUT_DIR/summary.md" >> "$BENCH_MD"
cat "$OUT_DIR/summary.md"
say "appended to $BENCH_MD"
