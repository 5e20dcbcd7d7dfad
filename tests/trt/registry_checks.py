"""Host-side checks of the SMSRSparseBlock plugin through TensorRT-RTX's plugin registry (Python bindings).

Runs as its own process (a TensorRT abort must not take pytest down); CPU only, never creates a runtime.
Covers what the bindings reach on a C++ plugin: load_library -> the creator registered by getCreators, its
field names, createPlugin in the build and runtime phases from good and bad field sets (errors must arrive in
the builder's logger through the library's logger finder), the core/build properties, destructor balance and
deregistration. Method-level checks (clone, serialization round trip, formats, shapes) are in the C++ host
test; the engine builds call every build-phase method through a real builder.

    python tests/trt/registry_checks.py --plugin build/plugins/smsrSparseBlock/libsmsr_trt_plugin.so --report r.json
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import sys
from pathlib import Path

import numpy as np

DENSE = [24, 9, 3, 0]  # official x2 model, block 0
SPARSE = [40, 55, 61, 64]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--plugin", required=True)
    ap.add_argument("--report", required=True)
    args = ap.parse_args(argv)
    results: list[dict] = []

    def check(name: str, ok: bool, detail: str = "") -> None:
        results.append({"name": name, "ok": bool(ok), "detail": detail})

    import tensorrt_rtx as trt

    messages: list[str] = []

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)

        def log(self, severity, msg):
            messages.append(msg)

    logger = Logger()
    builder = trt.Builder(logger)  # makes `logger` the one the plugin's logger finder finds

    lib_path = str(Path(args.plugin).resolve())
    registry = trt.get_plugin_registry()
    handle = registry.load_library(lib_path)
    check("load_library returns a handle", handle is not None)
    creator = registry.get_creator("SMSRSparseBlock", "2", "")
    check("creator SMSRSparseBlock/2 registered", creator is not None)
    if creator is None:
        Path(args.report).write_text(json.dumps(results, indent=1))
        return 1
    # Same library image as the registry's: reads the plugin-object counter.
    lib = ctypes.CDLL(lib_path)
    lib.smsrSparseBlockLiveObjects.restype = ctypes.c_int64
    live = lib.smsrSparseBlockLiveObjects

    check("creator interface", creator.interface_info.kind == "PLUGIN CREATOR_V3ONE", creator.interface_info.kind)
    check("creator name/version/namespace", (creator.name, creator.plugin_version, creator.plugin_namespace)
          == ("SMSRSparseBlock", "2", ""))
    fields = [(f.name, f.type, f.size) for f in creator.field_names]
    f32 = trt.PluginFieldType.FLOAT32
    check("field names", fields == [("dense_channels", trt.PluginFieldType.INT32, 4),
                                    ("sparse_channels", trt.PluginFieldType.INT32, 4),
                                    ("x_scale", f32, 1), ("feature_scales", f32, 4),
                                    ("weight_scales", f32, 0), ("collect_scales", f32, 0)], repr(fields))

    keep_alive = []  # PluginField only points at the numpy buffers

    def fc(**kw):
        items = []
        for name, (values, ftype, dtype) in kw.items():
            keep_alive.append(np.array(values, dtype=dtype))
            items.append(trt.PluginField(name, keep_alive[-1], ftype))
        return trt.PluginFieldCollection(items)

    i32 = trt.PluginFieldType.INT32
    good = fc(dense_channels=(DENSE, i32, np.int32), sparse_channels=(SPARSE, i32, np.int32))
    plugins = []
    for phase in (trt.TensorRTPhase.BUILD, trt.TensorRTPhase.RUNTIME):
        p = creator.create_plugin("smb0", good, phase)
        check(f"create_plugin from fields ({phase})", p is not None)
        if p is not None:
            plugins.append(p)
    check("live plugin objects after two creations", live() == 2, str(live()))
    if plugins:
        core = plugins[0].get_capability_interface(trt.PluginCapabilityType.CORE)
        build = plugins[0].get_capability_interface(trt.PluginCapabilityType.BUILD)
        check("core interface", (core.plugin_name, core.plugin_version, core.plugin_namespace)
              == ("SMSRSparseBlock", "2", ""))
        check("build interface: one output", build.num_outputs == 1)
        check("build interface: metadata names the fields",
              build.metadata_string == "dense_channels=24,9,3,0 sparse_channels=40,55,61,64", build.metadata_string)
        del core, build

    # INT8 mode: the four scale fields (block 0: sum Cout = 256, C = 64), in both phases.
    int8_scales = dict(x_scale=([0.02], f32, np.float32), feature_scales=([0.05, 0.04, 0.03, 0.025], f32, np.float32),
                       weight_scales=(np.arange(1, 257) * 1e-3, f32, np.float32),
                       collect_scales=(np.arange(1, 65) * 2e-3, f32, np.float32))
    base = dict(dense_channels=(DENSE, i32, np.int32), sparse_channels=(SPARSE, i32, np.int32))
    int8_good = fc(**base, **int8_scales)
    before = live()
    for phase in (trt.TensorRTPhase.BUILD, trt.TensorRTPhase.RUNTIME):
        messages.clear()
        p8 = creator.create_plugin("smb_int8", int8_good, phase)
        meta = p8.get_capability_interface(trt.PluginCapabilityType.BUILD).metadata_string if p8 is not None else ""
        check(f"INT8 create_plugin from the four scale fields ({phase})",
              p8 is not None and meta.endswith("int8 x_scale=0.020000") and not messages, f"{meta!r} {messages!r}")
        del p8
    gc.collect()
    check("INT8 plugins destroyed", live() == before, str(live()))

    bad_sets = [
        ("INT8 without weight_scales", fc(**base, **{k: v for k, v in int8_scales.items() if k != "weight_scales"}),
         "given without 'weight_scales' (256 floats"),
        ("INT8 weight_scales 255 values", fc(**base, **{**int8_scales, "weight_scales": (np.ones(255), f32, np.float32)}),
         "field 'weight_scales' must have 256 floats"),
        ("INT8 zero feature scale", fc(**base, **{**int8_scales, "feature_scales": ([0.05, 0, 0.03, 0.025], f32,
                                                                                    np.float32)}),
         "every feature_scales value must be finite and > 0"),
        ("INT8 integer x_scale", fc(**base, **{**int8_scales, "x_scale": ([1], i32, np.int32)}),
         "field 'x_scale' must hold floats"),
        ("no fields", trt.PluginFieldCollection([]), "missing field 'dense_channels'"),
        ("3 values", fc(dense_channels=(DENSE[:3], i32, np.int32), sparse_channels=(SPARSE, i32, np.int32)),
         "'dense_channels' must have 4 values"),
        ("float values", fc(dense_channels=(DENSE, trt.PluginFieldType.FLOAT32, np.float32),
                            sparse_channels=(SPARSE, i32, np.int32)), "'dense_channels' must hold integers"),
        ("negative", fc(dense_channels=(DENSE, i32, np.int32), sparse_channels=([40, -1, 61, 64], i32, np.int32)),
         "sparse_channels[1] = -1 is negative"),
        ("empty layer", fc(dense_channels=([24, 0, 3, 0], i32, np.int32),
                           sparse_channels=([40, 0, 61, 64], i32, np.int32)), "layer 1 has no output channel"),
    ]
    for label, fields_bad, needle in bad_sets:
        messages.clear()
        p = creator.create_plugin("bad_node", fields_bad, trt.TensorRTPhase.BUILD)
        hit = [m for m in messages if needle in m and "SMSRSparseBlock 'bad_node'" in m]
        check(f"bad fields rejected: {label}", p is None and bool(hit), f"plugin={p!r} messages={messages!r}")

    del plugins, p
    gc.collect()
    check("destructor balance: no plugin object left", live() == 0, str(live()))

    registry.deregister_library(handle)
    check("deregister_library removes the creator", registry.get_creator("SMSRSparseBlock", "2", "") is None)
    del builder

    Path(args.report).write_text(json.dumps(results, indent=1))
    failed = [r for r in results if not r["ok"]]
    for r in failed:
        print(f"FAIL {r['name']}: {r['detail']}", file=sys.stderr)
    print(f"{len(results)} checks, {len(failed)} failures")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
