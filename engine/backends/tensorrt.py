"""TensorRT backend: a serialized engine run with tensorrt + cuda-python.

- The engine's manifest (<engine>.json, engine/manifest.py) is checked before deserialising: TensorRT version, GPU
  compute capability and scale mismatches get a clear message instead of TensorRT's.
- The plugin library named in the manifest (or --plugin / $SMSR_PLUGIN_LIBRARY) is loaded into the plugin registry
  first; its sha256 must match the one recorded at build time.
- Device buffers and pinned host buffers are allocated once, at the profile's maximum shape, so their addresses never
  change; one CUDA stream per execution context; copies are asynchronous (H2D, enqueue, D2H, one sync per call).
- CUDA graphs: after any input-shape change the call runs an ordinary enqueue + stream sync (TensorRT must see one
  enqueue after set_input_shape before a capture); the next call of the same shape captures (copies + enqueue) and
  later ones replay. Graphs are only replayed while the context is set to their shape. Tiling repeats one tile
  shape many times, which is where launch overhead matters. Any failure while capturing ends and discards the
  capture, remembers the shape as not capturable and runs ordinarily; if stream capture itself is unsupported,
  graphs are off for this backend. TensorRT-RTX engines are captured only when the context reports
  is_stream_capturable(stream) (RTX engines may allocate or use shape-specialised kernels at run time).
Nothing here runs without an NVIDIA GPU; tests/test_trt_backend.py covers it where one is present.
"""
from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import (BackendOutOfMemory, BackendRunError, BackendUnavailableError, ModelError, PluginLibraryError,
                      ScaleMismatchError)
from ..manifest import EngineManifest, check_compatible, find_manifest, load_manifest, resolve_plugin_library
from .base import Backend, Limits

MAX_GRAPHS = 8


NO_GPU_HINT = ("TensorRT engines run only on an NVIDIA GPU; on this machine use ONNX Runtime: --model "
               "smsr_x2_deploy.onnx (or no --engine: the default model)")


def gpu_driver_problem() -> str | None:
    """Why no NVIDIA GPU is usable here (no driver library, driver fails to start, no device), or None. Checked
    before naming a missing Python package: installing cuda-python does not help a machine without a GPU."""
    import ctypes
    from ..cuda_driver import load_libcuda
    cuda = load_libcuda()
    if cuda is None:
        return "no NVIDIA driver here (libcuda.so.1 not found)"
    try:
        rc = cuda.cuInit(0)
        if rc != 0:
            return "the NVIDIA driver did not start (cuInit error %d: no GPU, or driver/kernel module mismatch)" % rc
        count = ctypes.c_int(0)
        if cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
            return "the NVIDIA driver sees no GPU"
    except (AttributeError, OSError):
        return "the NVIDIA driver library is unusable"
    return None


def import_cudart():
    """cuda-python's runtime module (new layout cuda.bindings.runtime, old layout cuda.cudart)."""
    try:
        from cuda.bindings import runtime as cudart
        return cudart
    except ImportError:
        pass
    try:
        from cuda import cudart
        return cudart
    except ImportError as e:
        problem = gpu_driver_problem()
        if problem:
            raise BackendUnavailableError("%s: %s" % (problem, NO_GPU_HINT)) from None
        raise BackendUnavailableError("the TensorRT backend needs cuda-python (pip install cuda-python): %s" % e) \
            from None


def import_tensorrt(builder: str | None):
    """The TensorRT Python module matching the engine's builder ("tensorrt" or "tensorrt-rtx")."""
    names = {"tensorrt": ["tensorrt"], "tensorrt-rtx": ["tensorrt_rtx"], None: ["tensorrt", "tensorrt_rtx"]}[builder]
    errors = []
    for n in names:
        try:
            import importlib
            return importlib.import_module(n), ("tensorrt-rtx" if n == "tensorrt_rtx" else "tensorrt")
        except ImportError as e:
            errors.append("%s: %s" % (n, e))
    problem = gpu_driver_problem()
    if problem:
        raise BackendUnavailableError("%s: %s" % (problem, NO_GPU_HINT))
    raise BackendUnavailableError("TensorRT is not installed (%s)" % "; ".join(errors))


class CudaError(BackendRunError, RuntimeError):
    """A failed cuda-python call; an EngineError (exit 5) wherever it surfaces, never a traceback."""

    def __init__(self, call: str, err):
        self.err = err
        super().__init__("%s failed: %s" % (call, getattr(err, "name", err)))


def _check(cudart, result, call: str):
    """cuda-python calls return (err, *values): raise on error, return the values."""
    err, *vals = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        if err == cudart.cudaError_t.cudaErrorMemoryAllocation:
            raise BackendOutOfMemory("%s: out of GPU memory" % call)
        raise CudaError(call, err)
    return vals[0] if len(vals) == 1 else (tuple(vals) if vals else None)


def gpu_info(cudart) -> tuple[str, str]:
    """(compute capability 'major.minor', name) of the current device; BackendUnavailableError without a GPU."""
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess or count == 0:
        raise BackendUnavailableError("no CUDA GPU is usable here (%s)" % getattr(err, "name", err))
    dev = _check(cudart, cudart.cudaGetDevice(), "cudaGetDevice")
    prop = _check(cudart, cudart.cudaGetDeviceProperties(dev), "cudaGetDeviceProperties")
    name = prop.name.decode(errors="replace").rstrip("\x00") if isinstance(prop.name, bytes) else str(prop.name)
    return "%d.%d" % (prop.major, prop.minor), name


class _Buffer:
    """A device buffer and a pinned host buffer of the same size, with a numpy view of the host side."""

    def __init__(self, cudart, nbytes: int, dtype):
        self.cudart = cudart
        self.nbytes = nbytes
        self.dtype = np.dtype(dtype)
        self.device = _check(cudart, cudart.cudaMalloc(nbytes), "cudaMalloc")
        self.host_ptr = _check(cudart, cudart.cudaMallocHost(nbytes), "cudaMallocHost")
        raw = (ctypes.c_byte * nbytes).from_address(int(self.host_ptr))
        self.host = np.frombuffer(raw, dtype=self.dtype)

    def host_view(self, shape) -> np.ndarray:
        n = int(np.prod(shape))
        return self.host[:n].reshape(shape)

    def free(self):
        if self.device is not None:
            self.cudart.cudaFree(self.device)
            self.cudart.cudaFreeHost(self.host_ptr)
            self.device = None


class TensorRTBackend(Backend):
    name = "tensorrt"
    bytes_per_lr_pixel = 2048

    def __init__(self, engine_path, scale: int | None = None, plugin=None, use_cuda_graphs: bool = True,
                 log: Callable[[str], None] | None = None):
        log = log or (lambda s: None)
        path = Path(engine_path)
        if not path.is_file():
            raise ModelError("TensorRT engine %s not found" % path)
        mpath = find_manifest(path)
        self.manifest: EngineManifest | None = load_manifest(mpath) if mpath else None
        if self.manifest is None:
            log("warning: no manifest next to %s; TensorRT/GPU compatibility cannot be checked first" % path)
        if self.manifest is not None and scale is not None and self.manifest.scale != scale:
            raise ScaleMismatchError("engine %s is built for x%d, but x%d was requested"
                                     % (path, self.manifest.scale, scale))
        # Checks that need no GPU come first, so their messages are what the user sees on any machine.
        lib = None
        if plugin is not None or (self.manifest is not None and self.manifest.plugin_library is not None):
            lib = resolve_plugin_library(self.manifest, plugin) if self.manifest else Path(plugin)
            if not lib.is_file():
                raise PluginLibraryError("TensorRT plugin library %s not found" % lib)
        trt, flavour = import_tensorrt(self.manifest.builder if self.manifest else None)
        cudart = import_cudart()
        cc, gpu_name = gpu_info(cudart)
        if self.manifest is not None:
            check_compatible(self.manifest, trt.__version__, cc, scale, runtime_builder=flavour, gpu_name=gpu_name)
        self.trt, self.cudart, self.flavour = trt, cudart, flavour
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.plugin_library = None
        if lib is not None:
            try:
                trt.get_plugin_registry().load_library(str(lib))
            except Exception as e:  # TensorRT raises plain exceptions for dlopen failures
                raise PluginLibraryError("cannot load TensorRT plugin library %s: %s" % (lib, e)) from None
            self.plugin_library = lib
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise ModelError("TensorRT could not deserialize %s (built with another TensorRT version or GPU, or a "
                             "plugin is missing; see the messages above)" % path)
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise BackendOutOfMemory("cannot create an execution context (GPU memory)")
        self._find_tensors()
        self.stream = _check(cudart, cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._alloc()
        self.use_cuda_graphs = use_cuda_graphs
        self._graphs: dict = {}
        self._capture_failed: set = set()  # shapes whose capture failed once: always run ordinarily
        self._settled = False  # an ordinary enqueue + sync ran since the last set_input_shape
        self._last_shape = None
        m = self.manifest
        self.precision = m.precision if m else ("fp16" if self.in_dtype == np.float16 else "fp32")
        self.graph = m.graph if m else "?"
        self.scale = m.scale if m else self._infer_scale()
        if scale is not None and self.scale != scale:
            raise ScaleMismatchError("engine %s upscales x%d, but x%d was requested" % (path, self.scale, scale))

    # --- setup -----------------------------------------------------------------------------------------------
    def _find_tensors(self):
        trt, eng = self.trt, self.engine
        names = [eng.get_tensor_name(i) for i in range(eng.num_io_tensors)]
        inputs = [n for n in names if eng.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if eng.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1:
            raise ModelError("engine has %d inputs; an SMSR engine has one ('lr')" % len(inputs))
        self.in_name = inputs[0]
        self.sr_name = "sr" if "sr" in outputs else outputs[0]
        self.masks_name = "masks" if "masks" in outputs else None
        self.has_masks = self.masks_name is not None
        self.in_dtype = np.dtype(trt.nptype(eng.get_tensor_dtype(self.in_name)))
        self.out_dtypes = {n: np.dtype(trt.nptype(eng.get_tensor_dtype(n))) for n in outputs}
        pmin, _popt, pmax = eng.get_tensor_profile_shape(self.in_name, 0)
        mult = int(self.manifest.extra.get("pad_multiple", 1)) if self.manifest else 1
        self.profile_min, self.profile_max = tuple(pmin), tuple(pmax)
        self.limits = Limits(min_hw=(pmin[2], pmin[3]), max_hw=(pmax[2], pmax[3]), multiple=mult,
                             max_batch=pmax[0])

    def _infer_scale(self) -> int:
        shape = tuple(self.profile_min)
        self.context.set_input_shape(self.in_name, shape)
        out = tuple(self.context.get_tensor_shape(self.sr_name))
        return out[2] // shape[2]

    def _alloc(self):
        """Buffers for the largest shape of the profile: fixed addresses make CUDA graphs replayable."""
        n, _, h, w = self.profile_max
        self.context.set_input_shape(self.in_name, self.profile_max)
        self.buffers = {self.in_name: _Buffer(self.cudart, n * 3 * h * w * self.in_dtype.itemsize, self.in_dtype)}
        for name, dt in self.out_dtypes.items():
            shape = tuple(self.context.get_tensor_shape(name))
            self.buffers[name] = _Buffer(self.cudart, int(np.prod(shape)) * dt.itemsize, dt)
        for name, buf in self.buffers.items():
            self.context.set_tensor_address(name, int(buf.device))

    # --- inference -------------------------------------------------------------------------------------------
    def _enqueue(self, shapes: dict):
        cudart, s = self.cudart, self.stream
        H2D, D2H = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        inb = self.buffers[self.in_name]
        nbytes = int(np.prod(shapes[self.in_name])) * inb.dtype.itemsize
        _check(cudart, cudart.cudaMemcpyAsync(inb.device, inb.host_ptr, nbytes, H2D, s), "cudaMemcpyAsync")
        if not self.context.execute_async_v3(int(s)):
            raise BackendRunError("TensorRT execute_async_v3 failed for input %s (see the TensorRT messages above)"
                                  % "×".join(map(str, shapes[self.in_name])))
        for name in self.out_dtypes:
            b = self.buffers[name]
            nb = int(np.prod(shapes[name])) * b.dtype.itemsize
            _check(cudart, cudart.cudaMemcpyAsync(b.host_ptr, b.device, nb, D2H, s), "cudaMemcpyAsync")

    def _capturable(self) -> bool:
        """TensorRT-RTX: only when the context says so (unknown API: never). TensorRT 10: yes."""
        if self.flavour != "tensorrt-rtx":
            return True
        check = getattr(self.context, "is_stream_capturable", None)
        if check is None:
            return False
        try:
            return bool(check(int(self.stream)))
        except Exception:  # noqa: BLE001 - a failing query means "don't capture"
            return False

    def _capture(self, shapes: dict):
        """Record copies + enqueue into a CUDA graph. Any failure ends the capture and discards what was recorded."""
        cudart, s = self.cudart, self.stream
        mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        _check(cudart, cudart.cudaStreamBeginCapture(s, mode), "cudaStreamBeginCapture")
        graph = exe = None
        try:
            try:
                self._enqueue(shapes)
            finally:  # always end the capture, even when the enqueue failed, so the stream is usable again
                graph = _check(cudart, cudart.cudaStreamEndCapture(s), "cudaStreamEndCapture")
            exe = _check(cudart, cudart.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        except BaseException:
            if graph is not None:
                cudart.cudaGraphDestroy(graph)
            cudart.cudaGetLastError()  # clear the error state the failed capture left
            raise
        return graph, exe

    def _launch(self, shape):
        _check(self.cudart, self.cudart.cudaGraphLaunch(self._graphs[shape][1], self.stream), "cudaGraphLaunch")

    def _run_ordinary(self, shapes: dict):
        self._enqueue(shapes)
        _check(self.cudart, self.cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        self._settled = True

    def _run_with_graph(self, shape, shapes: dict):
        if shape in self._graphs:
            self._launch(shape)
            return
        try:
            self._graphs[shape] = self._capture(shapes)
        except Exception as e:  # noqa: BLE001 - e.g. a plugin or an RTX engine that is not capture-safe
            self._capture_failed.add(shape)
            if isinstance(e, CudaError) and "cudaStreamBeginCapture" in str(e):
                self.use_cuda_graphs = False  # stream capture itself is unsupported here
            self._run_ordinary(shapes)
            return
        self._launch(shape)

    def run(self, x, want_masks=False):
        x = np.asarray(x)
        n, c, h, w = x.shape
        lo, hi = self.profile_min, self.profile_max
        if not (lo[0] <= n <= hi[0] and lo[2] <= h <= hi[2] and lo[3] <= w <= hi[3]):
            raise BackendRunError("input %s outside the engine profile %s..%s (the pipeline pads/tiles to fit)"
                                  % (x.shape, lo, hi))
        shape = (n, c, h, w)
        if shape != self._last_shape:
            if not self.context.set_input_shape(self.in_name, shape):
                raise BackendRunError("TensorRT rejected input shape %s" % (shape,))
            self._last_shape = shape
            self._settled = False
        shapes = {self.in_name: shape}
        for name in self.out_dtypes:
            shapes[name] = tuple(self.context.get_tensor_shape(name))
        np.copyto(self.buffers[self.in_name].host_view(shape), x, casting="unsafe")
        try:
            use_graph = (self.use_cuda_graphs and self._settled and shape not in self._capture_failed
                         and (shape in self._graphs or (len(self._graphs) < MAX_GRAPHS and self._capturable())))
            if use_graph:
                self._run_with_graph(shape, shapes)
            else:
                self._run_ordinary(shapes)
            _check(self.cudart, self.cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        except CudaError as e:
            raise BackendRunError("CUDA error during inference: %s" % e) from None
        sr = self.buffers[self.sr_name].host_view(shapes[self.sr_name]).astype(np.float32)
        masks = None
        if want_masks and self.masks_name:
            masks = self.buffers[self.masks_name].host_view(shapes[self.masks_name]).astype(np.float32)
        return sr, masks

    def describe(self) -> str:
        s = super().describe()
        if self.plugin_library:
            s += ", plugin %s" % self.plugin_library
        return s

    def close(self):
        cudart = getattr(self, "cudart", None)
        if cudart is None:
            return
        for graph, exe in getattr(self, "_graphs", {}).values():
            cudart.cudaGraphExecDestroy(exe)
            cudart.cudaGraphDestroy(graph)
        self._graphs = {}
        for b in getattr(self, "buffers", {}).values():
            b.free()
        self.buffers = {}
        if getattr(self, "stream", None) is not None:
            cudart.cudaStreamDestroy(self.stream)
            self.stream = None
        self.context = self.engine = self.runtime = None
