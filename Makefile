# Two commands for a fresh clone (CPU-only machine, Python >= 3.10, cmake, a C++ compiler):
#   make demo   set up, export the official x2 model, evaluate it on Set5 through ONNX Runtime + our CPU op
#   make test   set up, run the whole test suite (pytest, which also runs the C++ tests through ctest)
# Paths (override on the command line): WEIGHTS, DATA, TensorRT_ROOT, ONNXRUNTIME_ROOT, CUDA (nvcc dir).

PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
SHARED ?= $(abspath ../shared)
WEIGHTS ?= $(SHARED)/weights/smsr_x2_official.pt
DATA ?= $(SHARED)/data/Set5
TensorRT_ROOT ?= $(SHARED)/third_party/tensorrt-10.14
ONNXRUNTIME_ROOT ?= $(SHARED)/third_party/onnxruntime-1.21
# The CPU build of PyTorch (converters only). TORCH_INDEX=https://download.pytorch.org/whl/cpu elsewhere.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
TRT_RTX_SPEC ?= tensorrt-rtx-cu13==1.7.1.116
BUILD ?= build
OUT ?= out
JOBS ?= 2

.PHONY: setup python-deps cpp demo test bench clean

setup: $(BUILD)/.python-deps cpp

python-deps: $(BUILD)/.python-deps
$(BUILD)/.python-deps: pyproject.toml
	mkdir -p $(BUILD)
	$(PIP) install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[dev]"
	# TensorRT-RTX builder: real engine builds on a CPU in the tests (optional: failures are reported, not fatal)
	$(PIP) install -q "$(TRT_RTX_SPEC)" && $(PYTHON) -m engine.trt_rtx_setup || echo "note: TensorRT-RTX not installed; engine-build tests skip (and fail under make test)"
	touch $@

cpp: $(BUILD)/.python-deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release \
	  $(if $(wildcard $(TensorRT_ROOT)),-DTensorRT_ROOT=$(TensorRT_ROOT)) \
	  $(if $(wildcard $(ONNXRUNTIME_ROOT)),-DONNXRUNTIME_ROOT=$(ONNXRUNTIME_ROOT)) \
	  -DPython3_EXECUTABLE=$$(command -v $(PYTHON))
	cmake --build $(BUILD) -j$(JOBS)

demo: setup
	$(PYTHON) -m converters.export_onnx --weights $(WEIGHTS) --scale 2 --out-dir $(OUT)/onnx
	$(PYTHON) -m engine.evaluate --backend ort --model $(OUT)/onnx/smsr_x2_deploy.onnx --data $(DATA) --scale 2 --threads 2

# Tests read the checkpoint and the folder holding Set5/ from these (strict: missing data fails, never skips).
test: setup
	SMSR_STRICT=1 SMSR_WEIGHTS=$(WEIGHTS) SMSR_DATA=$(dir $(abspath $(DATA))) $(PYTHON) -m pytest -q -ra

bench: setup
	$(PYTHON) benchmarks/bench_cpu.py --weights $(WEIGHTS) --data $(DATA)

clean:
	rm -rf $(BUILD) $(OUT)

# GPU timing without a GPU (issue 19): builds/reuses GPGPU-Sim + CUDA 11.8 under build-gpusim/, simulates the
# sparse block vs a dense plain-WMMA block on real masks. Not part of `make test` (~15 min on 2 cores).
.PHONY: gpusim-bench
gpusim-bench:
	$(PYTHON) benchmarks/gpusim/run.py --weights $(WEIGHTS) --data $(DATA) --jobs $(JOBS)
