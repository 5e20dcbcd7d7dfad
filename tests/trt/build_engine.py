"""Build a TensorRT-RTX engine from an ONNX graph with the SMSRSparseBlock plugin library loaded.

Runs as its own process (tests call it through subprocess): a TensorRT abort must not take pytest down.
CPU only: builds ahead of time for a fixed compute capability and never creates a runtime (that needs a GPU).

    python tests/trt/build_engine.py --plugin build/lib/libsmsr_trt_plugin.so --onnx model.onnx \
        --shape lr:1x3x16x16:1x3x64x64:1x3x128x128 --engine out.engine --report report.json

The JSON report holds: ok, stage reached, parser errors, the builder log (warnings and errors; all of it with
--verbose), network layers and which are plugin layers (with each input's type after parsing), build time, engine
size and whether the engine carries the plugin. --layer-info adds the builder's own information on the finished
engine's plugin layers (profiling verbosity DETAILED; converters/engine_build/layer_info.py): the types and formats
each plugin layer's inputs and outputs really got. Lines the plugin logs with SMSR_PLUGIN_TRACE=1 (one per
configurePlugin: the descriptors TensorRT chose) are kept in "plugin_trace" whatever their severity.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TRACE_PREFIX = "SMSR_PLUGIN_TRACE"


class CaptureLogger:
    """TensorRT logger keeping messages for the report (and echoing errors to stderr)."""

    def __init__(self, trt, verbose: bool, layer_info: bool = False):
        self.messages: list[tuple[str, str]] = []
        self.trace: list[str] = []        # the plugin's SMSR_PLUGIN_TRACE lines
        self.layer_info: list[str] = []   # the builder's "Layers:" messages (VERBOSE)
        min_sev = trt.ILogger.Severity.VERBOSE if verbose else trt.ILogger.Severity.WARNING
        outer = self

        class _Logger(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)
                self.min_severity = trt.ILogger.Severity.VERBOSE if layer_info else min_sev

            def log(self, severity, msg):
                if msg.startswith(TRACE_PREFIX):
                    outer.trace.append(msg)
                if msg.startswith("Layers:"):
                    outer.layer_info.append(msg)
                if severity <= min_sev:
                    outer.messages.append((str(severity).split(".")[-1], msg))
                if severity <= trt.ILogger.Severity.ERROR:
                    print(f"[TRT {severity}] {msg}", file=sys.stderr)

        self.logger = _Logger()


def parse_shape(text: str):
    """'name:1x3x16x16:1x3x64x64:1x3x128x128' -> (name, min, opt, max)."""
    name, *dims = text.split(":")
    if len(dims) != 3:
        raise argparse.ArgumentTypeError(f"--shape {text!r}: expected name:min:opt:max")
    return (name, *[tuple(int(v) for v in d.split("x")) for d in dims])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plugin", required=True, help="plugin library (libsmsr_trt_plugin.so)")
    ap.add_argument("--load", choices=("registry", "dlopen"), default="registry",
                    help="registry: IPluginRegistry.load_library (libsmsr_trt_plugin.so); dlopen: ctypes.CDLL after "
                         "TensorRT is loaded, as trtexec --staticPlugins / polygraphy --plugins do "
                         "(libsmsr_trt_plugin_autoreg.so)")
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--shape", action="append", type=parse_shape, default=[], help="name:min:opt:max per dynamic input")
    ap.add_argument("--engine", help="write the serialized engine here")
    ap.add_argument("--report", required=True, help="JSON report path")
    ap.add_argument("--compute-capability", default="SM86", help="build target (never CURRENT on a CPU machine)")
    ap.add_argument("--verbose", action="store_true", help="keep the whole builder log in the report")
    ap.add_argument("--layer-info", action="store_true",
                    help="record the builder's layer information of the plugin layers (profiling verbosity DETAILED)")
    args = ap.parse_args(argv)

    report: dict = {"ok": False, "stage": "start", "onnx": args.onnx}

    def finish(code: int) -> int:
        Path(args.report).write_text(json.dumps(report, indent=1))
        return code

    import tensorrt_rtx as trt

    cap = CaptureLogger(trt, args.verbose, args.layer_info)
    report["log"] = cap.messages
    report["plugin_trace"] = cap.trace
    report["tensorrt_rtx"] = trt.__version__

    plugin = Path(args.plugin).resolve()
    if not plugin.is_file():
        report["error"] = f"plugin library {plugin} not found"
        return finish(2)
    registry = trt.get_plugin_registry()
    if args.load == "registry":
        handle = registry.load_library(str(plugin))
    else:
        import ctypes

        handle = ctypes.CDLL(str(plugin))  # registers itself with the loaded TensorRT library's registry
    report["stage"] = "load_library"
    creator = registry.get_creator("SMSRSparseBlock", "2", "")
    report["creator_found"] = creator is not None
    if handle is None or creator is None:
        report["error"] = "plugin library did not register SMSRSparseBlock version 2"
        return finish(2)

    builder = trt.Builder(cap.logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, cap.logger)
    report["stage"] = "parse"
    t0 = time.perf_counter()
    parsed = parser.parse_from_file(args.onnx)
    report["parse_seconds"] = time.perf_counter() - t0
    report["parser_errors"] = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
    if not parsed:
        report["error"] = "ONNX parse failed"
        return finish(3)

    layers = [network.get_layer(i) for i in range(network.num_layers)]
    report["num_layers"] = len(layers)
    plugin_layers = [l for l in layers if l.type == trt.LayerType.PLUGIN_V3]
    report["plugin_layers"] = [l.name for l in plugin_layers]
    report["plugin_layer_io_types"] = [
        sorted({str(l.get_input(i).dtype) for i in range(l.num_inputs)} | {str(l.get_output(0).dtype)})
        for l in plugin_layers
    ]
    # Per input, in the node's order (x, mask, w0..w3, wc, bc), then y: the network's types after parsing.
    report["plugin_layer_input_types"] = {
        l.name: [str(l.get_input(i).dtype) for i in range(l.num_inputs)] + [str(l.get_output(0).dtype)]
        for l in plugin_layers
    }
    report["inputs"] = [
        {"name": network.get_input(i).name, "shape": list(network.get_input(i).shape), "dtype": str(network.get_input(i).dtype)}
        for i in range(network.num_inputs)
    ]
    report["outputs"] = [
        {"name": network.get_output(i).name, "dtype": str(network.get_output(i).dtype)} for i in range(network.num_outputs)
    ]

    config = builder.create_builder_config()
    if args.layer_info:
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    config.num_compute_capabilities = 1
    config.set_compute_capability(getattr(trt.ComputeCapability, args.compute_capability), 0)
    shapes = {name: (mn, op, mx) for name, mn, op, mx in args.shape}
    dynamic = [t for t in report["inputs"] if any(d < 0 for d in t["shape"])]
    if dynamic:
        profile = builder.create_optimization_profile()
        for t in dynamic:
            if t["name"] not in shapes:
                report["error"] = f"input {t['name']} is dynamic {t['shape']}: give --shape {t['name']}:min:opt:max"
                return finish(4)
            profile.set_shape(t["name"], *shapes[t["name"]])
        config.add_optimization_profile(profile)

    report["stage"] = "build"
    t0 = time.perf_counter()
    blob = builder.build_serialized_network(network, config)
    report["build_seconds"] = time.perf_counter() - t0
    if blob is None:
        report["error"] = "engine build failed"
        return finish(5)
    data = bytes(blob)
    if args.layer_info:
        sys.path.insert(0, str(REPO_ROOT))
        from converters.engine_build.layer_info import parse_layers, plugin_layers as engine_plugin_layers

        found = engine_plugin_layers(parse_layers(cap.layer_info), report["plugin_layers"])
        report["engine_plugin_layers"] = {name: layer.as_dict() for name, layer in found.items()}
    report["engine_bytes"] = len(data)
    report["engine_magic"] = data[:4].decode("latin-1")
    # The engine records each plugin layer's creator name and its serialized fields (getFieldsToSerialize).
    report["engine_mentions_plugin"] = data.count(b"SMSRSparseBlock")
    report["engine_field_counts"] = {f: data.count(f.encode()) for f in ("dense_channels", "sparse_channels")}
    if args.engine:
        Path(args.engine).write_bytes(data)
    report["stage"] = "done"
    report["ok"] = True
    return finish(0)


if __name__ == "__main__":
    sys.exit(main())
