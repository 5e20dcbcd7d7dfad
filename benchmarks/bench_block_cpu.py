"""Per-block CPU micro-benchmark: the SMSRSparseBlock custom op vs ONNX Runtime's dense Conv path.

For each official x2 channel split (blocks 0-4) and mask density, three single-block ONNX models run on ONNX
Runtime (CPU, same session options, same inputs):
  op     one smsr::SMSRSparseBlock node (libsmsr_ort_ops.so)
  dense  4 x (Conv3x3 64->64 + ReLU), Concat, Conv1x1 256->64: the block with every channel dense, one Conv per
         layer (the cheapest standard-op graph; ignores the masks)
  ref    the dense-masked formulation of the reference graph (converters/model/smsr.py): per layer a Conv over
         dense inputs + mask * Conv over sparse inputs, output * (dense_out + sparse_out * mask)
Masks are spatially clustered (thresholded smooth noise) like the real ones. Times are medians of N with the three
models run interleaved (robust to load from other processes on a shared machine).

    python benchmarks/bench_block_cpu.py [--size 256 256] [--threads 2] [--densities 0.05 0.18 0.37 0.63 1.0]
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import statistics
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from engine.ort_ops import register_custom_ops  # noqa: E402

# dense/sparse output channels of conv1..conv4 per block (official x2 checkpoint, DESIGN.md §1)
OFFICIAL_SPLITS = [
    ([24, 9, 3, 0], [40, 55, 61, 64]),
    ([16, 4, 1, 0], [48, 60, 63, 64]),
    ([16, 7, 1, 0], [48, 57, 63, 64]),
    ([3, 0, 0, 0], [61, 64, 64, 64]),
    ([14, 5, 0, 0], [50, 59, 64, 64]),
]
C = 64


def clustered_mask(h: int, w: int, density: float, rng: np.random.Generator) -> np.ndarray:
    field = rng.standard_normal((h, w))
    for _ in range(4):  # box blur: blobs of a few pixels to a few tens, like SMSR's masks
        field = sum(np.roll(np.roll(field, dy, 0), dx, 1) for dy in (-2, 0, 2) for dx in (-2, 0, 2))
    if density >= 1.0:
        return np.ones((1, 1, h, w), np.float32)
    threshold = np.quantile(field, 1.0 - density)
    return (field > threshold).astype(np.float32)[None, None]


def block_weights(dense, sparse, rng):
    ws, cin = [], C
    for d, s in zip(dense, sparse):
        ws.append((rng.standard_normal((d + s, cin, 3, 3)) * (1.0 / np.sqrt(9 * cin))).astype(np.float32))
        cin = d + s
    wc = (rng.standard_normal((C, sum(dense) + sum(sparse), 1, 1)) * 0.05).astype(np.float32)
    bc = (rng.standard_normal(C) * 0.1).astype(np.float32)
    return ws, wc, bc


def _model(nodes, inits, h, w):
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, h, w]),
              helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, h, w])]
    out = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, C, h, w])]
    graph = helper.make_graph(nodes, "block", inputs, out, [numpy_helper.from_array(a, n) for n, a in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("smsr", 1)])
    model.ir_version = 8
    return model.SerializeToString()


def op_model(dense, sparse, ws, wc, bc, h, w):
    # the op takes its weights as 3 x 3 x Cin x Cout (wc: 1 x 1 x K x C); ws/wc here are OIHW
    inits = ({f"w{i}": np.ascontiguousarray(a.transpose(2, 3, 1, 0)) for i, a in enumerate(ws)}
             | {"wc": np.ascontiguousarray(wc.transpose(2, 3, 1, 0)), "bc": bc})
    node = helper.make_node("SMSRSparseBlock", ["x", "mask", "w0", "w1", "w2", "w3", "wc", "bc"], ["y"],
                            domain="smsr", dense_channels=dense, sparse_channels=sparse,
                            plugin_version="2", plugin_namespace="")
    return _model([node], inits, h, w)


def dense_model(ws, wc, bc, h, w):
    nodes, inits, cur, feats = [], {"wc": wc, "bc": bc}, "x", []
    for i, wl in enumerate(ws):
        inits[f"w{i}"] = wl
        nodes += [helper.make_node("Conv", [cur, f"w{i}"], [f"z{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"z{i}"], [f"f{i}"])]
        cur = f"f{i}"
        feats.append(cur)
    nodes += [helper.make_node("Concat", feats, ["cat"], axis=1),
              helper.make_node("Conv", ["cat", "wc", "bc"], ["y"])]
    return _model(nodes, inits, h, w)


def ref_model(dense, sparse, ws, wc, bc, h, w):
    """Dense-masked formulation with zeroed weight channels, as converters/model/smsr.py exports it."""
    nodes, inits, cur, feats = [], {"wc": wc, "bc": bc}, "x", []
    d_in = C
    for i, (wl, d, s) in enumerate(zip(ws, dense, sparse)):
        w_dense_in = wl.copy()
        w_dense_in[:, d_in:] = 0
        inits[f"wd{i}"] = w_dense_in
        nodes.append(helper.make_node("Conv", [cur, f"wd{i}"], [f"zd{i}"], pads=[1, 1, 1, 1]))
        z = f"zd{i}"
        if d_in < wl.shape[1]:
            w_sparse_in = wl.copy()
            w_sparse_in[:, :d_in] = 0
            inits[f"ws{i}"] = w_sparse_in
            nodes += [helper.make_node("Conv", [cur, f"ws{i}"], [f"zs{i}"], pads=[1, 1, 1, 1]),
                      helper.make_node("Mul", [f"zs{i}", "mask"], [f"zsm{i}"]),
                      helper.make_node("Add", [z, f"zsm{i}"], [f"za{i}"])]
            z = f"za{i}"
        if s > 0:
            dense_out = np.zeros((1, d + s, 1, 1), np.float32)
            dense_out[:, :d] = 1
            inits[f"do{i}"], inits[f"so{i}"] = dense_out, 1 - dense_out
            nodes += [helper.make_node("Mul", [f"so{i}", "mask"], [f"som{i}"]),
                      helper.make_node("Add", [f"do{i}", f"som{i}"], [f"om{i}"]),
                      helper.make_node("Mul", [z, f"om{i}"], [f"zm{i}"])]
            z = f"zm{i}"
        nodes.append(helper.make_node("Relu", [z], [f"f{i}"]))
        cur = f"f{i}"
        feats.append(cur)
        d_in = d
    nodes += [helper.make_node("Concat", feats, ["cat"], axis=1),
              helper.make_node("Conv", ["cat", "wc", "bc"], ["y"])]
    return _model(nodes, inits, h, w)


def time_sessions(sessions, feeds, reps):
    """Median-of-reps seconds per session, runs interleaved so that load from other processes hits all alike."""
    for sess in sessions:  # warm-up (arena, weight packing)
        sess.run(None, feeds)
        sess.run(None, feeds)
    times = [[] for _ in sessions]
    for _ in range(reps):
        for i, sess in enumerate(sessions):
            t0 = time.perf_counter()
            sess.run(None, feeds)
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, nargs=2, default=[256, 256], metavar=("H", "W"))
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra_op_num_threads (default 2)")
    ap.add_argument("--densities", type=float, nargs="+", default=[0.05, 0.18, 0.37, 0.63, 1.0])
    ap.add_argument("--blocks", type=int, nargs="+", default=list(range(5)), help="official split indices")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--check", action="store_true", help="also compare op and ref outputs")
    args = ap.parse_args(argv)
    h, w = args.size
    rng = np.random.default_rng(0)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    lib = register_custom_ops(opts)
    plain = ort.SessionOptions()
    plain.intra_op_num_threads = args.threads
    plain.inter_op_num_threads = 1
    print(f"onnxruntime {ort.__version__}, {args.threads} threads, {h}x{w}x{C}, op library {lib}")

    x = (rng.random((1, C, h, w)) * 255).astype(np.float32)
    print(f"{'block':>5} {'density':>7} {'op ms':>8} {'dense ms':>9} {'ref ms':>8} {'dense/op':>9} {'ref/op':>7}"
          f" {'MAC ratio':>9}")
    totals = {}
    for b in args.blocks:
        dense, sparse = OFFICIAL_SPLITS[b]
        ws, wc, bc = block_weights(dense, sparse, rng)
        s_op = ort.InferenceSession(op_model(dense, sparse, ws, wc, bc, h, w), opts, providers=["CPUExecutionProvider"])
        s_dense = ort.InferenceSession(dense_model(ws, wc, bc, h, w), plain, providers=["CPUExecutionProvider"])
        s_ref = ort.InferenceSession(ref_model(dense, sparse, ws, wc, bc, h, w), plain,
                                     providers=["CPUExecutionProvider"])
        for dens in args.densities:
            mask = clustered_mask(h, w, dens, rng)
            feeds = {"x": x, "mask": mask}
            t_op, t_dense, t_ref = time_sessions([s_op, s_dense, s_ref], feeds, args.reps)
            if args.check:
                err = np.abs(s_op.run(None, feeds)[0] - s_ref.run(None, feeds)[0]).max()
                assert err < 1e-2, f"op and ref differ by {err}"
            macs = sparse_macs(dense, sparse, float(mask.mean()))
            dense_macs = 4 * 9 * C * C + C * 4 * C
            print(f"{b:>5} {mask.mean():7.3f} {t_op*1e3:8.2f} {t_dense*1e3:9.2f} {t_ref*1e3:8.2f}"
                  f" {t_dense/t_op:9.2f} {t_ref/t_op:7.2f} {dense_macs/macs:9.2f}")
            tot = totals.setdefault(dens, [0.0, 0.0, 0.0])
            tot[0] += t_op
            tot[1] += t_dense
            tot[2] += t_ref
    if len(args.blocks) > 1:
        print("all blocks:")
        for dens, (a, b_, c) in totals.items():
            print(f"  density {dens:.2f}: op {a*1e3:7.2f} ms, dense {b_*1e3:7.2f} ms ({b_/a:.2f}x), "
                  f"ref {c*1e3:7.2f} ms ({c/a:.2f}x)")


def sparse_macs(dense, sparse, density):
    """Multiply-adds per pixel of the op (exactly the contract's work)."""
    macs, d_in, c_in = 0.0, C, C
    for d, s in zip(dense, sparse):
        macs += (1 - density) * d * 9 * d_in + density * (d + s) * 9 * c_in
        d_in, c_in = d, d + s
    return macs + C * sum(dense) + density * C * sum(sparse)


if __name__ == "__main__":
    main()
