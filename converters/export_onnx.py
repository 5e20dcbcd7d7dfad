"""Export SMSR to ONNX: the reference graph (standard ops) and the deploy graph (SMSRSparseBlock nodes),
FP32 and FP16, with dynamic N/H/W.

    python -m converters.export_onnx --weights smsr_x2_official.pt --scale 2 --out-dir onnx/

Graph I/O: input "lr" N x 3 x H x W RGB on 0..255 (any H, W >= 2, odd included); outputs "sr"
N x 3 x sH x sW (unclamped) and "masks" N x 5 x H x W (the spatial mask of each block, 0/1).
"""
from __future__ import annotations

import argparse
import copy
import sys
import warnings
from pathlib import Path

import onnx
import torch

from .deploy_op import OP_DOMAIN, OP_VERSION, DeploySparseBlock
from .model import SMSR, load_smsr, sha256_of
from .onnx_fp16 import convert_to_fp16

OPSET = 17
INPUT_NAME, OUTPUT_NAMES = "lr", ("sr", "masks")
GRAPH_KINDS = ("reference", "deploy")


class _ExportWrapper(torch.nn.Module):
    def __init__(self, model: SMSR):
        super().__init__()
        self.model = model

    def forward(self, lr):
        return self.model.forward_with_masks(lr, "dense_masked")


def deploy_model(model: SMSR) -> SMSR:
    """A copy of the model whose SMBs export as SMSRSparseBlock nodes."""
    model = copy.deepcopy(model)
    for smm in model.body:
        smm.body = DeploySparseBlock(smm.body)
    return model


def _set_metadata(proto: onnx.ModelProto, meta: dict[str, str]) -> None:
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, str(v)


def export_graph(model: SMSR, path: str | Path, kind: str = "reference", fp16: bool = False,
                 metadata: dict[str, str] | None = None) -> Path:
    """Export one graph; validates it with the ONNX checker and full shape inference."""
    if kind not in GRAPH_KINDS:
        raise ValueError(f"unknown graph kind {kind!r}; expected one of {GRAPH_KINDS}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.prepare()  # cached split weights become graph constants, not traced arithmetic
    net = deploy_model(model) if kind == "deploy" else model
    dummy = torch.rand(1, 3, 24, 20) * 255
    tmp = path.with_suffix(".tmp.onnx")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _ExportWrapper(net.eval()), (dummy,), str(tmp), opset_version=OPSET, dynamo=False,
            input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
            dynamic_axes={INPUT_NAME: {0: "N", 2: "H", 3: "W"}, "sr": {0: "N", 2: "sH", 3: "sW"},
                          "masks": {0: "N", 2: "H", 3: "W"}},
            custom_opsets={OP_DOMAIN: OP_VERSION} if kind == "deploy" else None)
    proto = onnx.load(str(tmp))
    tmp.unlink()
    if fp16:
        proto = convert_to_fp16(proto)
    _set_metadata(proto, {"smsr.scale": model.scale, "smsr.graph": kind,
                          "smsr.precision": "fp16" if fp16 else "fp32", **(metadata or {})})
    proto.doc_string = f"SMSR x{model.scale} {kind} graph ({'fp16' if fp16 else 'fp32'})"
    validate(proto)
    onnx.save(proto, str(path))
    return path


def validate(proto: onnx.ModelProto) -> None:
    """ONNX checker + strict full shape inference (custom-op outputs get their type from the exporter)."""
    onnx.checker.check_model(proto, full_check=False)
    onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)


def exporter_sha256() -> str:
    """Content hash of the code that shapes the graphs: a graph exported by other code is never reused."""
    import hashlib
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for rel in ("export_onnx.py", "deploy_op.py", "onnx_fp16.py", "model/smsr.py", "model/checkpoint.py"):
        h.update((here / rel).read_bytes())
    h.update(f"torch {torch.__version__} onnx {onnx.__version__}".encode())
    return h.hexdigest()


def _reusable(path: Path, meta: dict[str, str]) -> bool:
    """An existing graph whose metadata records the same checkpoint and exporter hashes (and that still passes
    validation) is what an export would write again."""
    if not path.is_file():
        return False
    try:
        proto = onnx.load(str(path))
        props = {p.key: p.value for p in proto.metadata_props}
        if any(props.get(k) != str(v) for k, v in meta.items()):
            return False
        validate(proto)
        return True
    except Exception:  # unreadable or stale: export again
        return False


def export_all(weights: str | Path, scale: int, out_dir: str | Path, fp16: bool = True,
               kinds: tuple[str, ...] = GRAPH_KINDS, reuse: bool = False, log=None) -> dict[str, Path]:
    """Every graph for one checkpoint: {'reference': ..., 'deploy': ..., 'reference_fp16': ..., ...}.
    reuse: keep existing files exported from the same checkpoint by the same code (content hashes)."""
    try:
        ckpt = sha256_of(weights)
    except OSError:
        load_smsr(weights, scale)  # a missing or unreadable file: the CheckpointError that names it
        raise
    meta = {"smsr.checkpoint_sha256": ckpt, "smsr.exporter_sha256": exporter_sha256()}
    out_dir = Path(out_dir)
    paths, todo = {}, []
    for kind in kinds:
        for half in ((False, True) if fp16 else (False,)):
            key = f"{kind}_fp16" if half else kind
            path = out_dir / f"smsr_x{scale}_{key}.onnx"
            if reuse and _reusable(path, {**meta, "smsr.scale": scale, "smsr.graph": kind}):
                paths[key] = path
                if log:
                    log(f"  {key:<16} {path}  (unchanged: reused)")
            else:
                todo.append((key, kind, half, path))
    if todo:
        model = load_smsr(weights, scale)
        for key, kind, half, path in todo:
            paths[key] = export_graph(model, path, kind, half, meta)
    return paths


def _default_weights() -> str | None:
    from engine.home import default_weights_path
    path = default_weights_path()
    return str(path) if path.is_file() else None


def install_default_model(deploy: Path, scale: int) -> Path:
    """Copy an FP32 deploy graph into the user cache, where `smsr upscale` finds it without --model."""
    from engine.atomic_write import atomic_write
    from engine.home import default_model_path
    dest = default_model_path(scale)
    atomic_write(dest, lambda f: f.write(Path(deploy).read_bytes()))
    return dest


def main(argv: list[str] | None = None, prog: str = "python -m converters.export_onnx") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    ap.add_argument("--weights", help="SMSR checkpoint (default with --install: the one `smsr download` fetched, "
                                      "$SMSR_HOME/weights/smsr_x2_official.pt)")
    ap.add_argument("--scale", type=int, choices=(2, 3, 4), default=2, help="(default: 2)")
    ap.add_argument("--out-dir", help="where to write the graphs (required unless --install)")
    ap.add_argument("--graphs", nargs="+", choices=GRAPH_KINDS, default=None,
                    help="(default: both; with --install and no --out-dir: deploy only)")
    ap.add_argument("--no-fp16", action="store_true", help="skip the FP16 variants")
    ap.add_argument("--install", action="store_true",
                    help="also make the FP32 deploy graph the default model of `smsr upscale`/`smsr bench` "
                         "($SMSR_HOME/models/smsr_x<scale>_deploy.onnx, SMSR_HOME default ~/.cache/smsr)")
    args = ap.parse_args(argv)
    from .model import CheckpointError
    if args.weights is None:
        args.weights = _default_weights() if args.install else None
        if args.weights is None:
            from engine.home import default_weights_path
            print(f"error: give --weights CHECKPOINT (no checkpoint at {default_weights_path()}: `smsr download` "
                  "fetches the official one)", file=sys.stderr)
            return 2
    if args.out_dir is None and not args.install:
        print("error: give --out-dir DIR, or --install to set the default model", file=sys.stderr)
        return 2
    graphs = args.graphs or (["deploy"] if args.out_dir is None else list(GRAPH_KINDS))
    if args.install and "deploy" not in graphs:
        print("error: --install needs the deploy graph (drop --graphs or include deploy)", file=sys.stderr)
        return 2
    fp16 = not args.no_fp16 and args.out_dir is not None
    import tempfile
    with tempfile.TemporaryDirectory(prefix="smsr-export-") as tmp:
        out_dir = args.out_dir or tmp
        try:  # an unusable output folder is reported before the (slow) export
            Path(out_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(f"error: cannot create output folder {out_dir}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        try:
            paths = export_all(args.weights, args.scale, out_dir, fp16, tuple(graphs))
            installed = install_default_model(paths["deploy"], args.scale) if args.install else None
        except CheckpointError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:  # e.g. the folder is not writable or the disk is full
            where = exc.filename or out_dir
            print(f"error: cannot write {where}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        if args.out_dir is not None:
            for key, p in paths.items():
                print(f"{key:<16} {p}  ({p.stat().st_size / 1e6:.1f} MB)")
    if installed is not None:
        print(f"default model    {installed}  (used by `smsr upscale` / `smsr bench` without --model)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
