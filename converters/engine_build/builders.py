"""One build path for TensorRT (10.x on Jetson, 10.x/11.x on servers) and TensorRT-RTX (RTX PCs).

Their Python APIs are near-identical; the adapters differ only in what they target:
- TensorRT builds for the GPU it runs on (needs one); optional hardware compatibility "ampere+".
- TensorRT-RTX builds ahead of time, on a CPU too, for listed compute capabilities (ComputeCapability.SMxx);
  never CURRENT without a GPU.
Networks are always strongly typed: FP16 comes from the ONNX types, INT8 from Q/DQ nodes (TensorRT 11 has no
other way, TensorRT 10 supports it, TensorRT-RTX too).
"""
from __future__ import annotations

import importlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .gpu import GpuInfo, detect_gpu
from .layer_info import int8_problems, parse_layers, plugin_layers, summary
from .plugin_archs import PluginArchError, PluginArchs, read_plugin_archs, refusal_message, uncovered
from .profile import Profile

MODULES = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx"}
TAGS = {"tensorrt": "trt", "tensorrt-rtx": "trtrtx"}
# Without a GPU to ask, TensorRT-RTX targets the consumer RTX generations: Turing, Ampere, Ada, Blackwell
# (for the deploy graph: those the plugin library has kernels for, see plugin_archs.py).
DEFAULT_RTX_CCS = ("7.5", "8.6", "8.9", "12.0")
HARDWARE_COMPAT = ("none", "ampere+")
INPUT_NAME = "lr"


class BuilderUnavailable(RuntimeError):
    """No usable TensorRT builder (not installed, or cannot build here); the message says what to do."""


class BuildError(RuntimeError):
    """The ONNX parser or the builder failed; the message carries the builder's own errors."""


class PluginTargetError(BuilderUnavailable):
    """The plugin library has no GPU code for a target compute capability (the engine would build, then fail on
    every enqueue); the message names the targets, what the library carries and how to fix it."""


@dataclass
class BuildOptions:
    profile: Profile
    opt_level: int = 3
    workspace_bytes: int = 1 << 30
    compute_capabilities: list[str] | None = None
    hardware_compatibility: str = "none"
    timing_cache: Path | None = None
    plugin_library: Path | None = None
    verbose: bool = False
    progress: bool = True
    precision: str = "fp16"  # of the ONNX graph (strongly typed); fp32 turns TF32 off so FP32 means FP32


@dataclass
class BuildResult:
    engine: bytes
    seconds: float
    compute_capabilities: list[str]
    gpu_name: str | None
    timing_cache_saved: bool
    phases: list[str] = field(default_factory=list)
    plugin_cuda_archs: list[str] | None = None  # ["sm_75", ..., "compute_75"]; None: no plugin or no sidecar
    # INT8 deploy graphs: per plugin layer (ONNX node), the types the builder's layer information gives its inputs
    # and output; None when not checked (not INT8, no plugin, or the builder logged no layer information).
    plugin_layer_types: dict[str, dict] | None = None


def short_version(version: str) -> str:
    return ".".join(version.split(".")[:3])


def cc_to_sm(cc: str) -> str:
    major, minor = cc.split(".")
    return f"SM{int(major)}{int(minor)}"


def target_tag(ccs: list[str], hardware_compatibility: str = "none") -> str:
    tag = "-".join(cc_to_sm(c).lower() for c in ccs)
    return tag + ("-ampplus" if hardware_compatibility == "ampere+" else "")


def engine_name(scale: int, graph: str, precision: str, builder: str, version: str, ccs: list[str],
                hardware_compatibility: str = "none") -> str:
    """e.g. smsr_x2_deploy_int8_trtrtx1.7.1_sm86.engine"""
    return (f"smsr_x{scale}_{graph}_{precision}_{TAGS[builder]}{short_version(version)}_"
            f"{target_tag(ccs, hardware_compatibility)}.engine")


# CUDA errors TensorRT-RTX logs when it probes for a GPU that is not there (cudaError 35 / 100); the build succeeds.
_NO_GPU_MESSAGES = ("cudaError 35", "cudaError 100", "CUDA driver version is insufficient", "no CUDA-capable device")


class _Logger:
    """Collects builder messages (errors are reported in BuildError) and prints them when verbose."""

    def __new__(cls, trt, verbose: bool):
        class Logger(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)
                self.min_severity = trt.ILogger.Severity.VERBOSE  # the layer information is a VERBOSE message
                self.messages: list[tuple[object, str]] = []
                self.no_gpu_messages = 0

            def log(self, severity, msg):
                bad = severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR)
                if bad and any(m in msg for m in _NO_GPU_MESSAGES):
                    self.no_gpu_messages += 1  # TensorRT-RTX on a CPU-only machine: harmless, the build goes on
                    bad = False
                self.messages.append((severity, msg))
                if verbose or bad:
                    print(f"  [{str(severity).split('.')[-1]}] {msg}", flush=True)

            def errors(self) -> list[str]:
                bad = (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR)
                return [m for s, m in self.messages if s in bad and not any(x in m for x in _NO_GPU_MESSAGES)]

        return Logger()


class BuilderAdapter:
    name = ""

    def __init__(self, trt):
        self.trt = trt
        self.version: str = trt.__version__

    # --- per-builder differences ------------------------------------------------------------------------
    def resolve_targets(self, options: BuildOptions) -> tuple[list[str], str | None]:
        raise NotImplementedError

    # --- plugin coverage ---------------------------------------------------------------------------------
    @staticmethod
    def plugin_archs(options: BuildOptions) -> PluginArchs | None:
        """What the plugin library was compiled for (its .archs sidecar); None without plugin or sidecar."""
        if options.plugin_library is None:
            return None
        try:
            return read_plugin_archs(options.plugin_library)
        except PluginArchError as exc:
            raise PluginTargetError(str(exc)) from exc

    def check_plugin_targets(self, options: BuildOptions, ccs: list[str]) -> PluginArchs | None:
        """Refuse targets the plugin cannot run on; say when it has no architecture list to check against."""
        archs = self.plugin_archs(options)
        if options.plugin_library is None:
            return None
        if archs is None:
            print(f"  warning: {options.plugin_library} has no architecture list (.archs sidecar, written by "
                  "cmake next to the library): cannot check that it has kernels for compute capability "
                  f"{', '.join(ccs)}", flush=True)
            return None
        bad = uncovered(archs, ccs)
        if bad:
            raise PluginTargetError(refusal_message(options.plugin_library, archs, ccs, bad))
        if options.hardware_compatibility == "ampere+" and not any(p <= 80 for p in archs.ptx):
            raise PluginTargetError(
                f"--hardware-compatibility ampere+ makes the engine run on any GPU from compute capability 8.0 on, "
                f"but the plugin library {options.plugin_library} carries only {archs.describe()}: rebuild it with "
                "PTX for compute_80 or lower (the default SMSR_CUDA_ARCHITECTURES does), or drop ampere+")
        jit = [c for c in ccs if archs.via_ptx_only(c)]
        if jit:
            print(f"  note: the plugin runs on compute capability {', '.join(jit)} through PTX JIT compilation "
                  "(the driver compiles it at first use)", flush=True)
        return archs

    def apply_targets(self, config, ccs: list[str], options: BuildOptions) -> None:
        raise NotImplementedError

    # --- shared path -------------------------------------------------------------------------------------
    def network_flags(self) -> int:
        flag = getattr(self.trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        return 0 if flag is None else 1 << int(flag)  # TensorRT 11: always strongly typed, flag may be gone

    def load_plugin(self, path: Path) -> None:
        handle = self.trt.get_plugin_registry().load_library(str(path))
        if handle is None:
            raise BuildError(f"{self.name} could not load the plugin library {path}")

    def build(self, onnx_path: Path, options: BuildOptions) -> BuildResult:
        trt = self.trt
        ccs, gpu_name = self.resolve_targets(options)
        archs = self.check_plugin_targets(options, ccs)
        logger = _Logger(trt, options.verbose)
        if options.plugin_library is not None:
            self.load_plugin(options.plugin_library)
        builder = trt.Builder(logger)
        network = builder.create_network(self.network_flags())
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errs = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
            raise BuildError(f"{self.name} ONNX parser rejected {onnx_path}: " + "; ".join(errs or logger.errors()))
        config = builder.create_builder_config()
        # INT8 deploy graph: the builder's layer information (DETAILED) says which types each plugin layer got.
        check_int8 = options.precision == "int8" and options.plugin_library is not None
        if check_int8 and hasattr(trt, "ProfilingVerbosity"):
            config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
        plugin_nodes = [network.get_layer(i).name for i in range(network.num_layers)
                        if network.get_layer(i).type == trt.LayerType.PLUGIN_V3]
        profile = builder.create_optimization_profile()
        profile.set_shape(INPUT_NAME, options.profile.min, options.profile.opt, options.profile.max)
        config.add_optimization_profile(profile)
        config.builder_optimization_level = options.opt_level
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_bytes)
        if options.hardware_compatibility == "ampere+":
            config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
        if options.precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
            config.clear_flag(trt.BuilderFlag.TF32)  # the FP32 engine is the accuracy baseline
        self.apply_targets(config, ccs, options)
        cache = None
        if options.timing_cache is not None:
            data = options.timing_cache.read_bytes() if options.timing_cache.is_file() else b""
            cache = config.create_timing_cache(data)
            if cache is None or not config.set_timing_cache(cache, False):
                cache = config.create_timing_cache(b"")  # stale/foreign cache: start a new one
                config.set_timing_cache(cache, False)
        monitor = None
        if options.progress and hasattr(trt, "IProgressMonitor"):
            from .progress import make_progress_monitor
            monitor = make_progress_monitor(trt)
            config.progress_monitor = monitor
        start = time.perf_counter()
        serialized = builder.build_serialized_network(network, config)
        seconds = time.perf_counter() - start
        if serialized is None:
            errors = logger.errors()
            hint = ""
            if any("OutOfMemory" in e for e in errors):
                hint = (f" (a layer or the plugin needs more scratch memory than the workspace limit of "
                        f"{options.workspace_bytes >> 20} MiB: raise --workspace-mb, or lower the profile's max shape "
                        "or batch)")
            raise BuildError(f"{self.name} failed to build {onnx_path}: "
                             + ("; ".join(errors[-5:]) or "no error message (rerun with --verbose)") + hint)
        layer_types = self.check_int8_plugin_layers(logger, plugin_nodes) if check_int8 else None
        saved = False
        if options.timing_cache is not None:
            blob = bytes(config.get_timing_cache().serialize())
            tmp = options.timing_cache.with_name(options.timing_cache.name + ".tmp")
            tmp.write_bytes(blob)
            os.replace(tmp, options.timing_cache)
            saved = True
        return BuildResult(bytes(serialized), seconds, ccs, gpu_name, saved,
                           list(monitor.phases_seen) if monitor else [],
                           archs.as_list() if archs is not None else None, layer_types)

    @staticmethod
    def check_int8_plugin_layers(logger, plugin_nodes: list[str]) -> dict[str, dict] | None:
        """Every plugin layer of an INT8 deploy graph must have got INT8 x and weights (the builder's layer
        information). Blocks kept float on purpose (--int8-blocks float: float x) are reported, not refused."""
        layers = parse_layers([m for _, m in logger.messages])
        if not layers:
            print("  note: the builder logged no layer information: the plugin layers' INT8 inputs are not checked",
                  flush=True)
            return None
        found = plugin_layers(layers, plugin_nodes)
        missing = [n for n in plugin_nodes if n not in found]
        if missing:
            raise BuildError(f"the builder's layer information has no plugin layer for {', '.join(missing)}")
        out, bad = {}, []
        for node in plugin_nodes:
            info = summary(found[node])
            if info["x"] == "Int8":
                bad += int8_problems(found[node])
            out[node] = info
        if bad:
            raise BuildError("INT8 deploy graph: plugin layers did not get the INT8 inputs of the INT8 op contract: "
                             + "; ".join(bad))
        n8 = sum(1 for v in out.values() if v["x"] == "Int8")
        print(f"  plugin layers with INT8 x and weights (builder layer information): {n8} of {len(out)}", flush=True)
        return out


class TensorRTAdapter(BuilderAdapter):
    name = "tensorrt"

    def resolve_targets(self, options):
        if options.compute_capabilities:
            raise BuilderUnavailable("TensorRT builds for the GPU it runs on; --compute-capability is a TensorRT-RTX "
                                     "option (use --hardware-compatibility ampere+ for Ampere-or-newer GPUs)")
        gpu = detect_gpu()
        if gpu is None:
            raise BuilderUnavailable("TensorRT needs a GPU to build an engine and none was found; on a CPU-only "
                                     "machine use --builder tensorrt-rtx (RTX PCs) or build on the target "
                                     "(Jetson: JetPack's TensorRT)")
        return [gpu.compute_capability], gpu.name

    def apply_targets(self, config, ccs, options):
        pass


class TensorRTRTXAdapter(BuilderAdapter):
    name = "tensorrt-rtx"

    def supported_ccs(self) -> list[str]:
        out = []
        for member in self.trt.ComputeCapability.__members__:
            if member.startswith("SM"):
                digits = member[2:]
                out.append(f"{digits[:-1]}.{digits[-1]}")
        return out

    def resolve_targets(self, options):
        supported = self.supported_ccs()
        gpu: GpuInfo | None = None
        ccs = list(options.compute_capabilities or [])
        if not ccs:
            gpu = detect_gpu()
            if gpu and gpu.compute_capability in supported:
                ccs = [gpu.compute_capability]
            else:
                ccs = list(DEFAULT_RTX_CCS)
                archs = self.plugin_archs(options)
                if archs is not None:  # deploy graph: only the defaults the plugin has kernels for
                    covered = [c for c in ccs if archs.covers(c)]
                    if not covered:
                        raise PluginTargetError(refusal_message(options.plugin_library, archs, ccs, ccs))
                    if covered != ccs:
                        print(f"  note: targeting compute capability {', '.join(covered)}: the plugin library has no "
                              f"kernels for {', '.join(c for c in ccs if c not in covered)}", flush=True)
                    ccs = covered
        bad = [c for c in ccs if c not in supported]
        if bad:
            raise BuilderUnavailable(f"TensorRT-RTX {self.version} cannot target compute capability "
                                     f"{', '.join(bad)}; supported: {', '.join(supported)}")
        return ccs, gpu.name if gpu else None

    def apply_targets(self, config, ccs, options):
        config.num_compute_capabilities = len(ccs)
        for i, cc in enumerate(ccs):
            config.set_compute_capability(getattr(self.trt.ComputeCapability, cc_to_sm(cc)), i)


ADAPTERS = {"tensorrt": TensorRTAdapter, "tensorrt-rtx": TensorRTRTXAdapter}


def _import(name: str):
    if name == "tensorrt-rtx":
        _ensure_rtx_symlink()
    try:
        return importlib.import_module(MODULES[name])
    except Exception as exc:  # ImportError, or a stub package's own error
        return exc


def _ensure_rtx_symlink() -> None:
    """The TensorRT-RTX wheel's parser aborts the process when it loads a plugin unless libtensorrt_rtx.so exists
    (engine.trt_rtx_setup); apply the fix when we can, say what to run when we cannot."""
    try:
        from engine import trt_rtx_setup
    except ImportError:
        return
    ok, _ = trt_rtx_setup.status()
    if not ok and trt_rtx_setup.libs_dir() is not None:
        try:
            trt_rtx_setup.apply()
        except OSError as exc:
            raise BuilderUnavailable(f"TensorRT-RTX needs its packaging fix ({exc}); run "
                                     "`python -m engine.trt_rtx_setup` with write access to site-packages") from exc


def load_builder(choice: str = "auto") -> BuilderAdapter:
    """The builder for --builder: 'tensorrt', 'tensorrt-rtx', or 'auto' (TensorRT when it is installed and a GPU
    is present, else TensorRT-RTX)."""
    if choice not in ("auto", *MODULES):
        raise ValueError(f"unknown builder {choice!r}; expected auto, tensorrt or tensorrt-rtx")
    order = [choice] if choice != "auto" else (["tensorrt", "tensorrt-rtx"] if detect_gpu() else ["tensorrt-rtx",
                                                                                                    "tensorrt"])
    problems = []
    for name in order:
        mod = _import(name)
        if isinstance(mod, Exception):
            problems.append(f"{name}: {type(mod).__name__}: {mod}")
            continue
        if choice == "auto" and name == "tensorrt" and detect_gpu() is None:
            problems.append("tensorrt: installed, but there is no GPU to build on")
            continue
        return ADAPTERS[name](mod)
    raise BuilderUnavailable(
        "the engine step needs TensorRT and none is usable here (" + "; ".join(problems) + "). Install "
        "TensorRT-RTX (`pip install tensorrt-rtx-cu13 && python -m engine.trt_rtx_setup`, builds on any machine "
        "for RTX GPUs) or TensorRT 10.x (JetPack on Jetson, tensorrt wheels/packages with a GPU), or pass "
        "--onnx-only to stop after the ONNX artifacts")
