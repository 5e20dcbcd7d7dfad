"""Per-block and per-layer GPU benchmark: the SMSRSparseBlock kernels vs the dense block in PyTorch/cuDNN FP16.

    python tests/gpu/bench_blocks.py --weights W --images LR_DIR [--lib libsmsr_block_capi.so]
                                     [--sizes 640x360,1280x720] [--iters 30] --out bench.json

Inputs are real: each Set5 x2 image's block inputs (features and spatial mask at the input of each of the 5 sparse
blocks of the official model), tiled to the frame size, which keeps the masks' fragmentation (resizing would not);
plus an all-ones and an all-zero mask at the largest size. Per configuration: eager and CUDA-graph medians;
per-kernel times of one call (PyTorch profiler) for every block of the first image. I/O formats: NCHW and, where
the library has it, NHWC (channels-last) at the largest size; the preferred one elsewhere. Dense baseline in the same process:
4 x (conv3x3 64->64 + ReLU), concat, conv1x1 + bias, FP16, channels-last, cudnn.benchmark, per layer and per block.
Every sparse output is checked against the op contract evaluated in FP32 (max |err| / max |ref| <= 1e-2) before
its time counts. Without --lib (kernel library not built) only the dense baseline runs.
INT8 (issue 14, `int8` rows; tests/gpu/int8_bench.py): the 5 real-mask blocks of --int8-images images (default 1)
at the largest size through
enqueueSparseBlockInt8 (y FP16), bit for bit against the INT8 contract on the device, timed against the dense INT8
block (im2col + torch._int_mm) at the same shape; --no-int8 skips it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "torch_ext"))
sys.path.insert(0, str(HERE.parents[1]))

FP16_REL_TOL = 1e-2


def block_inputs(model, lr: np.ndarray):
    """[(x, mask)] at the input of each sparse block, from one forward pass (float32, CPU)."""
    import torch
    out = []
    with torch.no_grad():
        fea = model.head(model.sub_mean(torch.from_numpy(lr)))
        for smm in model.body:
            out.append((fea, smm.spatial_mask(fea)))
            fea, _ = smm(fea)
    return out


def tile(t, h: int, w: int):
    """Repeat N x C x h0 x w0 spatially up to h x w."""
    ry, rx = -(-h // t.shape[2]), -(-w // t.shape[3])
    return t.repeat(1, 1, ry, rx)[:, :, :h, :w].contiguous()


def dense_block(block, dev, dtype):
    """The dense block in PyTorch (what cuDNN computes for an all-dense SMB): per-layer callables + whole block."""
    import torch
    import torch.nn.functional as F
    cl = torch.channels_last
    ws = [c.weight.detach().to(dev, dtype).contiguous(memory_format=cl) for c in block.body]
    wc = block.collect.weight.detach().to(dev, dtype).contiguous(memory_format=cl)
    bc = block.collect.bias.detach().to(dev, dtype)

    def layer(i, x):
        return torch.relu(F.conv2d(x, ws[i], padding=1))

    def collect(feats):
        return F.conv2d(torch.cat(feats, 1), wc, bc)

    def whole(x):
        feats = []
        for i in range(4):
            x = layer(i, x)
            feats.append(x)
        return collect(feats)
    return layer, collect, whole


def bench_dense(model, x, iters, warmup, timing) -> dict:
    """Dense block at x's shape: per layer (graph medians), collect, the whole block (eager + graph)."""
    import torch
    layer, collect, whole = dense_block(model.body[0].body, x.device, torch.float16)
    with torch.inference_mode():
        feats = [x]
        for i in range(4):
            feats.append(layer(i, feats[-1]))
        out = {"layers": [timing.time_eager_and_graph(lambda i=i: layer(i, feats[i]), iters, warmup)
                          for i in range(4)],
               "collect": timing.time_eager_and_graph(lambda: collect(feats[1:]), iters, warmup),
               "block": timing.time_eager_and_graph(lambda: whole(x), iters, warmup)}
    return out


def check_sparse(op, ref_fn) -> float:
    """max |op - ref| / max |ref| (ref in FP32; cuDNN heuristics, not autotuning: its many shapes run once)."""
    import torch
    y = op().float()
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=False, allow_tf32=False):
        ref = ref_fn()
    if not torch.isfinite(y).all():
        return float("inf")
    return float((y - ref).abs().max() / ref.abs().max().clamp_min(1e-6))


def bench_int8(result, images, blocks, model, dev, size, args, timing) -> None:
    """INT8 rows at the largest size: each image's 5 real-mask blocks (dense INT8 timed once per block index)."""
    import torch

    import int8_bench
    import smsr_torch
    lib = smsr_torch._LIB
    w, h = size
    for name in list(images)[: args.int8_images]:
        for b in range(5):
            x0, m0 = images[name][b]
            x, m = tile(x0.to(dev), h, w), tile(m0.to(dev), h, w)
            blk = blocks[b]
            row = {"image": name, "block": b, "W": w, "H": h, "mask": "real"}
            try:
                with torch.inference_mode():
                    row.update(int8_bench.bench_row(lib, x, m, [t.float() for t in blk["w"]], blk["wc"].float(),
                                                    blk["bc"], blk["dense"], blk["sparse"], timing, args.iters,
                                                    args.warmup, dense_time=name == next(iter(images))))
            except (RuntimeError, ValueError) as e:
                row["error"] = str(e).splitlines()[0][:300]
            result["int8"].append(row)
            if row.get("dense_int8") and not row["dense_int8"].get("exact_at_full_mask"):
                result["errors"].append(f"INT8 b{b}: the dense INT8 baseline differs from the contract at a full mask")
            if not row.get("correct", False):
                result["errors"].append(f"INT8 {name} b{b} {w}x{h}: "
                                        f"{row.get('error') or str(row.get('mismatches')) + ' elements differ'}")
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        Path(args.out).write_text(json.dumps(result, indent=1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--lib", default="")
    ap.add_argument("--sizes", default="640x360,1280x720", help="WxH list")
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cpu", action="store_true", help="smoke test on the CPU with the emulated kernel library")
    ap.add_argument("--max-images", type=int, default=0)
    ap.add_argument("--no-int8", action="store_true", help="skip the INT8 kernels")
    ap.add_argument("--int8-images", type=int, default=1, help="images whose 5 blocks run in INT8 (default 1)")
    args = ap.parse_args(argv)
    import torch
    from PIL import Image

    import gpu_timing as timing
    from converters.deploy_op import permuted_weights, sparse_block_reference
    from converters.model import load_smsr
    if not torch.cuda.is_available() and not args.cpu:
        print("bench_blocks: PyTorch sees no CUDA device", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False  # FP32 references in true FP32 (TF32 is PyTorch's default for convs)
    dev = torch.device("cpu" if args.cpu else "cuda")
    t0 = time.time()
    model = load_smsr(args.weights, 2)
    images = {}
    for p in sorted(Path(args.images).glob("*.png"))[: args.max_images or None]:
        with Image.open(p) as im:
            lr = np.asarray(im.convert("RGB"), dtype=np.float32).transpose(2, 0, 1)[None].copy()
        images[p.stem] = block_inputs(model, lr)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    result = {"device": "cpu" if args.cpu else torch.cuda.get_device_name(), "torch": torch.__version__,
              "cudnn": torch.backends.cudnn.version(), "iters": args.iters, "dense": {}, "sparse": [],
              "kernels": [], "int8": [], "errors": []}
    first = next(iter(images))
    for w, h in sizes:
        x = tile(images[first][0][0].to(dev), h, w).half().contiguous(memory_format=torch.channels_last)
        result["dense"][f"{w}x{h}"] = bench_dense(model, x, args.iters, args.warmup, timing)
        d = result["dense"][f"{w}x{h}"]["block"]
        print(f"dense cuDNN FP16 block {w}x{h}: eager {d['eager']['median_ms']:.3f} ms, "
              f"graph {d['graph'].get('median_ms', float('nan')):.3f} ms")
    if not args.lib:
        result["errors"].append("no kernel library: sparse kernels not benchmarked")
        Path(args.out).write_text(json.dumps(result, indent=1))
        return 0

    import smsr_torch
    lib = smsr_torch.load_library(args.lib)
    formats = [False, True] if lib.supports_nhwc else [False]
    blocks = []
    for smm in model.body:
        weights, wc, dense, sparse = smsr_torch.kernel_weights(smm.body)
        oihw, wc_ref, _, _ = permuted_weights(smm.body)
        blocks.append({"w": [t.to(dev).half() for t in weights], "wc": wc.to(dev).half(),
                       "bc": smm.body.collect.bias.detach().to(dev).half(), "dense": dense, "sparse": sparse,
                       "ref": ([t.to(dev) for t in oihw], wc_ref.to(dev), smm.body.collect.bias.detach().to(dev))})
    # The largest frame first, with the all-ones / all-zero masks right after its real ones (a timeout cuts the
    # least important rows); both I/O formats there, the preferred one (NHWC where supported) elsewhere.
    w_max, h_max = max(sizes)
    cases = [(name, b, w_max, h_max, "real", formats) for name in images for b in range(5)]
    cases += [(first, b, w_max, h_max, kind, formats) for kind in ("full", "empty") for b in range(5)]
    cases += [(name, b, w, h, "real", formats[-1:]) for w, h in sizes if (w, h) != (w_max, h_max)
              for name in images for b in range(5)]
    for name, b, w, h, kind, fmts in cases:
        x0, m0 = images[name][b]
        x = tile(x0.to(dev), h, w)
        m = tile(m0.to(dev), h, w)
        if kind != "real":
            m = torch.full_like(m, 1.0 if kind == "full" else 0.0)
        blk = blocks[b]
        ref_w, ref_wc, ref_bc = blk["ref"]
        with torch.inference_mode():
            ref = lambda: sparse_block_reference(x, m, ref_w, ref_wc, ref_bc, blk["dense"], blk["sparse"])  # noqa: E731
            for nhwc in fmts:
                xh = x.half().contiguous(memory_format=torch.channels_last if nhwc else torch.contiguous_format)
                mh = m.half()
                op = lambda: torch.ops.smsr_gpu.sparse_block(xh, mh, *blk["w"], blk["wc"], blk["bc"],  # noqa: E731
                                                             blk["dense"], blk["sparse"], nhwc)
                row = {"image": name, "block": b, "W": w, "H": h, "mask": kind, "nhwc": nhwc,
                       "density": float(m.mean()), "dense_channels": blk["dense"], "sparse_channels": blk["sparse"]}
                try:
                    row["rel_err"] = check_sparse(op, ref)
                    row["correct"] = row["rel_err"] <= FP16_REL_TOL
                    row.update(timing.time_eager_and_graph(op, args.iters, args.warmup))
                    if name == first and kind == "real" and nhwc == formats[-1] and dev.type == "cuda":
                        row["kernels"] = timing.kernel_times(op)
                except RuntimeError as e:
                    row["error"] = str(e).splitlines()[0][:300]
                    result["errors"].append(f"{name} b{b} {w}x{h} {kind}: {row['error']}")
                result["sparse"].append(row)
                if not row.get("correct", False):
                    result["errors"].append(f"{name} b{b} {w}x{h} {kind} nhwc={nhwc}: output wrong "
                                            f"(rel err {row.get('rel_err')})")
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        Path(args.out).write_text(json.dumps(result, indent=1))  # partial results survive a timeout
    if lib.supports_int8 and not args.no_int8:
        bench_int8(result, images, blocks, model, dev, (w_max, h_max), args, timing)
    elif not args.no_int8:
        result["errors"].append("kernel library without INT8 entry point: INT8 not benchmarked")
    result["seconds"] = time.time() - t0
    Path(args.out).write_text(json.dumps(result, indent=1))
    bad = [r for r in result["sparse"] + result["int8"] if not r.get("correct", False)]
    print(f"bench_blocks: {len(result['sparse'])} sparse configurations, {len(bad)} wrong or failed, "
          f"{result['seconds']:.0f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
