"""`python -m engine export-triton`: write a Triton Inference Server model repository.

Models (each one folder with config.pbtxt and version 1/):
    <name>_py   Python backend running our runtime (ONNX Runtime CPU + our SMSRSparseBlock op): any tritonserver
                with the Python backend, e.g. the one in the nvidia-pytriton wheel.
    <name>_ort  Triton's onnxruntime backend with our op library (model_operations { op_library_filename }).
    <name>_trt  Triton's tensorrt backend: the engine(s) as model.plan, one per compute capability
                (cc_model_filenames), the TensorRT plugin loaded at server start (launch line in LAUNCH.txt).
All take fixed-size tiles (N×3×T×T in, N×3×sT×sT out): the dynamic batcher only joins requests of equal shape, and
the client (`--backend triton`) tiles and blends. config.pbtxt is written as text (no tritonclient needed here).
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from .errors import ManifestError, ModelError, OutputError, PluginLibraryError, UsageError

ORT_LIB = "libsmsr_ort_ops.so"
TRT_PLUGIN = "libsmsr_trt_plugin.so"
_ONNX_TYPES = {1: "TYPE_FP32", 10: "TYPE_FP16"}  # onnx.TensorProto.FLOAT / FLOAT16


def onnx_io(path: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]], dict]:
    """([(input name, triton type)], [(output name, triton type)], metadata) of an ONNX graph; metadata also gets
    "masks_channels" (the second output's channel count) when the graph fixes it."""
    import onnx
    try:
        m = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf/IO errors of every kind
        raise ModelError("%s: cannot read ONNX model: %s" % (path, e)) from None

    def typed(vs):
        out = []
        for v in vs:
            t = v.type.tensor_type.elem_type
            if t not in _ONNX_TYPES:
                raise ModelError("%s: tensor %r has element type %d; only float32/float16 are served"
                                 % (path, v.name, t))
            out.append((v.name, _ONNX_TYPES[t]))
        return out

    inits = {i.name for i in m.graph.initializer}
    meta = {p.key: p.value for p in m.metadata_props}
    if len(m.graph.output) > 1:
        dims = m.graph.output[1].type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].dim_value > 0:
            meta["masks_channels"] = dims[1].dim_value
    return (typed([i for i in m.graph.input if i.name not in inits]), typed(m.graph.output), meta)


def fixed_size_onnx(src: Path, dst: Path, tile: int, scale: int) -> None:
    """Copy of `src` with H, W of the input fixed to `tile` (outputs: scale*tile for sr, tile for masks); N stays
    free. The same file run locally (`--backend ort --model dst`) gives the tiles the server sees."""
    import onnx
    m = onnx.load(str(src))
    first_out = m.graph.output[0].name
    for v in list(m.graph.input) + list(m.graph.output):
        dims = v.type.tensor_type.shape.dim
        if len(dims) != 4:
            continue
        side = tile * scale if v.name == first_out else tile
        for d in (dims[2], dims[3]):
            d.Clear()
            d.dim_value = side
    onnx.save(m, str(dst))


def _dims(dims) -> str:
    return "[ %s ]" % ", ".join(str(d) for d in dims)


def _io_block(kind: str, items) -> str:
    body = ",\n".join('  {\n    name: "%s"\n    data_type: %s\n    dims: %s\n  }' % (n, t, _dims(d))
                      for n, t, d in items)
    return "%s [\n%s\n]\n" % (kind, body)


def model_config(name: str, *, backend: str | None = None, platform: str | None = None, max_batch: int,
                 inputs, outputs, instances: int, gpu: bool, queue_delay_us: int, extra: str = "",
                 params: dict | None = None) -> str:
    """config.pbtxt text. inputs/outputs: [(name, TYPE_x, dims without the batch dim)]."""
    s = 'name: "%s"\n' % name
    s += ('backend: "%s"\n' % backend) if backend else ('platform: "%s"\n' % platform)
    s += "max_batch_size: %d\n" % max_batch
    s += _io_block("input", inputs) + _io_block("output", outputs)
    s += "dynamic_batching {\n  max_queue_delay_microseconds: %d\n}\n" % queue_delay_us
    s += "instance_group [\n  {\n    count: %d\n    kind: %s\n  }\n]\n" % (instances, "KIND_GPU" if gpu else "KIND_CPU")
    for k, v in (params or {}).items():
        s += 'parameters {\n  key: "%s"\n  value: { string_value: "%s" }\n}\n' % (k, v)
    return s + extra


def _shapes(ins, outs, tile: int, scale: int, masks_channels: int | None = None):
    """Triton dims per tensor: input 3×T×T, sr 3×sT×sT, masks K×T×T."""
    i = [(n, t, (3, tile, tile)) for n, t in ins]
    o = [(n, t, (3, tile * scale, tile * scale) if k == 0 else (masks_channels or 5, tile, tile))
         for k, (n, t) in enumerate(outs)]
    return i, o


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _scale_of(meta: dict, path: Path) -> int:
    try:
        return int(meta["smsr.scale"])
    except (KeyError, ValueError):
        raise ModelError("%s has no smsr.scale metadata; export it with converters/export_onnx.py" % path) from None


def export_python_model(repo: Path, name: str, onnx_path: Path, tile: int, max_batch: int, instances: int,
                        queue_delay_us: int, threads: int | None, engine_path: Path) -> Path:
    ins, outs, meta = onnx_io(onnx_path)
    scale = _scale_of(meta, onnx_path)
    d = repo / name
    (d / "1").mkdir(parents=True, exist_ok=True)
    fixed_size_onnx(onnx_path, d / "1" / "model.onnx", tile, scale)
    shutil.copyfile(Path(__file__).with_name("triton_python_model.py"), d / "1" / "model.py")
    _copy_ort_lib_if_needed(onnx_path, d / "1")
    # The Python backend receives FP32 whatever the graph's type (OrtBackend casts), and returns FP32.
    i, o = _shapes([(n, "TYPE_FP32") for n, _ in ins], [(n, "TYPE_FP32") for n, _ in outs], tile, scale,
                   meta.get("masks_channels"))
    params = {"onnx_model": "model.onnx", "engine_path": str(engine_path), "threads": str(threads or 0)}
    _write(d / "config.pbtxt", model_config(name, backend="python", max_batch=max_batch, inputs=i, outputs=o,
                                            instances=instances, gpu=False, queue_delay_us=queue_delay_us,
                                            params=params))
    return d


def _copy_ort_lib_if_needed(onnx_path: Path, dest: Path) -> Path | None:
    if b"SMSRSparseBlock" not in onnx_path.read_bytes():
        return None
    from .ort_ops import BUILD_HINT, find_custom_op_library
    lib = find_custom_op_library()
    if lib is None:
        raise PluginLibraryError("%s is a deploy graph and needs %s, which was not found; %s"
                                 % (onnx_path, ORT_LIB, BUILD_HINT))
    shutil.copyfile(lib, dest / ORT_LIB)
    return dest / ORT_LIB


def export_ort_model(repo: Path, name: str, onnx_path: Path, tile: int, max_batch: int, instances: int,
                     queue_delay_us: int, server_root: str, gpu: bool) -> Path:
    ins, outs, meta = onnx_io(onnx_path)
    scale = _scale_of(meta, onnx_path)
    d = repo / name
    (d / "1").mkdir(parents=True, exist_ok=True)
    fixed_size_onnx(onnx_path, d / "1" / "model.onnx", tile, scale)
    extra = ""
    if _copy_ort_lib_if_needed(onnx_path, d / "1"):
        # Triton opens this path on the server: where the repository is mounted there (--server-model-root).
        extra = 'model_operations {\n  op_library_filename: [ "%s/%s/1/%s" ]\n}\n' % (server_root, name, ORT_LIB)
    i, o = _shapes(ins, outs, tile, scale, meta.get("masks_channels"))
    _write(d / "config.pbtxt", model_config(name, backend="onnxruntime", max_batch=max_batch, inputs=i, outputs=o,
                                            instances=instances, gpu=gpu, queue_delay_us=queue_delay_us,
                                            extra=extra))
    return d


def _trt_major(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        raise UsageError("TensorRT version %r: expected like 10.14 or 10.14.1" % version) from None


def plugin_trt_version(lib: Path) -> str | None:
    """TensorRT version of the headers the plugin was compiled with, from its CMake sidecar <lib>.archs (JSON key
    "tensorrt"); None for a library without one (copied alone, or built before the key existed)."""
    import json
    side = Path(str(lib) + ".archs")
    try:
        v = json.loads(side.read_text()).get("tensorrt") if side.is_file() else None
    except (OSError, ValueError, AttributeError):
        return None
    return v if isinstance(v, str) and v else None


def _check_plugin_trt(lib: Path, engine_trt: str, server_trt: str | None, log) -> None:
    """A plugin for another TensorRT major fails at load ("could not find plugin" or a crash): refuse it here."""
    built = plugin_trt_version(lib)
    if built is None:
        log("note: %s has no .archs sidecar naming its TensorRT version; it is the file the engine was built with "
            "(sha256 checked), so it is taken to match TensorRT %s" % (lib, engine_trt))
        return
    for what, v in (("the engine (manifest)", engine_trt), ("the server (--server-trt-version)", server_trt)):
        if v is not None and _trt_major(built) != _trt_major(v):
            raise PluginLibraryError("plugin %s was built for TensorRT %s but %s uses TensorRT %s: the major "
                                     "versions must match; rebuild the plugin against that TensorRT"
                                     % (lib, built, what, v))


def export_trt_model(repo: Path, name: str, engines: list[Path], tile: int, instances: int, queue_delay_us: int,
                     server_root: str, server_trt: str | None, onnx_path: Path | None, plugin: Path | None,
                     log) -> tuple[Path, str]:
    """The tensorrt_plan model; returns (folder, launch text)."""
    from .manifest import check_compatible, find_manifest, load_manifest, resolve_plugin_library
    manifests = []
    for e in engines:
        if not e.is_file():
            raise ModelError("engine %s not found" % e)
        mp = find_manifest(e)
        if mp is None:
            raise ManifestError("engine %s has no manifest (<engine>.json, written by build_engine.py): its I/O, "
                                "profile and TensorRT version are needed for the Triton config" % e)
        manifests.append(load_manifest(mp))
    m0 = manifests[0]
    for e, m in zip(engines, manifests):
        if m.builder != "tensorrt":
            raise ManifestError("engine %s was built with %s; Triton's tensorrt backend runs standard TensorRT "
                                "engines only (rebuild with --builder tensorrt)" % (e, m.builder))
        if (m.scale, m.graph, m.precision) != (m0.scale, m0.graph, m0.precision):
            raise ManifestError("engines %s and %s differ in scale/graph/precision; one model needs the same "
                                "network for every GPU" % (engines[0], e))
        if _trt_major(m.builder_version) != _trt_major(m0.builder_version):
            raise ManifestError("engines %s (TensorRT %s) and %s (TensorRT %s) need different TensorRT majors; "
                                "one server runs one TensorRT" % (engines[0], m0.builder_version, e,
                                                                  m.builder_version))
        if server_trt is not None:
            # The plugin is the file the engine was built with (sha256 below), so it speaks the manifest's TensorRT.
            check_compatible(m, server_trt, None)
        n_min, h_min, w_min = m.min_shape
        n_max, h_max, w_max = m.max_shape
        if not (h_min <= tile <= h_max and w_min <= tile <= w_max):
            raise UsageError("--tile %d is outside the profile of %s (H %d..%d, W %d..%d)"
                             % (tile, e, h_min, h_max, w_min, w_max))
        if n_min > 1:
            raise UsageError("engine %s needs at least %d images per call (profile min N); Triton sends 1..N"
                             % (e, n_min))
    max_batch = min(m.max_shape[0] for m in manifests)
    src = onnx_path or (Path(m0.extra["onnx_path"]) if m0.extra.get("onnx_path") else None)
    mc = None
    if src is not None and src.is_file():
        ins, outs, meta = onnx_io(src)
        mc = meta.get("masks_channels")
    else:
        t = "TYPE_FP16" if m0.precision == "fp16" else "TYPE_FP32"
        ins, outs = [("lr", t)], [("sr", t), ("masks", t)]
        log("note: the engine's ONNX is not at hand (give --model): assuming I/O lr/sr/masks of %s" % t)
    d = repo / name
    (d / "1").mkdir(parents=True, exist_ok=True)
    extra = ""
    if len(engines) == 1:
        shutil.copyfile(engines[0], d / "1" / "model.plan")
    else:
        entries = []
        for e, m in zip(engines, manifests):
            if not m.compute_capabilities:
                raise ManifestError("engine %s: its manifest names no compute capability; several plans need "
                                    "one each (cc_model_filenames)" % e)
            for cc in m.compute_capabilities:
                fname = "model_sm%s.plan" % cc.replace(".", "")
                shutil.copyfile(e, d / "1" / fname)
                entries.append('  {\n    key: "%s"\n    value: "%s"\n  }' % (cc, fname))
        extra = "cc_model_filenames [\n%s\n]\n" % ",\n".join(entries)
    i, o = _shapes(ins, outs, tile, m0.scale, mc)
    _write(d / "config.pbtxt", model_config(name, platform="tensorrt_plan", max_batch=max_batch, inputs=i,
                                            outputs=o, instances=instances, gpu=True,
                                            queue_delay_us=queue_delay_us, extra=extra))
    launch = ""
    if m0.graph == "deploy" or plugin is not None:
        lib = resolve_plugin_library(m0, plugin)
        _check_plugin_trt(lib, m0.builder_version, server_trt, log)
        shutil.copyfile(lib, d / TRT_PLUGIN)
        on_server = "%s/%s/%s" % (server_root, name, TRT_PLUGIN)
        launch = ("# The engine needs the SMSRSparseBlock plugin (built for TensorRT %s; the server's TensorRT "
                  "must have the same major version%s).\n"
                  "tritonserver --model-repository=%s --backend-config=tensorrt,plugins=%s\n"
                  "# or: LD_PRELOAD=%s tritonserver --model-repository=%s\n"
                  % (m0.builder_version, "" if m0.version_compatible else ", and the same version for an engine "
                     "built without version compatibility", server_root, on_server, on_server, server_root))
    return d, launch


def export_repository(out: Path, *, name: str, tile: int, onnx_path: Path | None = None,
                      engines: list[Path] | None = None, kinds: list[str] | None = None, max_batch: int = 8,
                      instances: int = 1, queue_delay_us: int = 2000, threads: int | None = None,
                      server_root: str = "/models", server_trt: str | None = None, plugin: Path | None = None,
                      ort_gpu: bool = False, engine_path: str | None = None, log=print) -> dict[str, Path]:
    """Write the models asked for (default: every kind the inputs allow); returns kind -> model folder."""
    engines = engines or []
    if kinds is None:
        kinds = (["python", "onnxruntime"] if onnx_path else []) + (["tensorrt"] if engines else [])
    if not kinds:
        raise UsageError("give --model MODEL.onnx (python and onnxruntime models) and/or --engine ENGINE "
                         "(tensorrt model)")
    if tile < 2 or tile % 2:
        raise UsageError("--tile must be an even number >= 2 (the mask branch pools 2×2), got %d" % tile)
    if onnx_path is not None and not onnx_path.is_file():
        raise ModelError("ONNX model %s not found" % onnx_path)
    for k in kinds:
        if k in ("python", "onnxruntime") and onnx_path is None:
            raise UsageError("the %s model needs --model MODEL.onnx" % k)
        if k == "tensorrt" and not engines:
            raise UsageError("the tensorrt model needs --engine ENGINE")
    out.mkdir(parents=True, exist_ok=True)
    made: dict[str, Path] = {}
    engine_root = engine_path or Path(__file__).resolve().parent.parent  # where model.py imports `engine` from
    if "python" in kinds:
        made["python"] = export_python_model(out, name + "_py", onnx_path, tile, max_batch, instances,
                                             queue_delay_us, threads, engine_root)
    if "onnxruntime" in kinds:
        made["onnxruntime"] = export_ort_model(out, name + "_ort", onnx_path, tile, max_batch, instances,
                                               queue_delay_us, server_root, ort_gpu)
    if "tensorrt" in kinds:
        d, launch = export_trt_model(out, name + "_trt", engines, tile, instances, queue_delay_us, server_root,
                                     server_trt, onnx_path, plugin, log)
        made["tensorrt"] = d
        if launch:
            _write(out / "LAUNCH.txt", launch)
            log(launch.rstrip())
    for k, d in made.items():
        log("wrote %s model %s" % (k, d))
    return made


def add_parser(sub) -> None:
    p = sub.add_parser("export-triton", help="write a Triton Inference Server model repository")
    p.add_argument("-o", "--out", type=Path, required=True, help="model repository folder (created)")
    p.add_argument("--model", type=Path, help="ONNX graph (deploy or reference) for the python/onnxruntime models")
    p.add_argument("--engine", type=Path, nargs="+", help="TensorRT engine(s) with manifests; several: one per "
                                                          "compute capability (cc_model_filenames)")
    p.add_argument("--kinds", nargs="+", choices=("python", "onnxruntime", "tensorrt"),
                   help="models to write (default: all the inputs allow)")
    p.add_argument("--name", default=None, help="model name prefix (default: smsr_x<scale>)")
    p.add_argument("--tile", type=int, default=128, help="fixed tile side T in LR pixels (default: 128)")
    p.add_argument("--max-batch", type=int, default=8, help="max_batch_size of python/onnxruntime models "
                                                            "(tensorrt: from the engine profile)")
    p.add_argument("--instances", type=int, default=1, help="model instances (per GPU for GPU models)")
    p.add_argument("--queue-delay-us", type=int, default=2000, help="dynamic batcher wait for more requests")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads per instance of the python model")
    p.add_argument("--server-model-root", default="/models",
                   help="where the repository is mounted on the server (absolute paths in the configs)")
    p.add_argument("--server-trt-version", help="TensorRT version of the Triton server (e.g. 10.14.1): checked "
                                                "against the engine manifest")
    p.add_argument("--plugin", type=Path, help="TensorRT plugin library (default: from the engine manifest)")
    p.add_argument("--ort-gpu", action="store_true", help="KIND_GPU instances for the onnxruntime model")
    p.add_argument("--server-engine-path", help="folder holding the `engine` package on the server, for the python "
                                                "model (default: this checkout; $SMSR_ENGINE_PATH there overrides)")


def cmd_export_triton(args) -> int:
    name = args.name
    if name is None:
        scale = None
        if args.model is not None and args.model.is_file():
            scale = onnx_io(args.model)[2].get("smsr.scale")
        elif args.engine:
            from .manifest import find_manifest, load_manifest
            mp = find_manifest(args.engine[0])
            scale = load_manifest(mp).scale if mp else None
        name = "smsr_x%s" % (scale or "")
    for flag, v in (("--max-batch", args.max_batch), ("--instances", args.instances)):
        if v < 1:
            raise UsageError("%s must be >= 1" % flag)
    try:
        _export(args, name)
    except OSError as e:  # a folder that cannot be written, a full disk
        raise OutputError("cannot write the model repository %s: %s" % (args.out, e)) from None
    return 0


def _export(args, name: str) -> None:
    export_repository(args.out, name=name, tile=args.tile, onnx_path=args.model, engines=args.engine,
                      kinds=args.kinds, max_batch=args.max_batch, instances=args.instances,
                      queue_delay_us=args.queue_delay_us, threads=args.threads,
                      server_root=args.server_model_root.rstrip("/"), server_trt=args.server_trt_version,
                      plugin=args.plugin, ort_gpu=args.ort_gpu, engine_path=args.server_engine_path,
                      log=lambda s: print(s, file=sys.stderr))
