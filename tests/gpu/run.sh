#!/usr/bin/env bash
# The GPU check of the SMSRSparseBlock kernels as ONE device call (what it measures and why: tests/gpu/METHOD.md).
#
#   bash tests/gpu/run.sh --prepare        here: copy what the device lacks into gpu-carry/, print the `run` call
#   bash tests/gpu/run.sh                  on the device (the `run` tool; results go to $OUT): build, check,
#                                          sanitize, benchmark, profile, whole network; ends in < 8 minutes
#   bash tests/gpu/run.sh --dry-run        anywhere, no GPU (CI): check the plan
#   bash tests/gpu/run.sh --collect DIR    here, after the call: append DIR/results.md to docs/BENCHMARKS.md
#   bash tests/gpu/run.sh --only bench,network    on the device: a subset of the steps (a rerun in a short lease)
#
# Every step runs under `timeout` with its own budget (STEP_BUDGET below) inside one overall deadline; a step that
# fails or times out is reported and the others still run. Exit status 1 when a step failed or timed out.
# Environment: SHARED (default ../shared), CARRY_DIR (default gpu-carry), OUT (device tool's output folder),
# BUILD (default build-gpu), PYTHON (default python3), GPU_RUN_LIMIT_S / GPU_CARRY_MAX_MIB (the limits, for tests).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SELF="$ROOT/tests/gpu/run.sh"

# ------------------------------------------------------------------------------------------ the plan (--dry-run)
STEPS=(device build fixtures check sanitizer bench ncu network report)
declare -A STEP_BUDGET=([device]=20 [build]=115 [fixtures]=30 [check]=40 [sanitizer]=75 [bench]=70 [ncu]=40
                        [network]=60 [report]=15)   # seconds
declare -A STEP_NEEDS=([check]="build fixtures" [sanitizer]="build" [ncu]="build fixtures")
LIMIT_S=${GPU_RUN_LIMIT_S:-480}          # the brief: the whole run in under 8 minutes on an H200
RUN_TIMEOUT_S=540                        # the `run` call's timeout_s: the run plus transfers, under the 600 s cap
RESULT_FILES=(results.md results.json run.log build.log check.log sanitizer.log ncu.csv)   # all that lands in $OUT
MAX_RESULT_FILES=8
# External programs the device steps call (besides bash and coreutils), each only through `T`/`TP` below.
DEVICE_TOOLS=(nvidia-smi nvcc cmake python3 compute-sanitizer ncu)
CARRY_NAME=${CARRY_DIR:-gpu-carry}
CARRY_MAX_MIB=${GPU_CARRY_MAX_MIB:-64}   # the device tool's limit on the whole working tree that travels
TRT_HEADERS=tensorrt-10.14
CARRY_FILES=(weights/smsr_x2_official.pt "$TRT_HEADERS/include/NvInferRuntime.h" "$TRT_HEADERS/include/NvInferVersion.h")
SET5_NAMES=(baby bird butterfly head woman)
PY_PARTS=(tests/gpu/bench_blocks.py tests/gpu/network_gpu.py tests/gpu/make_fixtures.py tests/gpu/summarize.py
          tests/gpu/device_info.py tests/gpu/gpu_timing.py tests/gpu/torch_ext/smsr_torch.py tests/gpu/int8_bench.py)
# Failure texts of tools the runtime does not support (gVisor: KINDS.md of the device tool).
UNSUPPORTED_RE='Device not supported|not supported on this (device|platform)|LibraryNotLoaded|ERR_NVGPUCTRPERM|Failed to initialize the profiler|error 999|CUDA_ERROR_UNKNOWN|cudaErrorUnknown|unknown error'

die() { echo "run.sh: $*" >&2; exit 1; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

# ------------------------------------------------------------------------------------------ --prepare
# Bytes of what travels besides the carry: tracked files and untracked files git does not ignore.
tree_bytes() {
  if git -C "$ROOT" rev-parse --is-inside-work-tree > /dev/null 2>&1; then
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s 2> /dev/null) |
      awk '{ s += $1 } END { print s + 0 }'
  else
    echo -1
  fi
}

prepare() { # DEST
  local dest=$1 shared=${SHARED:-$ROOT/../shared}
  [ -d "$shared" ] || die "--prepare: $shared not found (set SHARED to the folder holding weights/, data/Set5, third_party/)"
  local src_w="$shared/weights/smsr_x2_official.pt" src_set5="$shared/data/Set5" src_trt="$shared/third_party/$TRT_HEADERS"
  [ -f "$src_w" ] || die "--prepare: weights missing: $src_w"
  [ -d "$src_set5/HR" ] && [ -d "$src_set5/LR_bicubic/X2" ] || die "--prepare: Set5 (HR/, LR_bicubic/X2/) missing under $src_set5"
  [ -f "$src_trt/include/NvInferRuntime.h" ] || die "--prepare: TensorRT headers missing: $src_trt/include"
  rm -rf "$dest"
  mkdir -p "$dest/weights" "$dest/Set5/HR" "$dest/Set5/LR_bicubic/X2" "$dest/$TRT_HEADERS" || die "cannot create $dest"
  cp "$src_w" "$dest/weights/" &&
    cp "$src_set5"/HR/*.png "$dest/Set5/HR/" &&
    cp "$src_set5"/LR_bicubic/X2/*.png "$dest/Set5/LR_bicubic/X2/" &&
    cp -r "$src_trt/include" "$dest/$TRT_HEADERS/" || die "copying into $dest failed"
  git -C "$ROOT" describe --always --dirty > "$dest/COMMIT" 2> /dev/null || echo unknown > "$dest/COMMIT"
  (cd "$dest" && find . -type f ! -name MANIFEST | sort | xargs sha256sum > MANIFEST) || die "cannot write $dest/MANIFEST"
}

# Checks a carry folder: every file the device steps read, and the size of all that travels. Prints the size.
check_carry() { # DIR
  local dir=$1 f n bad=0
  for f in "${CARRY_FILES[@]}"; do
    [ -f "$dir/$f" ] || { echo "carry check: $dir/$f missing" >&2; bad=1; }
  done
  for n in "${SET5_NAMES[@]}"; do
    for f in "Set5/HR/$n.png" "Set5/LR_bicubic/X2/$n.png"; do
      [ -f "$dir/$f" ] || { echo "carry check: $dir/$f missing" >&2; bad=1; }
    done
  done
  (cd "$dir" && sha256sum --quiet -c MANIFEST) > /dev/null 2>&1 || { echo "carry check: $dir/MANIFEST does not match its files" >&2; bad=1; }
  local carry tree total
  carry=$(du -sb "$dir" | cut -f1)
  tree=$(tree_bytes)
  if [ "$tree" -lt 0 ]; then
    echo "carry check: not a git checkout: only the carry folder is counted" >&2
    tree=0
  fi
  total=$((carry + tree))
  echo "carry: $(mib "$carry") MiB in $dir ($(find "$dir" -type f | wc -l) files) + working tree $(mib "$tree") MiB" \
       "= $(mib "$total") MiB of the $CARRY_MAX_MIB MiB the device tool carries"
  if [ "$total" -gt $((CARRY_MAX_MIB * 1048576)) ]; then
    echo "carry check: $(mib "$total") MiB travels, over the $CARRY_MAX_MIB MiB limit" >&2
    bad=1
  fi
  return $bad
}

run_call() { # the exact `run` tool call
  printf 'run(command="bash tests/gpu/run.sh", carry=["%s"], timeout_s=%d)\n' "$CARRY_NAME" "$RUN_TIMEOUT_S"
}

# ------------------------------------------------------------------------------------------ --dry-run
dry_run() {
  local bad=0 total=0 s t f
  echo "== dry run of tests/gpu/run.sh (no GPU needed)"
  bash -n "$SELF" || { echo "FAIL bash -n $SELF" >&2; bad=1; }
  local py=${PYTHON:-python3} pyc; pyc=$(mktemp)
  for f in "${PY_PARTS[@]}"; do
    [ -f "$ROOT/$f" ] || { echo "FAIL missing $f" >&2; bad=1; continue; }
    "$py" -c "import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)" \
      "$ROOT/$f" "$pyc" || { echo "FAIL py_compile $f" >&2; bad=1; }
  done
  rm -f "$pyc"
  echo "ok   bash -n run.sh; py_compile ${#PY_PARTS[@]} Python parts"
  # budgets: every step has one, they sum under the limit
  for s in "${STEPS[@]}"; do
    [ -n "${STEP_BUDGET[$s]:-}" ] || { echo "FAIL step $s has no budget" >&2; bad=1; continue; }
    total=$((total + STEP_BUDGET[$s]))
    declare -F "step_$s" > /dev/null || { echo "FAIL step $s has no step_$s function" >&2; bad=1; }
  done
  if [ "$total" -ge "$LIMIT_S" ]; then
    echo "FAIL step budgets sum to ${total} s, not under the ${LIMIT_S} s limit" >&2; bad=1
  else
    echo "ok   ${#STEPS[@]} steps, budgets sum to ${total} s < ${LIMIT_S} s (run timeout_s ${RUN_TIMEOUT_S} <= 600)"
  fi
  [ "$RUN_TIMEOUT_S" -le 600 ] && [ "$RUN_TIMEOUT_S" -gt "$LIMIT_S" ] || { echo "FAIL run timeout_s $RUN_TIMEOUT_S not in ($LIMIT_S, 600]" >&2; bad=1; }
  # result files: at most 8, names the device tool returns (letters, digits, . _ -), each written by the report
  if [ "${#RESULT_FILES[@]}" -gt "$MAX_RESULT_FILES" ]; then
    echo "FAIL ${#RESULT_FILES[@]} result files, over $MAX_RESULT_FILES" >&2; bad=1
  fi
  for f in "${RESULT_FILES[@]}"; do
    [[ "$f" =~ ^[A-Za-z0-9._-]+$ ]] || { echo "FAIL result file name $f" >&2; bad=1; }
  done
  echo "ok   ${#RESULT_FILES[@]} result files (<= $MAX_RESULT_FILES): ${RESULT_FILES[*]}"
  # tools: every external program called through T is declared, and every declared one is called
  local used declared
  used=$(grep -oE '(^|[;&|(]|then|do|else|\$\()[[:space:]]*TP? [a-z0-9_-]+' "${GPU_RUN_TOOLS_FROM:-$SELF}" |
         grep -oE '[a-z0-9_-]+$' | sort -u)   # GPU_RUN_TOOLS_FROM: another script to check (the tests)
  declared=$(printf '%s\n' "${DEVICE_TOOLS[@]}" | sort -u)
  if [ "$used" != "$declared" ]; then
    echo "FAIL tools called through T ($(echo $used)) differ from DEVICE_TOOLS ($(echo $declared))" >&2; bad=1
  else
    echo "ok   device tools named: ${DEVICE_TOOLS[*]} (+ bash, coreutils)"
  fi
  # the run call fits the tool: command <= 2000 characters, <= 8 carried paths
  local call; call=$(run_call)
  [ "${#call}" -le 2000 ] || { echo "FAIL run call longer than 2000 characters" >&2; bad=1; }
  echo "ok   run call: $call"
  # the carry: made in a temporary folder from SHARED, checked like the real one
  local tmp; tmp=$(mktemp -d)
  if (prepare "$tmp/$CARRY_NAME") && check_carry "$tmp/$CARRY_NAME"; then
    echo "ok   carry folder complete and within the size limit"
  else
    echo "FAIL carry folder" >&2; bad=1
  fi
  rm -rf "$tmp"
  # the C ABI compiles against the CUDA headers where nvcc is (the CUDA kernels themselves: ctest builds them)
  local nvcc=${NVCC:-/usr/local/cuda/bin/nvcc}
  [ -x "$nvcc" ] || nvcc=$(command -v nvcc || true)
  if [ -n "$nvcc" ]; then
    tmp=$(mktemp -d)
    if "$nvcc" -std=c++17 -c "$ROOT/tests/gpu/torch_ext/smsrBlockCapi.cpp" -I "$ROOT/plugins/smsrSparseBlock/kernels" \
        -o "$tmp/capi.o" 2> "$tmp/err"; then
      echo "ok   nvcc -c torch_ext/smsrBlockCapi.cpp"
    else
      cat "$tmp/err" >&2; echo "FAIL nvcc -c torch_ext/smsrBlockCapi.cpp" >&2; bad=1
    fi
    rm -rf "$tmp"
  else
    echo "note nvcc not found here: the C ABI's CUDA compile is checked on the device only"
  fi
  [ $bad = 0 ] && echo "DRY RUN OK" || echo "DRY RUN FAILED" >&2
  return $bad
}

# ------------------------------------------------------------------------------------------ --collect
collect() { # DIR
  local dir=$1 md=${BENCH_MD:-$ROOT/docs/BENCHMARKS.md}
  [ -f "$dir/results.md" ] && [ -f "$dir/results.json" ] || die "--collect: $dir lacks results.md / results.json"
  "${PYTHON:-python3}" -c "import json,sys; json.load(open(sys.argv[1]))" "$dir/results.json" \
    || die "--collect: $dir/results.json is not JSON"
  { echo; cat "$dir/results.md"; } >> "$md" || die "cannot append to $md"
  echo "appended $dir/results.md to $md"
}

# ------------------------------------------------------------------------------------------ device run: helpers
CARRY="$ROOT/$CARRY_NAME"
BUILD=${BUILD:-$ROOT/build-gpu}
WORK="$BUILD/work"            # everything that is not a result file
OUTDIR=${OUT:-$BUILD/out}     # the device tool's output folder ($OUT), else a local one
LOG="$OUTDIR/run.log"
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1

say() { echo "== $*" | tee -a "$LOG"; }

# TP TOOL: the path of a declared external tool (on PATH or in CUDA_HOME/bin); T TOOL ARGS: run it.
TP() {
  local name=$1 path
  [[ " ${DEVICE_TOOLS[*]} " == *" $name "* ]] || { echo "run.sh: undeclared tool $name" >&2; return 127; }
  [ "$name" = python3 ] && [ -n "${PYTHON:-}" ] && { echo "$PYTHON"; return 0; }
  path=$(command -v "$name" 2> /dev/null || true)
  [ -n "$path" ] || { [ -x "$CUDA_HOME/bin/$name" ] && path="$CUDA_HOME/bin/$name"; }
  [ -n "$path" ] || { echo "run.sh: $name not found on this machine" >&2; return 127; }
  echo "$path"
}
T() {
  local path; path=$(TP "$1") || return 127
  shift
  "$path" "$@"
}
have() { command -v "$1" > /dev/null 2>&1 || [ -x "$CUDA_HOME/bin/$1" ]; }
note() { echo "$*" >> "$WORK/step_$STEP.note"; echo "   $*" | tee -a "$LOG"; }   # one line for the report
NATIVE() { echo "$BUILD/plugins/smsrSparseBlock/kernels/smsr_kernels_native_test"; }
BENCHBIN() { echo "$BUILD/plugins/smsrSparseBlock/kernels/smsr_kernels_bench"; }
CAPI() { echo "$BUILD/tests/gpu/libsmsr_block_capi.so"; }
HARNESS() { echo "$BUILD/plugins/smsrSparseBlock/tests/smsr_trt_plugin_gpu_harness"; }
PLUGIN_SO() { find "$BUILD" -name libsmsr_trt_plugin.so -type f 2> /dev/null | head -1; }
# Exit codes of a step: 0 ok, 3 not supported on this machine, 4 skipped (a part it needs is missing), else failed.

# ------------------------------------------------------------------------------------------ device run: steps
step_device() {
  T nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv \
    | tee -a "$LOG" || return 1
  T nvcc --version | tail -1 | tee -a "$LOG"
  T python3 "$ROOT/tests/gpu/device_info.py" --out "$WORK/device.json" | tee -a "$LOG" \
    || { note "PyTorch sees no CUDA device (device_info.py)"; return 1; }
  local t missing=""
  for t in "${DEVICE_TOOLS[@]}"; do have "$t" || missing+=" $t"; done
  [ -z "$missing" ] || note "tools not on this machine:$missing (their steps report it)"
  [ -d "$CARRY" ] && (cd "$CARRY" && sha256sum --quiet -c MANIFEST) || { note "carry folder $CARRY missing or damaged"; return 1; }
}

step_build() {
  local cc; cc=$(T nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')
  [ -n "$cc" ] || return 1
  note "built for sm_$cc only"
  local trt=() targets=(smsr_kernels_native_test smsr_kernels_bench smsr_block_capi)
  if [ -f "$CARRY/$TRT_HEADERS/include/NvInferRuntime.h" ]; then
    trt=(-DTensorRT_ROOT="$CARRY/$TRT_HEADERS")
    targets+=(smsr_trt_plugin smsr_trt_plugin_gpu_harness)
  fi
  # The native test's float64 reference is its own; the CPU op cross-check (OpenBLAS at run time) stays off here.
  T cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER="$(TP nvcc)" \
    -DSMSR_CUDA_ARCHITECTURES="$cc" -DSMSR_GPU_TESTS=ON -DSMSR_KERNEL_TESTS_CROSSCHECK_CPU=OFF \
    -DPython3_EXECUTABLE="$(TP python3)" ${trt[@]+"${trt[@]}"} >> "$OUTDIR/build.log" 2>&1 || return 1
  T cmake --build "$BUILD" -j "$(nproc)" --target "${targets[@]}" >> "$OUTDIR/build.log" 2>&1 || return 1
  grep -E "ptxas info|spill" "$OUTDIR/build.log" | tail -4 >> "$LOG" || true
}

step_fixtures() {
  rm -rf "$WORK/fixtures"
  T python3 "$ROOT/tests/gpu/make_fixtures.py" --weights "$CARRY/weights/smsr_x2_official.pt" \
    --images "$CARRY/Set5/LR_bicubic/X2" --out "$WORK/fixtures" --crop 64x64 --ncu-image baby | tee -a "$LOG"
}

step_check() {
  local log="$OUTDIR/check.log" fx bad=0 n=0 failed
  rm -f "$WORK"/fixtures/*.failed "$WORK"/fixtures/*.log
  echo "-- native kernel test (random cases vs float64 reference)" >> "$log"
  "$(NATIVE)" >> "$log" 2>&1 || { note "native kernel test FAILED"; bad=1; }
  # The fixtures in parallel (the float64 reference is single-threaded host code); one log per fixture, in order.
  ls "$WORK"/fixtures/*.bin > "$WORK/fixtures.list" 2> /dev/null
  n=$(wc -l < "$WORK/fixtures.list")
  [ "$n" -gt 0 ] || { note "no fixtures"; return 1; }
  NATIVE_BIN=$(NATIVE) xargs -P 8 -I{} sh -c '"$NATIVE_BIN" --fixture "$1" > "$1.log" 2>&1 || echo "$1" >> "$1.failed"' _ {} \
    < "$WORK/fixtures.list"
  while read -r fx; do
    echo "-- fixture $(basename "$fx")" >> "$log"
    cat "$fx.log" >> "$log"
  done < "$WORK/fixtures.list"
  failed=$(ls "$WORK"/fixtures/*.failed 2> /dev/null | wc -l)
  [ "$failed" = 0 ] || { note "$failed of $n fixtures FAILED: $(ls "$WORK"/fixtures/*.failed | xargs -n1 basename | sed 's/.bin.failed//' | tr '\n' ' ')"; bad=1; }
  note "native test + $n real-model block fixtures (64x64 crops): $([ $bad = 0 ] && echo passed || echo FAILED)"
  local so; so=$(PLUGIN_SO)
  if [ -x "$(HARNESS)" ] && [ -n "$so" ]; then
    echo "-- TensorRT plugin GPU harness" >> "$log"
    "$(HARNESS)" "$so" >> "$log" 2>&1 && note "plugin GPU harness passed" || { note "plugin GPU harness FAILED"; bad=1; }
  else
    note "plugin GPU harness not built (no TensorRT headers carried)"
  fi
  return $bad
}

step_sanitizer() {
  have compute-sanitizer || { note "compute-sanitizer not on this machine"; return 3; }
  local log="$OUTDIR/sanitizer.log" tool rc per=$(( (STEP_TIME - 5) / 4 )) found=0
  for tool in memcheck racecheck synccheck initcheck; do
    echo "-- compute-sanitizer --tool $tool smsr_kernels_native_test --quick" >> "$log"
    timeout -k 3 "$per" "$(TP compute-sanitizer)" --tool "$tool" --error-exitcode 99 "$(NATIVE)" --quick \
      > "$WORK/san_$tool.txt" 2>&1
    rc=$?
    cat "$WORK/san_$tool.txt" >> "$log"
    if [ $rc = 0 ]; then
      note "$tool: clean"
    elif [ $rc = 124 ] || [ $rc = 137 ]; then
      note "$tool: timed out after ${per} s"; found=1
    elif grep -qE "$UNSUPPORTED_RE" "$WORK/san_$tool.txt"; then
      note "compute-sanitizer not supported here ($(grep -m1 -oE "$UNSUPPORTED_RE" "$WORK/san_$tool.txt")): no sanitizer results"
      return 3
    else
      note "$tool: REPORTED ERRORS (exit $rc, see sanitizer.log)"; found=1
    fi
  done
  return $found
}

step_bench() {
  local lib; lib=$(CAPI)
  [ -f "$lib" ] || { note "kernel library not built: dense baseline only"; lib=""; }
  T python3 "$ROOT/tests/gpu/bench_blocks.py" --weights "$CARRY/weights/smsr_x2_official.pt" \
    --images "$CARRY/Set5/LR_bicubic/X2" ${lib:+--lib "$lib"} --sizes 1280x720,640x360 \
    --out "$WORK/bench.json" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  [ -n "$lib" ] || return 4
  return "$rc"
}

step_ncu() {
  have ncu || { note "ncu not on this machine"; return 3; }
  local fx="$WORK/fixtures/ncu_baby_b0.smbf"
  [ -f "$fx" ] || { note "no fixture $fx"; return 4; }
  # One block call of the standalone benchmark at 1280x720 (real masks tiled): every kernel of that call.
  local base=gpu__time_duration.sum,smsp__inst_executed.sum,dram__bytes.sum,sm__warps_active.avg.pct_of_peak_sustained_active,launch__registers_per_thread
  local tensor=sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active metrics rc
  for metrics in "$base,$tensor" "$base"; do
    T ncu --clock-control none --csv --page raw --launch-count 8 --metrics "$metrics" \
      "$(BENCHBIN)" --fixture "$fx" --tile-to 720x1280 --type fp16 --iters 1 --warmup 0 \
      > "$OUTDIR/ncu.csv" 2> "$WORK/ncu.err"
    rc=$?
    # a metric this ncu does not know fails the whole run: once more without the tensor-pipe one
    grep -qiE "(failed to find|invalid|unknown) metric" "$WORK/ncu.err" "$OUTDIR/ncu.csv" || break
    note "ncu does not know $tensor: profiled without it"
  done
  if [ $rc != 0 ] || ! grep -q "gpu__time_duration" "$OUTDIR/ncu.csv"; then
    cat "$WORK/ncu.err" >> "$LOG"
    if grep -qE "$UNSUPPORTED_RE" "$WORK/ncu.err" "$OUTDIR/ncu.csv"; then
      note "ncu not supported here ($(grep -h -m1 -oE "$UNSUPPORTED_RE" "$WORK/ncu.err" "$OUTDIR/ncu.csv" | head -1))"
      return 3
    fi
    note "ncu failed (exit $rc)"; return 1
  fi
  note "ncu: $(grep -c '^"[0-9]' "$OUTDIR/ncu.csv") kernels profiled (720p, baby block 0)"
}

step_network() {
  [ -f "$(CAPI)" ] || { note "kernel library not built"; return 4; }
  T python3 "$ROOT/tests/gpu/network_gpu.py" --weights "$CARRY/weights/smsr_x2_official.pt" --set5 "$CARRY/Set5" \
    --lib "$(CAPI)" --size 1280x720 --out "$WORK/network.json" 2>&1 | tee -a "$LOG"
  return "${PIPESTATUS[0]}"
}

step_report() {
  local commit   # the device's copy of the tree may have no .git: the commit --prepare recorded
  commit=$(git -C "$ROOT" describe --always --dirty 2> /dev/null || cat "$CARRY/COMMIT" 2> /dev/null || echo unknown)
  T python3 "$ROOT/tests/gpu/summarize.py" --work "$WORK" --out "$OUTDIR" --commit "$commit" | tee -a "$LOG"
}

# ------------------------------------------------------------------------------------------ device run: driver
device_run() { # [ONLY]
  local only=${1:-} s rc t0 now left budget status deadline
  mkdir -p "$OUTDIR" "$WORK" || die "cannot create $OUTDIR / $WORK"
  : > "$LOG"; : > "$WORK/steps.jsonl"; rm -f "$WORK"/step_*.note
  have nvidia-smi || die "nvidia-smi not found: run this on the GPU machine (CPU machines: --dry-run, or ctest's emulated kernels)"
  t0=$(date +%s); deadline=$((t0 + LIMIT_S))
  declare -A result=()
  for s in "${STEPS[@]}"; do
    if [ -n "$only" ] && [[ ",$only,report," != *",$s,"* ]]; then continue; fi
    now=$(date +%s)
    budget=${STEP_BUDGET[$s]}
    # time left before the deadline, keeping the report's budget free for the report
    if [ "$s" = report ]; then left=$((deadline - now)); [ "$left" -lt 5 ] && left=5
    else left=$((deadline - now - STEP_BUDGET[report])); fi
    [ "$left" -lt "$budget" ] && budget=$left
    local need dep_bad=""
    for need in ${STEP_NEEDS[$s]:-}; do
      [ "${result[$need]:-ok}" = ok ] || dep_bad+=" $need"
    done
    if [ -n "$dep_bad" ]; then
      status=skipped; rc=4
      echo "$s: needs$dep_bad, which did not succeed" > "$WORK/step_$s.note"
    elif [ "$budget" -lt 3 ]; then
      status=skipped; rc=4
      echo "$s: no time left before the ${LIMIT_S} s deadline" > "$WORK/step_$s.note"
    else
      say "$s (budget ${budget} s)"
      STEP=$s STEP_TIME=$budget timeout -k 5 "$budget" bash "$SELF" --step "$s"
      rc=$?
      case $rc in
        0) status=ok ;; 3) status=unsupported ;; 4) status=skipped ;; 124|137) status=timeout ;; *) status=failed ;;
      esac
    fi
    result[$s]=$status
    printf '{"step": "%s", "status": "%s", "exit": %d, "seconds": %d, "budget": %d}\n' \
      "$s" "$status" "$rc" $(( $(date +%s) - now )) "$budget" >> "$WORK/steps.jsonl"
    say "$s: $status ($(( $(date +%s) - now )) s)"
  done
  local n; n=$(find "$OUTDIR" -maxdepth 1 -type f | wc -l)
  [ "$n" -le "$MAX_RESULT_FILES" ] || say "WARNING: $n files in $OUTDIR (the device tool returns $MAX_RESULT_FILES)"
  say "total $(( $(date +%s) - t0 )) s of ${LIMIT_S} s"
  for s in "${!result[@]}"; do
    case ${result[$s]} in failed|timeout) return 1 ;; esac
  done
  return 0
}

case "${1:-}" in
  --prepare)
    prepare "$ROOT/$CARRY_NAME"
    check_carry "$ROOT/$CARRY_NAME" || die "carry folder check failed"
    git -C "$ROOT" check-ignore -q "$CARRY_NAME" 2> /dev/null || echo "warning: $CARRY_NAME is not git-ignored: the device tool carries only ignored paths" >&2
    echo "now call the device tool (one call, about $LIMIT_S s of device time plus start-up):"
    run_call
    echo "then, here: bash tests/gpu/run.sh --collect <files_at of that reply>"
    ;;
  --dry-run) dry_run ;;
  --collect) [ -n "${2:-}" ] || die "usage: run.sh --collect DIR"; collect "$2" ;;
  --step)  # internal: one step in its own process (so `timeout` can stop it and its children)
    mkdir -p "$WORK" "$OUTDIR"; STEP=$2; STEP_TIME=${STEP_TIME:-60}; "step_$2" ;;
  --only) [ -n "${2:-}" ] || die "usage: run.sh --only step1,step2"; device_run "$2" ;;
  "") device_run ;;
  *) die "unknown option $1 (see the header of tests/gpu/run.sh)" ;;
esac
