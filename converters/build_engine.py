"""Checkpoint (or ONNX) -> ONNX graphs -> TensorRT / TensorRT-RTX engine with a manifest.

    python converters/build_engine.py --weights smsr_x2_official.pt --scale 2 --precision fp16 --out-dir engines/
    python converters/build_engine.py --weights W --scale 2 --precision int8 --calib-data DIR --out-dir OUT
    python converters/build_engine.py --onnx smsr_x2_reference.onnx --precision fp16 --reference --builder tensorrt-rtx

Steps: (1) ONNX: export the reference graph (standard ops) and the deploy graph (SMSRSparseBlock nodes), FP32 and
FP16, and, with --calib-data, the INT8 Q/DQ graphs with a calibration report (the INT8 deploy graph's
SMSRSparseBlock nodes are the op's INT8 variant unless --int8-blocks float); every graph is checked (ONNX checker +
shape inference, INT8 nodes against the op contract). (2) Engine (skipped with --onnx-only): build the deploy graph (or with --reference the dense
reference graph, the baseline) at --precision with TensorRT (Jetson/servers) or TensorRT-RTX (RTX PCs; builds on a
CPU too). Networks are strongly typed: the precision is the ONNX graph's. Next to the engine: <engine>.json, the
manifest the runtime checks before loading (engine/manifest.py).
Exit codes: 0 done, 2 bad input, 3 no usable TensorRT (ONNX artifacts are written), 4 engine build failed.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from converters.engine_build.profile import PRESETS, Profile, ProfileError, make_profile  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
# Where CMake puts the plugin (plugins/smsrSparseBlock/CMakeLists.txt; build/lib in earlier layouts).
PLUGIN_CANDIDATES = ("build/plugins/smsrSparseBlock/libsmsr_trt_plugin.so", "build/lib/libsmsr_trt_plugin.so")
PRECISIONS = ("fp32", "fp16", "int8")
EXIT_BAD_INPUT, EXIT_NO_TENSORRT, EXIT_BUILD_FAILED = 2, 3, 4


class UsageError(ValueError):
    """Bad combination of inputs; printed as one line, exit code 2."""


@dataclass
class OnnxSet:
    scale: int
    checkpoint_sha256: str | None
    graphs: dict[str, Path]  # 'reference', 'reference_fp16', 'reference_int8', 'deploy', ...
    calibration_report: Path | None = None


def default_plugin_library() -> Path | None:
    import os
    env = os.environ.get("SMSR_PLUGIN_LIBRARY")
    if env:
        return Path(env)
    for rel in PLUGIN_CANDIDATES:
        if (REPO_ROOT / rel).is_file():
            return REPO_ROOT / rel
    return None


def parse_args(argv: list[str] | None, prog: str = "python converters/build_engine.py") -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[6:]))
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", type=Path, help="SMSR checkpoint (.pt)")
    src.add_argument("--onnx", type=Path, help="an exported SMSR graph (FP32, or already at --precision)")
    ap.add_argument("--scale", type=int, choices=(2, 3, 4), help="upscaling factor (required with --weights)")
    ap.add_argument("--precision", choices=PRECISIONS, default="fp16")
    ap.add_argument("--reference", action="store_true",
                    help="build the dense reference graph (standard ops, no plugin): the baseline to compare with")
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--onnx-only", action="store_true", help="stop after the ONNX artifacts (no TensorRT needed)")
    b = ap.add_argument_group("engine")
    b.add_argument("--builder", choices=("auto", "tensorrt", "tensorrt-rtx"), default="auto",
                   help="auto: TensorRT when installed and a GPU is present, else TensorRT-RTX")
    b.add_argument("--plugin", type=Path, default=None,
                   help="SMSRSparseBlock plugin library (default: $SMSR_PLUGIN_LIBRARY, else "
                        "build/plugins/smsrSparseBlock/libsmsr_trt_plugin.so)")
    b.add_argument("--profile", choices=PRESETS, default="photo",
                   help="input profile preset: photo (LR 16..512, opt 256), 720p/1080p (video frames by OUTPUT size)")
    b.add_argument("--batch", type=int, default=1, help="batch size (N of the profile's opt and max)")
    b.add_argument("--min-shape", help="LR input min shape, HxW or NxCxHxW (overrides the preset)")
    b.add_argument("--opt-shape", help="LR input opt shape")
    b.add_argument("--max-shape", help="LR input max shape")
    b.add_argument("--timing-cache", type=Path, default=None,
                   help="timing cache file to reuse and update (default: OUT/timing_<builder><version>.cache)")
    b.add_argument("--no-timing-cache", action="store_true")
    b.add_argument("--opt-level", type=int, default=3, choices=range(0, 6), metavar="0-5",
                   help="builder optimization level (default 3; lower builds faster)")
    b.add_argument("--workspace-mb", type=int, default=1024,
                   help="builder workspace limit in MiB (default 1024, fits 8 GB Jetsons)")
    b.add_argument("--compute-capability", nargs="+", metavar="CC",
                   help="TensorRT-RTX targets, e.g. 8.6 8.9 (default: this GPU, or 7.5 8.6 8.9 12.0 without one)")
    b.add_argument("--hardware-compatibility", choices=("none", "ampere+"), default="none")
    b.add_argument("--verbose", action="store_true", help="print the builder's log")
    b.add_argument("--no-progress", action="store_true")
    c = ap.add_argument_group("INT8 calibration")
    c.add_argument("--calib-data", type=Path, help="folder of calibration images (LR images for the model input)")
    c.add_argument("--calib-method", choices=("max", "percentile", "entropy"), default="percentile")
    c.add_argument("--calib-percentile", type=float, default=99.999)
    c.add_argument("--calib-mode", choices=("images", "patches"), default="images")
    c.add_argument("--calib-images", type=int, default=None, help="use the first N images (sorted)")
    c.add_argument("--calib-patch", type=int, default=64, help="patch side in LR pixels (patches mode)")
    c.add_argument("--calib-patches-per-image", type=int, default=8)
    c.add_argument("--calib-seed", type=int, default=0)
    c.add_argument("--eval-data", default="auto",
                   help="benchmark folder (HR/, LR_bicubic/X<s>/) for the INT8 accuracy check; 'auto' finds it "
                        "from --calib-data, 'none' skips it")
    c.add_argument("--int8-keep-float", nargs="+", default=[], metavar="REGEX",
                   help="node-name regexes kept in float besides the defaults (mean shift, mask branch, tail); "
                        "see python -m calibration.layerwise")
    c.add_argument("--int8-blocks", choices=("int8", "float"), default="int8",
                   help="SMSRSparseBlock nodes of the INT8 deploy graph: int8 (default: INT8 inside the op, int8 "
                        "input from a QuantizeLinear, int8 weights) or float (the float op between "
                        "DequantizeLinear outputs, as before)")
    c.add_argument("--threads", type=int, default=None, help="CPU threads for calibration/evaluation")
    return ap.parse_args(argv)


def log(msg: str) -> None:
    print(msg, flush=True)


# --- step 1: ONNX -----------------------------------------------------------------------------------------------
def _onnx_meta(path: Path) -> dict[str, str]:
    import onnx
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def prepare_onnx(args: argparse.Namespace) -> OnnxSet:
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    if args.weights is not None:
        if args.scale is None:
            raise UsageError("--scale is required with --weights")
        from converters.export_onnx import export_all
        from converters.model import sha256_of
        log(f"exporting ONNX graphs of {args.weights} (x{args.scale}) to {out} (unchanged ones are reused) ...")
        graphs = dict(export_all(args.weights, args.scale, out, reuse=True, log=log))
        ckpt = sha256_of(args.weights)
        onnx_set = OnnxSet(args.scale, ckpt, graphs)
    else:
        onnx_set = _from_onnx(args)
    if args.calib_data is not None or args.precision == "int8":
        _add_int8(args, onnx_set)
    for key, path in sorted(onnx_set.graphs.items()):
        log(f"  {key:<16} {path}  ({path.stat().st_size / 1e6:.1f} MB, checked)")
    return onnx_set


def _from_onnx(args: argparse.Namespace) -> OnnxSet:
    path = args.onnx
    if not path.is_file():
        raise UsageError(f"ONNX file {path} not found")
    meta = _onnx_meta(path)
    kind, prec = meta.get("smsr.graph"), meta.get("smsr.precision")
    if kind not in ("reference", "deploy") or prec not in PRECISIONS or "smsr.scale" not in meta:
        raise UsageError(f"{path} lacks SMSR metadata (smsr.graph/smsr.precision/smsr.scale): export it with "
                         "converters/export_onnx.py or pass --weights")
    scale = int(meta["smsr.scale"])
    if args.scale is not None and args.scale != scale:
        raise UsageError(f"{path} is an x{scale} graph but --scale {args.scale} was given")
    if (kind == "reference") != bool(args.reference) and not args.onnx_only:
        raise UsageError(f"{path} is a {kind} graph; " + ("drop --reference" if kind == "deploy" else
                                                           "pass --reference to build it"))
    key = kind if prec == "fp32" else f"{kind}_{prec}"
    graphs = {key: path}
    if prec == "fp32" and args.precision == "fp16":
        from converters.export_onnx import validate
        from converters.onnx_fp16 import convert_to_fp16
        import onnx
        proto = convert_to_fp16(onnx.load(str(path)))
        for p in proto.metadata_props:
            if p.key == "smsr.precision":
                p.value = "fp16"
        validate(proto)
        graphs[f"{kind}_fp16"] = args.out_dir / f"smsr_x{scale}_{kind}_fp16.onnx"
        onnx.save(proto, str(graphs[f"{kind}_fp16"]))
    elif prec != "fp32" and prec != args.precision:
        raise UsageError(f"{path} is a {prec} graph; pass its FP32 graph to build {args.precision}")
    if args.precision == "int8" and prec == "fp32" and kind != "reference":
        raise UsageError("INT8 from an ONNX file is calibrated on the reference graph: pass --onnx with the FP32 "
                         "reference graph (and --reference), or --weights to make both graphs")
    return OnnxSet(scale, meta.get("smsr.checkpoint_sha256"), graphs)


def _add_int8(args: argparse.Namespace, onnx_set: OnnxSet) -> None:
    if any(k.endswith("_int8") for k in onnx_set.graphs):
        return  # an INT8 graph was given
    if args.calib_data is None:
        raise UsageError("--precision int8 needs --calib-data (a folder of LR images) for the activation ranges")
    if "reference" not in onnx_set.graphs:
        raise UsageError("INT8 calibration needs the FP32 reference graph")
    from calibration.data import CalibrationConfig
    from calibration.pipeline import find_eval_data, make_int8_graphs
    config = CalibrationConfig(mode=args.calib_mode, max_images=args.calib_images, patch_size=args.calib_patch,
                               patches_per_image=args.calib_patches_per_image, seed=args.calib_seed)
    if args.eval_data == "none":
        eval_data = None
    elif args.eval_data == "auto":
        eval_data = find_eval_data(args.calib_data, onnx_set.scale)
    else:
        eval_data = Path(args.eval_data)
    art = make_int8_graphs(onnx_set.graphs["reference"], onnx_set.graphs.get("deploy"), args.calib_data,
                           args.out_dir, onnx_set.scale, args.calib_method, config, args.calib_percentile,
                           eval_data, args.threads, log, tuple(args.int8_keep_float), args.int8_blocks)
    onnx_set.graphs["reference_int8"] = art.reference
    if art.deploy is not None:
        onnx_set.graphs["deploy_int8"] = art.deploy
    onnx_set.calibration_report = art.report_json
    log(f"  calibration report: {art.report_json} / {art.report_md.name}")


def check_calibration_input(args: argparse.Namespace) -> None:
    """--precision int8 from a checkpoint needs --calib-data; every calibration image must decode."""
    if args.precision == "int8" and args.calib_data is None and args.weights is not None:
        raise UsageError("--precision int8 needs --calib-data (a folder of LR images) for the activation ranges")
    if args.calib_data is None:
        return
    from calibration.data import CalibrationConfig, check_calibration_folder
    n = check_calibration_folder(args.calib_data, CalibrationConfig(mode=args.calib_mode,
                                                                    max_images=args.calib_images))
    log(f"calibration folder {args.calib_data}: {n} image{'s' if n != 1 else ''} checked")


# --- step 2: engine -----------------------------------------------------------------------------------------------
def build_profile(args: argparse.Namespace, scale: int) -> Profile:
    return make_profile(scale, args.profile, args.batch, args.min_shape, args.opt_shape, args.max_shape)


def pick_builder(args: argparse.Namespace):
    """The builder adapter, chosen before any (slow) export; says in words when --builder auto falls back to
    TensorRT-RTX, whose engines run only on RTX-class GPUs with TensorRT-RTX."""
    from converters.engine_build.builders import DEFAULT_RTX_CCS, _import, detect_gpu, load_builder
    adapter = load_builder(args.builder)  # BuilderUnavailable -> exit 3
    if args.builder == "auto" and adapter.name == "tensorrt-rtx":
        why = ("TensorRT is installed but there is no GPU to build on" if not isinstance(_import("tensorrt"),
                                                                                        Exception)
               else "TensorRT not found")
        gpu = detect_gpu()
        ccs = args.compute_capability or ([gpu.compute_capability] if gpu else list(DEFAULT_RTX_CCS))
        targets = ", ".join("sm" + c.replace(".", "") for c in ccs)
        log(f"note: {why}: building a TensorRT-RTX engine for {targets}; it will not run on Jetson or with "
            "TensorRT 10 (build on the Jetson with JetPack's TensorRT for that, or pass --builder tensorrt)")
    return adapter


def build_engine_step(args: argparse.Namespace, onnx_set: OnnxSet, adapter=None) -> Path:
    from converters.engine_build.builders import BuildOptions, engine_name, load_builder, short_version
    from engine.manifest import EngineManifest, file_sha256, manifest_path_for

    graph = "reference" if args.reference else "deploy"
    key = graph if args.precision == "fp32" else f"{graph}_{args.precision}"
    if key not in onnx_set.graphs:
        raise UsageError(f"no {key} graph to build (have: {', '.join(sorted(onnx_set.graphs))})")
    onnx_path = onnx_set.graphs[key]
    plugin = None
    if graph == "deploy":
        plugin = args.plugin or default_plugin_library()
        if plugin is None or not plugin.is_file():
            raise UsageError(
                f"the deploy graph needs the SMSRSparseBlock TensorRT plugin library, not found at "
                f"{plugin or ' or '.join(PLUGIN_CANDIDATES)}: build it (cmake -S . -B build -DTensorRT_ROOT=... && "
                "cmake --build build), pass --plugin PATH, or build the dense graph with --reference")
        plugin = plugin.resolve()
    profile = build_profile(args, onnx_set.scale)
    adapter = adapter or load_builder(args.builder)  # BuilderUnavailable -> exit 3
    cache = None
    if not args.no_timing_cache:
        cache = args.timing_cache or args.out_dir / f"timing_{adapter.name}{short_version(adapter.version)}.cache"
    opts = BuildOptions(profile=profile, opt_level=args.opt_level, workspace_bytes=args.workspace_mb << 20,
                        compute_capabilities=args.compute_capability,
                        hardware_compatibility=args.hardware_compatibility, timing_cache=cache,
                        plugin_library=plugin, verbose=args.verbose, progress=not args.no_progress,
                        precision=args.precision)
    log(f"building {key} engine with {adapter.name} {adapter.version}: {onnx_path.name}, profile {profile.describe()}"
        + (f", plugin {plugin}" if plugin else ""))
    result = adapter.build(onnx_path, opts)
    name = engine_name(onnx_set.scale, graph, args.precision, adapter.name, adapter.version,
                       result.compute_capabilities, args.hardware_compatibility)
    engine_path = args.out_dir / name
    engine_path.write_bytes(result.engine)
    manifest = EngineManifest(
        scale=onnx_set.scale, precision=args.precision, graph=graph, builder=adapter.name,
        builder_version=adapter.version, profile=profile.as_dict(),
        compute_capabilities=result.compute_capabilities, gpu_name=result.gpu_name,
        plugin_library={"path": str(plugin), "sha256": file_sha256(plugin)} if plugin else None,
        onnx_sha256=file_sha256(onnx_path), checkpoint_sha256=onnx_set.checkpoint_sha256,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        hardware_compatibility=args.hardware_compatibility, version_compatible=False,
        extra={"build_seconds": round(result.seconds, 3), "engine_bytes": len(result.engine),
               "engine_sha256": file_sha256(engine_path), "onnx_path": str(onnx_path.resolve()),
               "builder_optimization_level": args.opt_level, "workspace_bytes": args.workspace_mb << 20,
               "timing_cache": str(cache) if cache else None,
               "plugin_cuda_archs": result.plugin_cuda_archs,
               "plugin_layer_types": result.plugin_layer_types,  # INT8 deploy: builder layer information
               "calibration_report": str(onnx_set.calibration_report) if onnx_set.calibration_report else None})
    manifest_path = manifest.save(manifest_path_for(engine_path))
    log(f"engine: {engine_path} ({len(result.engine) / 1e6:.2f} MB, built in {result.seconds:.1f} s)")
    log(f"manifest: {manifest_path}")
    return engine_path


def main(argv: list[str] | None = None, prog: str = "python converters/build_engine.py") -> int:
    args = parse_args(argv, prog)
    from converters.engine_build.builders import BuilderUnavailable, BuildError
    try:
        if not args.onnx_only:
            build_profile(args, args.scale or 2)  # fail on a bad profile before the (slow) ONNX steps
        check_calibration_input(args)  # and on a bad calibration folder before exporting anything
        adapter = None
        if not args.onnx_only:
            try:
                adapter = pick_builder(args)  # and on a missing TensorRT before exporting anything
            except BuilderUnavailable as exc:
                print(f"error: nothing was exported: {exc}", file=sys.stderr)
                return EXIT_NO_TENSORRT
        t0 = time.perf_counter()
        onnx_set = prepare_onnx(args)
        log(f"ONNX artifacts ready in {time.perf_counter() - t0:.1f} s")
        if args.onnx_only:
            return 0
        build_engine_step(args, onnx_set, adapter)
    except (UsageError, ProfileError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BuilderUnavailable as exc:
        print(f"error: ONNX artifacts are in {args.out_dir}, but {exc}", file=sys.stderr)
        return EXIT_NO_TENSORRT
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BUILD_FAILED
    except OSError as exc:  # an output folder that cannot be created or written, a full disk
        print(f"error: cannot write {exc.filename or args.out_dir}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:
        from converters.model import CheckpointError
        from calibration.data import CalibrationDataError
        from calibration.int8_graph import Int8GraphError
        if isinstance(exc, (CheckpointError, CalibrationDataError, Int8GraphError)):
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
