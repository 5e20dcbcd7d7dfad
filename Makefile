# Two commands for a fresh clone (CPU-only machine, Python >= 3.10, cmake, a C++ compiler):
#   make demo   set up, export the official x2 model, evaluate it on Set5 through ONNX Runtime + our CPU op
#   make test   set up, run the whole test suite (pytest, which also runs the C++ tests through ctest)
# Paths (override on the command line): WEIGHTS, DATA, TensorRT_ROOT, ONNXRUNTIME_ROOT, CUDA (nvcc dir), SMSR_HOME.
# Without ../shared, WEIGHTS and DATA default to the user cache, which `smsr download` fills (make data).

PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
SHARED ?= $(abspath ../shared)
SMSR_HOME ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/smsr
ifneq ($(wildcard $(SHARED)/weights/smsr_x2_official.pt),)
WEIGHTS ?= $(SHARED)/weights/smsr_x2_official.pt
DATA ?= $(SHARED)/data/Set5
else
WEIGHTS ?= $(SMSR_HOME)/weights/smsr_x2_official.pt
DATA ?= $(SMSR_HOME)/data/Set5
endif
TensorRT_ROOT ?= $(SHARED)/third_party/tensorrt-10.14
ONNXRUNTIME_ROOT ?= $(SHARED)/third_party/onnxruntime-1.21
# The CPU build of PyTorch (converters only). TORCH_INDEX=https://download.pytorch.org/whl/cpu elsewhere.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
TRT_RTX_SPEC ?= tensorrt-rtx-cu13==1.7.1.116
BUILD ?= build
OUT ?= out
JOBS ?= 2

.PHONY: setup python-deps cpp data demo test bench sass-report clean triton-venv

setup: $(BUILD)/.python-deps cpp triton-venv

python-deps: $(BUILD)/.python-deps
$(BUILD)/.python-deps: pyproject.toml
	mkdir -p $(BUILD)
	$(PIP) install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	# build backend + the OpenBLAS wheel CMake looks for, first: the editable install builds without isolation
	$(PIP) install -q "scikit-build-core>=0.10" "scipy-openblas32>=0.3.27"
	# this package (+ dev extras); scikit-build-core runs the project's CMake into $(BUILD)/, every part and test
	CMAKE_GENERATOR="Unix Makefiles" $(PIP) install -q --no-build-isolation -e ".[dev]" -Cbuild-dir=$(BUILD) \
	  -Ccmake.define.SMSR_PACKAGE_ONLY=OFF -Ccmake.define.CMAKE_BUILD_TYPE=Release \
	  $(if $(wildcard $(TensorRT_ROOT)),-Ccmake.define.TensorRT_ROOT=$(TensorRT_ROOT)) \
	  $(if $(wildcard $(ONNXRUNTIME_ROOT)),-Ccmake.define.ONNXRUNTIME_ROOT=$(ONNXRUNTIME_ROOT))
	# TensorRT-RTX builder: real engine builds on a CPU in the tests (optional: failures are reported, not fatal)
	$(PIP) install -q "$(TRT_RTX_SPEC)" && $(PYTHON) -m engine.trt_rtx_setup || echo "note: TensorRT-RTX not installed; engine-build tests skip (and fail under make test)"
	touch $@

cpp: $(BUILD)/.python-deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release \
	  $(if $(wildcard $(TensorRT_ROOT)),-DTensorRT_ROOT=$(TensorRT_ROOT)) \
	  $(if $(wildcard $(ONNXRUNTIME_ROOT)),-DONNXRUNTIME_ROOT=$(ONNXRUNTIME_ROOT)) \
	  -DPython3_EXECUTABLE=$$(command -v $(PYTHON))
	cmake --build $(BUILD) -j$(JOBS)

# Triton Inference Server for the tests (tests/test_triton_server.py): the nvidia-pytriton wheel's tritonserver with the
# Python backend, in its own venv (it pins numpy<2). Optional: if pip cannot install it, those tests skip.
TRITON_VENV ?= $(BUILD)/triton-venv
triton-venv: $(TRITON_VENV)/.ok
$(TRITON_VENV)/.ok:
	rm -rf $(TRITON_VENV)
	( $(PYTHON) -m venv $(TRITON_VENV) && $(TRITON_VENV)/bin/pip install -q "nvidia-pytriton>=0.5" "onnxruntime>=1.21" "numpy<2" \
	  && touch $@ ) || (rm -rf $(TRITON_VENV); echo "note: Triton venv not created (pip failed); real-server Triton tests skip")

# The checkpoint and Set5: ../shared when present (CI never downloads), else `smsr download` into SMSR_HOME
# (DOWNLOAD_ARGS="--base-url file:///path/to/SMSR/" for a mirror or a local clone of the authors' repository).
data: $(BUILD)/.python-deps
	@if [ -f "$(WEIGHTS)" ] && [ -d "$(DATA)/HR" ]; then :; \
	elif [ "$(WEIGHTS)" = "$(SMSR_HOME)/weights/smsr_x2_official.pt" ] && [ "$(DATA)" = "$(SMSR_HOME)/data/Set5" ]; then \
	  echo "no ../shared: downloading the official checkpoint and Set5 into $(SMSR_HOME)"; \
	  SMSR_HOME=$(SMSR_HOME) $(PYTHON) -m engine.download $(DOWNLOAD_ARGS); \
	else echo "error: WEIGHTS=$(WEIGHTS) or DATA=$(DATA) not found" >&2; exit 2; fi

# Exports the graphs and makes the deploy graph the default model of `smsr upscale` (SMSR_HOME/models).
demo: setup data
	SMSR_HOME=$(SMSR_HOME) $(PYTHON) -m converters.export_onnx --weights $(WEIGHTS) --scale 2 --out-dir $(OUT)/onnx --install
	$(PYTHON) -m engine.evaluate --backend ort --model $(OUT)/onnx/smsr_x2_deploy.onnx --data $(DATA) --threads 2

# Tests read the checkpoint and the folder holding Set5/ from these (strict: missing data fails, never skips).
test: setup data
	SMSR_STRICT=1 SMSR_WEIGHTS=$(WEIGHTS) SMSR_DATA=$(dir $(abspath $(DATA))) $(PYTHON) -m pytest -q -ra

bench: setup
	$(PYTHON) benchmarks/bench_cpu.py --weights $(WEIGHTS) --data $(DATA)

# SASS report of the CUDA kernels (sm_87, sm_90) and the performance model built on it (CPU only; KERNELS=<file.cu>).
KERNELS ?= plugins/smsrSparseBlock/kernels/sparseBlockKernels.cu
sass-report: $(BUILD)/.python-deps
	$(PYTHON) tests/gpu/sass_report.py $(KERNELS)
	$(PYTHON) tests/gpu/perf_model.py $(KERNELS)

clean:
	rm -rf $(BUILD) $(OUT)

# GPU timing without a GPU (issue 19): builds/reuses GPGPU-Sim + CUDA 11.8 under build-gpusim/, simulates the
# sparse block vs a dense plain-WMMA block on real masks. Not part of `make test` (~15 min on 2 cores).
.PHONY: gpusim-bench
gpusim-bench:
	$(PYTHON) benchmarks/gpusim/run.py --weights $(WEIGHTS) --data $(DATA) --jobs $(JOBS)
