"""Per-block CPU benchmark of the INT8 SMSRSparseBlock op vs the FP32 op vs ONNX Runtime's own INT8 reference.

Official x2 weights; each block's real input and real mask come from running the float model on a crop of a Set5
HR image used as the LR input (default baby, 180 x 320), so the masks are the ones SMSR makes on that photo.
Per block and mask (the real one, and by default also a synthetic clustered 37 % and a full 100 % mask), these
single-block graphs run on ONNX Runtime CPU in the SAME process, interleaved, after warm-up; times are medians:
  int8       QuantizeLinear(x) + one INT8 SMSRSparseBlock node (AVX-512 VNNI loops where the CPU has them)
  int8-plain the same session with the plain C++ loops forced (SMSR_CPU_PATH=plain; fewer repetitions)
  fp32       one float32 SMSRSparseBlock node
  ort-int8   ONNX Runtime's INT8 reference: the dense-masked block as standard ops (converters/model/smsr.py's
             formulation, the same graph as bench_block_cpu.py's `ref`) quantized by
             onnxruntime.quantization.quantize_static: QDQ, per-channel symmetric int8 weights, symmetric int8
             activations, Conv nodes (the settings of calibration/qdq.py), MinMax-calibrated on the real input
  ort-u8s8   the same graph quantized the way ONNX Runtime recommends on x86 (uint8 asymmetric activations, int8
             per-channel weights, U8S8) on every op quantize_static can quantize: its fastest INT8 form here
  ort-u8s8-dense  the dense block (4 x Conv3x3 + ReLU, Concat, Conv1x1, masks ignored: what a dense INT8 deployment
             runs; bench_block_cpu.py's `dense`), quantized as ort-u8s8
  fp32-ref   the dense-masked standard-op graph in float32 (for scale)
The INT8 op's scales are calibrated on the same input (max |x| / 127, max of each layer's ReLU output / 127),
weights quantized with calibration/int8_block.py's helpers, as the converter does. Needs PyTorch (weights/masks).

    python benchmarks/bench_block_int8_cpu.py [--image baby] [--size 180 320] [--threads 2] [--reps 7]
"""
from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_block_cpu import clustered_mask, dense_model, op_model, ref_model, sparse_macs  # noqa: E402
from calibration.int8_block import fold_collect_weights, quantize_per_channel  # noqa: E402
from engine.ort_ops import register_custom_ops  # noqa: E402

C = 64
SHARED = ROOT.parent / "shared"


# ---- real block inputs and masks -----------------------------------------------------------------------------------
def block_inputs(weights: pathlib.Path, image: pathlib.Path, size):
    """Per block: (x float32 1 x 64 x H x W, real mask, OIHW permuted weights, wc OIHW, bc, dense, sparse)."""
    import torch

    from converters.deploy_op import permuted_weights
    from converters.model import load_smsr
    from engine.image_io import read_rgb

    h, w = size
    rgb = read_rgb(image)
    if rgb.shape[0] < h or rgb.shape[1] < w:
        raise SystemExit(f"{image} is {rgb.shape[0]}x{rgb.shape[1]}, smaller than --size {h} {w}")
    y0, x0 = (rgb.shape[0] - h) // 2, (rgb.shape[1] - w) // 2
    lr = torch.from_numpy(np.ascontiguousarray(rgb[y0:y0 + h, x0:x0 + w].transpose(2, 0, 1))[None].astype(np.float32))
    model = load_smsr(weights, 2)
    blocks = []
    with torch.no_grad():
        fea = model.head(model.sub_mean(lr))
        for smm in model.body:
            mask = smm.spatial_mask(fea)
            ws, wc, dense, sparse = permuted_weights(smm.body)
            blocks.append(dict(x=fea.numpy().copy(), mask=mask.numpy().astype(np.float32),
                               ws=[t.numpy() for t in ws], wc=wc.numpy(), bc=smm.body.collect.bias.numpy().copy(),
                               dense=dense, sparse=sparse))
            fea, _ = smm(fea)
    return blocks


def feature_maxima(x, mask, ws, dense):
    """Max of each layer's ReLU output of the float block (dense-masked formulation), with PyTorch."""
    import torch
    import torch.nn.functional as F

    m = torch.from_numpy((mask != 0).astype(np.float32))
    fea, d_in, out = torch.from_numpy(x), x.shape[1], []
    with torch.no_grad():
        for w, d in zip(ws, dense):
            w = torch.from_numpy(w)
            z = F.conv2d(fea[:, :d_in], w[:, :d_in], padding=1) if d_in else 0
            if d_in < w.shape[1]:
                z = z + m * F.conv2d(fea[:, d_in:], w[:, d_in:], padding=1)
            z[:, d:] *= m
            fea = torch.relu(z)
            out.append(float(fea.max()))
            d_in = d
    return out


# ---- graphs ----------------------------------------------------------------------------------------------------------
def int8_op_model(blk, h, w):
    """QuantizeLinear(x) -> INT8 SMSRSparseBlock -> y, scales calibrated on the block's real input."""
    dense, sparse = blk["dense"], blk["sparse"]
    out_channels = [d + s for d, s in zip(dense, sparse)]
    x_scale = float(np.float32(np.abs(blk["x"]).max() / 127))
    feature_scales = [float(np.float32(max(v, 1e-6) / 127)) for v in feature_maxima(blk["x"], blk["mask"], blk["ws"],
                                                                                    dense)]
    hwio = [np.ascontiguousarray(wl.transpose(2, 3, 1, 0)) for wl in blk["ws"]]
    codes, w_scales = zip(*(quantize_per_channel(wl, axis=-1) for wl in hwio))
    wc_hwio = np.ascontiguousarray(blk["wc"].transpose(2, 3, 1, 0))
    wc_codes, c_scales = quantize_per_channel(fold_collect_weights(wc_hwio, feature_scales, out_channels), axis=-1)
    inits = [numpy_helper.from_array(a, n) for n, a in
             zip(["w0", "w1", "w2", "w3", "wc", "bc"], [*codes, wc_codes, blk["bc"].astype(np.float32)])]
    inits += [numpy_helper.from_array(np.array(x_scale, np.float32), "x_scale"),
              numpy_helper.from_array(np.array(0, np.int8), "x_zero")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["xq"]),
             helper.make_node("SMSRSparseBlock", ["xq", "mask", "w0", "w1", "w2", "w3", "wc", "bc"], ["y"],
                              domain="smsr", dense_channels=dense, sparse_channels=sparse, plugin_version="2",
                              plugin_namespace="", x_scale=x_scale, feature_scales=feature_scales,
                              weight_scales=[float(v) for v in np.concatenate(w_scales)],
                              collect_scales=[float(v) for v in c_scales])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, h, w]),
              helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, h, w])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, C, h, w])]
    model = helper.make_model(helper.make_graph(nodes, "block_int8", inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("smsr", 1)])
    model.ir_version = 8
    return model.SerializeToString()


class _Reader:
    """quantize_static's calibration data: the block's real input and mask."""

    def __init__(self, feeds):
        self.feeds = [feeds]

    def get_next(self):
        return self.feeds.pop() if self.feeds else None


def ort_int8_model(fp32_model: bytes, feeds, workdir: pathlib.Path, unsigned_activations=False, op_types=("Conv",)):
    """quantize_static (QDQ, per-channel symmetric int8 weights, MinMax on `feeds`) of a standard-op block graph.

    Default: the settings of calibration/qdq.py (int8 symmetric activations, Conv nodes only). unsigned_activations
    with op_types=None: ONNX Runtime's recommended x86 form (uint8 asymmetric activations, U8S8) on every op it can
    quantize, its fastest INT8 graph here."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    src, dst = workdir / "fp32.onnx", workdir / "int8.onnx"
    src.write_bytes(fp32_model)
    extra = {"WeightSymmetric": True, "QuantizeBias": False}
    if not unsigned_activations:
        extra["ActivationSymmetric"] = True
    quantize_static(str(src), str(dst), _Reader(dict(feeds)), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(op_types) if op_types else None, per_channel=True, reduce_range=False,
                    activation_type=QuantType.QUInt8 if unsigned_activations else QuantType.QInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax, extra_options=extra)
    return dst.read_bytes()


# ---- timing -----------------------------------------------------------------------------------------------------------
def timed(sess, feeds, plain=False):
    if plain:
        os.environ["SMSR_CPU_PATH"] = "plain"
    try:
        t0 = time.perf_counter()
        sess.run(None, feeds)
        return time.perf_counter() - t0
    finally:
        if plain:
            os.environ.pop("SMSR_CPU_PATH", None)


def measure(runs, feeds, reps, plain_reps):
    """runs: [(name, session, plain?)]: medians, runs interleaved (load from other processes hits all alike)."""
    for _, sess, plain in runs:  # warm-up (arena, first-call allocations)
        timed(sess, feeds, plain)
        timed(sess, feeds, plain)
    times = {name: [] for name, _, _ in runs}
    for rep in range(reps):
        for name, sess, plain in runs:
            if plain and rep >= plain_reps:
                continue
            times[name].append(timed(sess, feeds, plain))
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=pathlib.Path, default=SHARED / "weights" / "smsr_x2_official.pt")
    ap.add_argument("--image", default="baby", help="Set5 HR image used as the LR input (default baby)")
    ap.add_argument("--data", type=pathlib.Path, default=SHARED / "data", help="folder holding Set5/")
    ap.add_argument("--size", type=int, nargs=2, default=[180, 320], metavar=("H", "W"))
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra_op_num_threads (default 2)")
    ap.add_argument("--masks", nargs="+", default=["real", "0.37", "1.0"],
                    help="'real' and/or densities of synthetic clustered masks (default: real 0.37 1.0)")
    ap.add_argument("--blocks", type=int, nargs="+", default=list(range(5)))
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--plain-reps", type=int, default=3, help="repetitions of the (slow) plain-loop runs")
    ap.add_argument("--no-plain", action="store_true", help="skip the plain-loop runs")
    args = ap.parse_args(argv)
    h, w = args.size
    image = args.data / "Set5" / "HR" / f"{args.image}.png"

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    lib = register_custom_ops(opts)
    plain_opts = ort.SessionOptions()
    plain_opts.intra_op_num_threads = args.threads
    plain_opts.inter_op_num_threads = 1
    import ctypes
    path_fn = ctypes.CDLL(str(lib)).SmsrCpuInt8Path
    path_fn.restype = ctypes.c_char_p
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}"
          f" {_cpu_model()}, {os.cpu_count()} CPUs; onnxruntime {ort.__version__}, {args.threads} threads; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"# input: Set5 {args.image} HR centre crop {h}x{w} as the LR image; INT8 op loops: "
          f"{path_fn().decode()}; library {lib}")
    print(f"# command: python benchmarks/bench_block_int8_cpu.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    blocks = block_inputs(args.weights, image, (h, w))
    rng = np.random.default_rng(0)
    cols = ["int8", "int8-plain", "fp32", "ort-int8", "ort-u8s8", "ort-u8s8-dense", "fp32-ref"]
    print("# times in ms; ratios: fp32 op / int8 op, ort-int8 / int8 op, ort-u8s8 / int8 op, plain / VNNI loops")
    print(f"{'block':>5} {'mask':>6} {'density':>7} " + " ".join(f"{c:>14}" for c in cols)
          + f" {'fp32/':>6} {'ort8/':>6} {'u8s8/':>6} {'plain/':>6} {'MAC ratio':>9}")
    totals = {}
    with tempfile.TemporaryDirectory(prefix="smsr_bench_int8_") as tmp:
        for b in args.blocks:
            blk = blocks[b]
            dense, sparse = blk["dense"], blk["sparse"]
            mk = lambda model, o=opts: ort.InferenceSession(model, o, providers=["CPUExecutionProvider"])  # noqa: E731
            s_int8 = mk(int8_op_model(blk, h, w))
            s_fp32 = mk(op_model(dense, sparse, blk["ws"], blk["wc"], blk["bc"], h, w))
            calib = {"x": blk["x"], "mask": blk["mask"]}
            ref32 = ref_model(dense, sparse, blk["ws"], blk["wc"], blk["bc"], h, w)
            tmpdir = pathlib.Path(tmp)
            s_ort8 = mk(ort_int8_model(ref32, calib, tmpdir), plain_opts)
            s_ortu8 = mk(ort_int8_model(ref32, calib, tmpdir, unsigned_activations=True, op_types=None), plain_opts)
            s_dense8 = mk(ort_int8_model(dense_model(blk["ws"], blk["wc"], blk["bc"], h, w), calib, tmpdir,
                                         unsigned_activations=True, op_types=None), plain_opts)
            s_ref = mk(ref32, plain_opts)
            runs = [("int8", s_int8, False), ("fp32", s_fp32, False), ("ort-int8", s_ort8, False),
                    ("ort-u8s8", s_ortu8, False), ("ort-u8s8-dense", s_dense8, False), ("fp32-ref", s_ref, False)]
            if not args.no_plain:
                runs.insert(1, ("int8-plain", s_int8, True))
            for which in args.masks:
                mask = blk["mask"] if which == "real" else clustered_mask(h, w, float(which), rng)
                feeds = {"x": blk["x"], "mask": mask}
                t = measure(runs, feeds, args.reps, args.plain_reps)
                dens = float(mask.mean())
                macs = sparse_macs(dense, sparse, dens)
                dense_macs = 4 * 9 * C * C + C * 4 * C
                cells = " ".join(f"{t[c] * 1e3:14.2f}" if c in t else f"{'-':>14}" for c in cols)
                plain_ratio = f"{t['int8-plain'] / t['int8']:6.2f}" if "int8-plain" in t else f"{'-':>6}"
                print(f"{b:>5} {which:>6} {dens:7.3f} {cells} {t['fp32'] / t['int8']:6.2f}"
                      f" {t['ort-int8'] / t['int8']:6.2f} {t['ort-u8s8'] / t['int8']:6.2f} {plain_ratio}"
                      f" {dense_macs / macs:9.2f}", flush=True)
                tot = totals.setdefault(which, {})
                for k, v in t.items():
                    tot[k] = tot.get(k, 0.0) + v
    print(f"# load average at the end {os.getloadavg()[0]:.1f}")
    if len(args.blocks) > 1:
        print("all blocks (sum of medians):")
        for which, tot in totals.items():
            parts = ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in tot.items())
            print(f"  mask {which}: {parts}; fp32/int8 {tot['fp32'] / tot['int8']:.2f}x, "
                  f"ort-int8/int8 {tot['ort-int8'] / tot['int8']:.2f}x, ort-u8s8/int8 {tot['ort-u8s8'] / tot['int8']:.2f}x, "
                  f"ort-u8s8-dense/int8 {tot['ort-u8s8-dense'] / tot['int8']:.2f}x"
                  + (f", plain/int8 {tot['int8-plain'] / tot['int8']:.2f}x" if "int8-plain" in tot else ""))


def _cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


if __name__ == "__main__":
    main()
