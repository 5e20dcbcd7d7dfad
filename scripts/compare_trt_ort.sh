#!/usr/bin/env bash
# Compare a TensorRT engine with ONNX Runtime (Polygraphy), and debug INT8 layer by layer.
#
#   scripts/compare_trt_ort.sh compare ENGINE REFERENCE_FP32_ONNX [PLUGIN_LIB]
#       1. ONNX Runtime (CPU) runs the FP32 *reference* graph on real LR crops -> inputs + expected outputs
#          (runs anywhere; `ort-only` stops here);
#       2. TensorRT runs ENGINE on the same inputs (needs a GPU and TensorRT's Python package) and Polygraphy
#          compares "sr" and "masks" with the tolerances of the engine's precision (read from ENGINE.json).
#   scripts/compare_trt_ort.sh ort-only REFERENCE_FP32_ONNX
#   scripts/compare_trt_ort.sh layerwise-trt INT8_QDQ_ONNX [PLUGIN_LIB]
#       TensorRT vs ONNX Runtime on the same Q/DQ graph with every tensor marked as an output: the first tensor
#       that differs is where TensorRT's INT8 fusion/rounding departs (marking outputs disables some fusions).
#   scripts/compare_trt_ort.sh layerwise-ort FP32_ONNX INT8_QDQ_ONNX [IMAGE_DIR]
#       CPU only: SQNR of every quantized tensor, FP32 graph vs Q/DQ graph (python -m calibration.layerwise).
#
# Environment: SHAPE (LR crop NxCxHxW, default 1x3x64x64, inside the engine's profile), COUNT (inputs, default 3),
# DATA (LR image folder, default ../shared/data/Set5/LR_bicubic/X2), WORK (output folder, default a temp dir),
# PRECISION (override the manifest's), PLUGIN_LIB (default build/plugins/smsrSparseBlock/libsmsr_trt_plugin_autoreg.so;
# the *_autoreg library registers its creator when dlopen()ed, which is what `polygraphy --plugins` does).
#
# Tolerances (0..255 output scale; masks are 0/1, so their mean error = fraction of flipped mask pixels):
#   fp32: sr max |err| <= 0.05 (TF32 off in FP32 builds), masks mean <= 0.001
#   fp16: sr median |err| <= 0.25, masks mean <= 0.01
#   int8: sr median |err| <= 1.0, masks mean <= 0.03
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="${here}${PYTHONPATH:+:$PYTHONPATH}"
export SMSR_COMPARE_SHAPE="${SHAPE:-1x3x64x64}" SMSR_COMPARE_COUNT="${COUNT:-3}"
export SMSR_COMPARE_DATA="${DATA:-${here}/../shared/data/Set5/LR_bicubic/X2}"
loader="${here}/calibration/polygraphy_data.py:load_data"
work="${WORK:-$(mktemp -d -t smsr_compare.XXXXXX)}"
mkdir -p "$work"

die() { echo "compare_trt_ort.sh: $*" >&2; exit 2; }
usage() {
  cat <<'EOF'
usage: scripts/compare_trt_ort.sh COMMAND ARGS...
  compare ENGINE REFERENCE_FP32_ONNX [PLUGIN_LIB]   TensorRT engine vs ONNX Runtime on real LR crops (GPU)
  ort-only REFERENCE_FP32_ONNX                      only the ONNX Runtime reference outputs (any machine)
  layerwise-trt INT8_QDQ_ONNX [PLUGIN_LIB]          first tensor where TensorRT's INT8 departs (GPU)
  layerwise-ort FP32_ONNX INT8_QDQ_ONNX [IMAGE_DIR] SQNR per quantized tensor, CPU only
environment: SHAPE (LR crop NxCxHxW, default 1x3x64x64), COUNT (default 3), DATA (LR images), WORK (output
folder), PRECISION (override the manifest's), PLUGIN_LIB. Tolerances per precision: see the top of this script.
EOF
}
need() { command -v "$1" >/dev/null || die "$1 not found ($2)"; }
plugin_default() {
  local p
  for p in "${PLUGIN_LIB:-}" "$here/build/plugins/smsrSparseBlock/libsmsr_trt_plugin_autoreg.so" \
           "$here/build/lib/libsmsr_trt_plugin_autoreg.so"; do
    [[ -n "$p" && -f "$p" ]] && { echo "$p"; return; }
  done
}
shape_list() { echo "[${SMSR_COMPARE_SHAPE//x/,}]"; }

ort_reference() {  # $1 = FP32 reference ONNX -> $work/inputs.json, $work/ort_outputs.json
  need polygraphy "pip install polygraphy"
  polygraphy run "$1" --onnxrt --data-loader-script "$loader" \
    --save-inputs "$work/inputs.json" --save-outputs "$work/ort_outputs.json"
  echo "ONNX Runtime reference outputs: $work/ort_outputs.json (inputs: $work/inputs.json)"
}

tolerances() {  # $1 = precision
  case "$1" in
    fp32) echo "--check-error-stat sr:max masks:mean --atol sr:0.05 masks:0.001 --rtol 0" ;;
    fp16) echo "--check-error-stat sr:median masks:mean --atol sr:0.25 masks:0.01 --rtol 0" ;;
    int8) echo "--check-error-stat sr:median masks:mean --atol sr:1.0 masks:0.03 --rtol 0" ;;
    *) die "unknown precision '$1' (fp32, fp16, int8)" ;;
  esac
}

cmd="${1:-}"; shift || true
case "$cmd" in
  compare)
    [[ $# -ge 2 ]] || die "usage: compare ENGINE REFERENCE_FP32_ONNX [PLUGIN_LIB]"
    engine="$1" onnx="$2" plugin="${3:-$(plugin_default)}"
    [[ -f "$engine" ]] || die "engine $engine not found"
    manifest="${engine}.json"
    [[ -f "$manifest" ]] || die "manifest $manifest not found (build_engine.py writes it)"
    read -r precision builder graph < <(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]));
print(m["precision"], m["builder"], m["graph"])' "$manifest")
    precision="${PRECISION:-$precision}"
    if [[ "$builder" != "tensorrt" ]]; then
      die "$engine was built with $builder; Polygraphy's TensorRT runner loads engines with the 'tensorrt' module
only. Compare TensorRT-RTX engines through the project's runtime (engine/ backends) on an RTX GPU."
    fi
    python3 -c "import tensorrt" 2>/dev/null || die "TensorRT's Python package is needed to run the engine (on a GPU)"
    ort_reference "$onnx"
    plugin_args=()
    if [[ "$graph" == "deploy" ]]; then
      [[ -n "$plugin" ]] || die "deploy-graph engine: pass the plugin library (or set PLUGIN_LIB)"
      plugin_args=(--plugins "$plugin")
    fi
    # shellcheck disable=SC2046
    polygraphy run "$engine" --model-type engine --trt "${plugin_args[@]}" \
      --load-inputs "$work/inputs.json" --load-outputs "$work/ort_outputs.json" $(tolerances "$precision")
    ;;
  ort-only)
    [[ $# -ge 1 ]] || die "usage: ort-only REFERENCE_FP32_ONNX"
    ort_reference "$1"
    ;;
  layerwise-trt)
    [[ $# -ge 1 ]] || die "usage: layerwise-trt INT8_QDQ_ONNX [PLUGIN_LIB]"
    onnx="$1" plugin="${2:-$(plugin_default)}"
    plugin_args=()
    [[ -n "$plugin" ]] && plugin_args=(--plugins "$plugin")
    s="$(shape_list)"
    polygraphy run "$onnx" --trt --strongly-typed "${plugin_args[@]}" --onnxrt \
      --trt-min-shapes "lr:$s" --trt-opt-shapes "lr:$s" --trt-max-shapes "lr:$s" \
      --data-loader-script "$loader" --trt-outputs mark all --onnx-outputs mark all \
      --check-error-stat median --atol 0.05 --rtol 0.02 --fail-fast
    ;;
  layerwise-ort)
    [[ $# -ge 2 ]] || die "usage: layerwise-ort FP32_ONNX INT8_QDQ_ONNX [IMAGE_DIR]"
    python3 -m calibration.layerwise --float "$1" --qdq "$2" --data "${3:-$SMSR_COMPARE_DATA}" --top 10
    ;;
  -h|--help)
    usage
    ;;
  *)
    usage >&2
    [[ -z "$cmd" ]] || echo "compare_trt_ort.sh: unknown command '$cmd'" >&2
    exit 2
    ;;
esac
