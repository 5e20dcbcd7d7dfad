"""Performance MODEL of the five sparse blocks of SMSR x2 vs dense implicit-GEMM 3x3 convolution (not a measurement).

    python tests/gpu/perf_model.py [KERNEL.cu] [--design v1|v2] [--measure-masks] [--json]   (CPU only)

Inputs: the SASS counts of the kernels (tests/gpu/sass_report.py: instructions per HMMA of the FP16 main loops,
L1-bypassing cp.async or synchronous gathers, registers -> occupancy) for sm_87 and sm_90, the official channel
splits (docs/DESIGN.md) and the real mask densities of the official x2 model on Set5 x2 (per image and block;
`--measure-masks` recomputes them with PyTorch, else the table MEASURED_DENSITY below, made that way, is used).

Work decomposition (one tile = 128 listed pixels x up to 64 output channels, K in chunks of 32, 8 warps):
- design "v1" (today's kernels): pixel lists; K = (tap, channel) flattened and padded to 32 per part; active tiles
  compute all outputs from all inputs, inactive tiles the dense outputs from the dense inputs (none when a layer has
  none); collect = 5th GEMM (every pixel: bias at least); launches memset + classify + weight transpose + 5 GEMMs.
- design "v2" (the `kern` rewrite): channel groups padded to 8 (P_l = pad8(D_l) + pad8(S_l)), K = 9 taps x
  ceil(P_in / 32) chunks (one tap per chunk), inactive tiles ceil(pad8(D_in)/32) chunks per tap; the collect is fused
  into layer 3 (K = sum P_l active / sum pad8(D_l) inactive, padded to 32); prepare kernel packs NCHW x to NHWC and
  writes the neighbour map; launches memset + prepare + 4 layer kernels.

Time of one GEMM launch on one GPU (everything per SM, summed over tiles, divided by the SMs, x wave tail):
  per K chunk of one tile (one block):   tensor  = 128*pad16(N)*32 MAC / tensor MAC per clk per SM
                                         issue   = 8 warps * 16 HMMA * (instructions per HMMA) / 4 schedulers
                                         smem    = (A + B chunk written + read by LDSM) bytes / 128 B per clk
                                         L2      = A + B chunk bytes with L1 bypassed (cp.async.cg), else A/3
                                                   + B/4 (horizontal taps and B hit L1: ASSUMED)
                                         chunk   = max(all four), or the exposed memory latency LAT (one
                                                   third DRAM, two thirds L2 hits) if larger: (LAT + chunk)/R per SM
                                                   with R blocks/SM and synchronous gathers, LAT/R with
                                                   double-buffered cp.async (one chunk in flight per block)
  per tile epilogue: 128x64 FP32 staged through shared memory (64 KB) + store instructions (v1 scalar 2-byte,
                     v2 16-byte vectors)
  DRAM: unique bytes (inputs read once: halo re-reads hit L2, outputs written once, mask/map), at 80 % of peak
  launch = max(SM time, DRAM time) + LAUNCH overhead.
Dense baseline: 4 x conv3x3 64->64 + ReLU + concat-free 1x1 256->64 (as TensorRT fuses), each kernel
max(MAC / (DENSE_EFF x tensor peak), bytes / (80 % DRAM)) + LAUNCH. On H200 the dense kernels use wgmma (full
Hopper rate); our WMMA kernels compile to HMMA (mma.sync), modelled at half of it.

Limit derivation (sass_report.MAX_INSTR_PER_HMMA): an HMMA.16816 (2048 MAC) occupies a sub-core's tensor pipe for
2048 / 256 = 8 cycles on sm_80/87 (and on sm_90 at the mma.sync rate), so at more than 8 instructions per HMMA the
main loop is issue-bound and reaches 8/x of the tensor peak. derived_instr_per_hmma_limit() finds the largest
value for which this model still meets both targets of issue 13 on Orin at 1280x720 (>= 1.3x at 37 %, >= 0.9x at
100 %) with design v2 at nominal occupancy; CI's limit must not exceed it.

Hardware constants (state of knowledge, no GPU measured here):
- Jetson AGX Orin 64GB (sm_87): 16 SMs at 1.3 GHz (5.3 FP32 TFLOPS = 2048 cores x 2 x 1.3 GHz, Jetson AGX Orin
  technical brief); tensor 1024 FP16 MAC/clk/SM dense with FP32 accumulate (170 sparse INT8 TOPS -> 42.5 dense FP16
  TFLOPS / (16 SM x 1.3 GHz x 2)); LPDDR5 204.8 GB/s; 164 KB shared memory, 64 K registers, 1536 threads,
  16 blocks per SM (CUDA programming guide, compute capability 8.7); L2->SM 48 B/clk/SM ASSUMED (A100's
  5120 B/clk over 108 SMs; Orin's is unpublished); latency L2 hit 300 / DRAM 600 clk ASSUMED (published
  microbenchmarks of Ampere/Ada L2 hits: ~220-340 clk); launch 4 us (Jetson, graphs).
- H200 SXM (sm_90): 132 SMs at 1.83 GHz under tensor load (1.98 GHz max boost; the 989 dense FP16 TFLOPS of the
  H100/H200 data sheets = 2048 MAC/clk/SM x 132 x 1.83 GHz); mma.sync (HMMA) ASSUMED at 1024 MAC/clk/SM (wgmma
  is needed for the full rate); HBM3e 4.8 TB/s; 228 KB shared memory, 64 K registers, 2048 threads, 32 blocks per
  SM (compute capability 9.0); L2->SM 32 B/clk/SM ASSUMED (~7.7 TB/s); latency L2 300 / DRAM 700 clk ASSUMED;
  launch 2 us.
- DENSE_EFF = 0.70 of the tensor peak for cuDNN's implicit GEMM (a stated assumption, typical for 64-channel 3x3).

INT8 (`--precision int8`, issue 14): the same decomposition with the INT8 kernels' parameters: tensor rate 2x FP16
(Orin AGX: 275 sparse / 137.5 dense INT8 TOPS = 2 x the FP16 rate, so 2048 INT8 MAC/clk/SM; H200: 1979 dense INT8
TOPS = 2 x FP16, mma.sync IMMA ASSUMED at half of it like HMMA), one byte per feature/weight element, channel
groups padded to 16, K chunks of 32 (a whole chunk's tensor and issue time even when a segment fills it only
partly: conservative, the kernels skip the unused k-step), IMMA.16816 (2048 MAC, 4 cycles of a sub-core's INT8
tensor pipe on sm_80/87) with the instructions per IMMA of the INT8 main loops, all 64 columns multiplied in every pass (the INT8 kernels have no
column skips: tensor time of inactive tiles with fewer dense outputs counts 64 columns), one more launch per block (the
K-contiguous weight pack). The mask,
the bias and y stay FP16 (2 bytes). Dense INT8 baseline: the same INT8 implicit GEMM blocks as the FP16 baseline
(4 conv3x3 + collect, int8 activations, y FP16) at DENSE_EFF of the INT8 peak or DRAM-bound. Model target: INT8
sparse blocks >= 1.3x faster than dense INT8 blocks at 37 % density on Orin (derived_instr_per_mma_limit("int8")).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[2]
C = 64
TILE_M, TILE_N, TILE_K = 128, 64, 32
HMMA_MAC = 16 * 8 * 16
DENSE_EFF = 0.70
DRAM_EFF = 0.80

# Official x2 checkpoint: dense / sparse output channels of conv1..conv4 per block (docs/DESIGN.md).
OFFICIAL_SPLITS = [([24, 9, 3, 0], [40, 55, 61, 64]), ([16, 4, 1, 0], [48, 60, 63, 64]),
                   ([16, 7, 1, 0], [48, 57, 63, 64]), ([3, 0, 0, 0], [61, 64, 64, 64]),
                   ([14, 5, 0, 0], [50, 59, 64, 64])]
# Mask density per Set5 x2 image and block, official model (python tests/gpu/perf_model.py --measure-masks).
MEASURED_DENSITY = {
    "baby": [0.082, 0.189, 0.398, 0.061, 0.153], "bird": [0.400, 0.202, 0.457, 0.188, 0.380],
    "butterfly": [0.477, 0.584, 0.742, 0.680, 0.645], "head": [0.321, 0.330, 0.550, 0.178, 0.326],
    "woman": [0.204, 0.302, 0.543, 0.359, 0.397],
}
SET5_PIXELS = {"baby": 256 * 256, "bird": 144 * 144, "butterfly": 128 * 128, "head": 140 * 140, "woman": 172 * 114}
FRAMES = {"640x360": 640 * 360, "1280x720": 1280 * 720}


@dataclasses.dataclass(frozen=True)
class Precision:
    """What changes between the FP16 and the INT8 kernels (and their dense baselines)."""
    name: str
    elem: int        # bytes per feature / weight element
    group: int       # channels per padded group
    rate: float      # tensor MAC rate relative to FP16
    mma: str         # SASS mnemonic of the main loops' tensor instruction
    extra_launches: int
    chunk: int       # K per chunk (padded channels of one segment per pipeline stage)
    full_columns: bool = False  # every pass multiplies all 64 columns (no column skips: the INT8 kernels)


PRECISIONS = {"fp16": Precision("fp16", 2, 8, 1.0, "HMMA", 0, TILE_K),
              "int8": Precision("int8", 1, 16, 2.0, "IMMA", 1, TILE_K, True)}
FP16 = PRECISIONS["fp16"]


@dataclasses.dataclass(frozen=True)
class Device:
    name: str
    arch: str
    sms: int
    clock: float          # Hz
    mma_mac_clk: float    # HMMA (mma.sync) FP16 MAC per clk per SM
    dense_mac_clk: float  # what the dense cuDNN kernels use (wgmma on Hopper)
    dram: float           # B/s peak
    l2_clk: float         # L2 -> SM bytes per clk per SM
    smem_sm: int
    regs_sm: int
    threads_sm: int
    blocks_sm: int
    l2_latency: float     # clk, an L2 hit
    dram_latency: float   # clk, a DRAM access
    launch: float         # s per launch

    @property
    def latency(self) -> float:
        """Latency one K chunk waits for: the dy = +1 taps (a third of the chunks) touch rows no tile has read
        yet (DRAM), the others hit L2 (the feature maps, 30-120 MB at 640x360..720p, do not fit in L2)."""
        return (2 * self.l2_latency + self.dram_latency) / 3


DEVICES = {
    "orin": Device("Jetson AGX Orin 64GB", "87", 16, 1.3e9, 1024, 1024, 204.8e9, 48, 164 * 1024, 65536, 1536, 16,
                   300, 600, 4e-6),
    "h200": Device("H200 SXM", "90", 132, 1.83e9, 1024, 2048, 4.8e12, 32, 228 * 1024, 65536, 2048, 32, 300, 700, 2e-6),
}


@dataclasses.dataclass(frozen=True)
class Kernels:
    """What the model takes from the SASS of one architecture."""
    instr_per_hmma: float
    async_copy: bool      # cp.async (LDGSTS) in the main loop: gathers overlap the MMA
    l1_bypass: bool       # LDGSTS.BYPASS: every tap's bytes come from L2
    registers: int
    smem_block: int       # bytes per block (dynamic + static)
    epi_instr_per_elem: float
    lower_bound: bool = False
    threads: int = 256    # per block (__launch_bounds__)


NOMINAL = {  # v2 as designed, before any SASS is read (used to derive the limit)
    "v1": Kernels(65.0, False, False, 72, 35_648 + 640, 20.0, True),
    "v2": Kernels(8.0, True, True, 128, 30 * 1024, 3.0),
}
NOMINAL_INT8 = Kernels(6.0, True, True, 160, 36 * 1024 + 2048, 4.0, threads=128)  # requant: a few more per element


def pad(v: int, m: int) -> int:
    return -(-v // m) * m


def occupancy(dev: Device, k: Kernels) -> int:
    """Resident blocks per SM from registers (allocated per warp in units of 256), smem and thread limits."""
    warps = max(1, k.threads // 32)
    regs_warp = pad(max(k.registers, 1) * 32, 256)
    by_regs = dev.regs_sm // (regs_warp * warps)
    by_smem = dev.smem_sm // max(k.smem_block, 1)
    return max(1, min(by_regs, by_smem, dev.threads_sm // (32 * warps), dev.blocks_sm))


# ------------------------------------------------------------------------------------------- work per block
@dataclasses.dataclass
class Gemm:
    """One GEMM launch: rows, output channels (N), K chunks per tile, plus DRAM bytes."""
    parts: list  # (rows, n_out, k_chunks) tile groups
    dram_bytes: float
    label: str


def block_gemms(design: str, dense, sparse, d: float, px: int, nhwc_io: bool = False,
                prec: Precision = FP16) -> tuple[list[Gemm], float, int]:
    """GEMM launches of one block, the prepare kernels' DRAM bytes, and the number of launches.

    nhwc_io: x and y channels-last (TensorRT kHWC8, design v2): no NCHW -> NHWC pack of x in the prepare kernel.
    prec: element bytes and channel group of the features (y stays 2 bytes)."""
    act, ina = d * px, (1 - d) * px
    gemms = []
    v2 = design == "v2"
    g, eb, kc = prec.group, prec.elem, prec.chunk
    width = (lambda dd, ss: pad(dd, g) + pad(ss, g)) if v2 else (lambda dd, ss: dd + ss)
    for l in range(4):
        din, sin = (C, 0) if l == 0 else (dense[l - 1], sparse[l - 1])
        cin = width(din, sin)
        cout, dout = dense[l] + sparse[l], dense[l]
        if v2:
            k_act, k_ina = 9 * math.ceil(cin / kc), 9 * math.ceil(pad(din, g) / kc)
        else:
            k_act, k_ina = math.ceil(9 * cin / kc), math.ceil(9 * din / kc)
        parts = [(act, cout, k_act)]
        if dout > 0 and din > 0:
            parts.append((ina, dout, k_ina))
        rd = din * eb * px + sin * eb * act  # sparse inputs exist only at active pixels
        wr = width(dense[l], sparse[l]) * eb * act + (pad(dout, g) if v2 else dout) * eb * ina
        gemms.append(Gemm(parts, rd + wr + 4 * px, f"layer {l}"))
    # collect: 1x1 over concat(f_0..f_3), 64 outputs at every pixel
    if v2:
        if prec.name == "int8":  # one segment per feature f_l: a chunk never spans two (flattening undercounts)
            k_act = sum(math.ceil(width(x, y) / kc) for x, y in zip(dense, sparse))
            k_ina = sum(math.ceil(pad(x, g) / kc) for x in dense if x)
        else:  # FP16: the flattened count of the published FP16 figures (differs by <= 1 chunk per block)
            k_act = math.ceil(sum(width(x, y) for x, y in zip(dense, sparse)) / kc)
            k_ina = math.ceil(sum(pad(x, g) for x in dense) / kc)
    else:
        k_act = sum(math.ceil((x + y) / kc) for x, y in zip(dense, sparse))
        k_ina = sum(math.ceil(x / kc) for x in dense if x)
    parts = [(act, C, k_act), (ina, C, k_ina)]
    rd = sum(x * eb * px + y * eb * act for x, y in zip(dense, sparse))
    if v2:  # f_3 stays on chip (fused into layer 3): neither written nor re-read
        gemms[3].dram_bytes -= width(dense[3], sparse[3]) * eb * act + pad(dense[3], g) * eb * ina
        rd -= dense[3] * eb * px + sparse[3] * eb * act
        gemms[3].parts += parts
        gemms[3].dram_bytes += rd + C * 2 * px
        gemms[3].label = "layer 3 + collect"
        prep = 2 * px + 8 * px + (0 if nhwc_io else 2 * C * eb * px)  # mask, neighbour map, NCHW -> NHWC pack of x
        launches = 5 + prec.extra_launches
    else:
        gemms.append(Gemm(parts, rd + C * 2 * px + 4 * px, "collect"))
        prep = 2 * px + 4 * px  # classify: mask read, list write (weight transpose ~0.3 MB, ignored)
        launches = 8
    return gemms, prep, launches


def gemm_time(g: Gemm, dev: Device, k: Kernels, prec: Precision = FP16) -> dict:
    r = occupancy(dev, k)
    kc = prec.chunk
    a_bytes = TILE_M * kc * prec.elem
    b_bytes = kc * TILE_N * prec.elem
    sm_clk = 0.0
    tiles_total = 0
    bound_clk = {"tensor": 0.0, "issue": 0.0, "smem": 0.0, "L2": 0.0, "latency": 0.0, "epilogue": 0.0}
    for rows, n_out, chunks in g.parts:
        if rows <= 0 or n_out <= 0:
            continue  # (chunks == 0 still writes its outputs: the bias of y at pixels without dense channels)
        for n0 in range(0, n_out, TILE_N):
            n = TILE_N if prec.full_columns else pad(min(TILE_N, n_out - n0), 16)
            tiles = rows / TILE_M
            tiles_total += math.ceil(tiles)
            tensor = TILE_M * n * kc / (dev.mma_mac_clk * prec.rate)
            # a 128x64x32 chunk is 128 HMMA.16816 however the warps split it; the gathers and the instruction
            # stream are the same whatever N (loads, index maths, barriers)
            issue = TILE_M * TILE_N * kc / HMMA_MAC * k.instr_per_hmma / 4
            smem = (a_bytes + b_bytes) * 2 / 128
            # cp.async.cg bypasses L1: all 9 taps' A bytes and every B chunk come from L2; with L1 allocation the
            # three horizontal taps of a row and the B chunk (shared by the tiles of an SM) mostly hit L1
            l2 = ((a_bytes + b_bytes) if k.l1_bypass else (a_bytes / 3 + b_bytes / 4)) / dev.l2_clk
            through = max(tensor, issue, smem, l2)
            lat = dev.latency / r if k.async_copy else (dev.latency + through) / r
            chunk = max(through, lat)
            epi = max(2 * TILE_M * n * 4 / 128, TILE_M * n / 32 * k.epi_instr_per_elem / 4)
            sm_clk += math.ceil(tiles) * (chunks * chunk + epi)
            # the whole chunk goes to what sets its time: exposed memory latency or the largest throughput bound
            top = "latency" if lat > through else max((("tensor", tensor), ("issue", issue), ("smem", smem),
                                                      ("L2", l2)), key=lambda kv: kv[1])[0]
            bound_clk[top] += math.ceil(tiles) * chunks * chunk
            bound_clk["epilogue"] += math.ceil(tiles) * epi
    waves = tiles_total / (dev.sms * r)
    tail = math.ceil(waves) / waves if waves > 0 else 1.0
    t_sm = sm_clk / dev.sms * tail / dev.clock
    t_dram = g.dram_bytes / (DRAM_EFF * dev.dram)
    limiter = "DRAM" if t_dram > t_sm else max(bound_clk, key=bound_clk.get)
    return {"label": g.label, "time": max(t_sm, t_dram) + dev.launch, "sm": t_sm, "dram": t_dram,
            "limiter": limiter, "occupancy": r}


def sparse_block_time(design: str, dense, sparse, d: float, px: int, dev: Device, k: Kernels,
                      nhwc_io: bool = False, prec: Precision = FP16) -> dict:
    gemms, prep, launches = block_gemms(design, dense, sparse, d, px, nhwc_io, prec)
    parts = [gemm_time(g, dev, k, prec) for g in gemms]
    t_prep = prep / (DRAM_EFF * dev.dram) + (launches - len(gemms)) * dev.launch
    return {"time": sum(p["time"] for p in parts) + t_prep, "prepare": t_prep, "kernels": parts}


def dense_block_time(px: int, dev: Device, prec: Precision = FP16) -> float:
    """cuDNN-style dense block: 4 conv3x3 64->64 (+ReLU) and a concat-free 1x1 256->64 (INT8: int8 activations at
    the INT8 peak, y FP16)."""
    peak = DENSE_EFF * dev.dense_mac_clk * prec.rate * dev.sms * dev.clock
    bw = DRAM_EFF * dev.dram
    eb = prec.elem
    conv = max(C * C * 9 * px / peak, 2 * C * eb * px / bw) + dev.launch
    collect = max(4 * C * C * px / peak, (4 * C * eb + C * 2) * px / bw) + dev.launch
    return 4 * conv + collect


def frame_times(design: str, densities, px: int, dev: Device, k: Kernels, nhwc_io: bool = False,
                prec: Precision = FP16) -> dict:
    """The five blocks of one frame: densities = one value per block."""
    sp = [sparse_block_time(design, dn, sp_, d, px, dev, k, nhwc_io, prec)
          for (dn, sp_), d in zip(OFFICIAL_SPLITS, densities)]
    dense = 5 * dense_block_time(px, dev, prec)
    sparse = sum(s["time"] for s in sp)
    return {"dense_ms": dense * 1e3, "sparse_ms": sparse * 1e3, "speedup": dense / sparse, "blocks": sp}


def cases() -> dict[str, list[float]]:
    out = {f"Set5 {name}": dens for name, dens in MEASURED_DENSITY.items()}
    tot = sum(SET5_PIXELS[n] for n in MEASURED_DENSITY)
    out["Set5 mean per block"] = [sum(MEASURED_DENSITY[n][b] * SET5_PIXELS[n] for n in MEASURED_DENSITY) / tot
                                  for b in range(5)]
    for d in (0.37, 0.63, 1.0):
        out[f"uniform {d:.0%}"] = [d] * 5
    return out


# ------------------------------------------------------------------------------------------- from the SASS
def kernels_from_report(rep: dict, arch: str, design: str, prec: Precision = FP16) -> Kernels:
    import sass_report
    """The FP16 HMMA (INT8: IMMA) main loops of one architecture: worst instructions per MMA of an outermost loop
    nest (nested loops once), copy kind, max registers."""
    loops, regs, threads = [], [], []
    for k in rep["archs"][arch].values():
        hm = [lp for lp in k["main_loops"] if lp["mma_op"].startswith(prec.mma) and lp["outermost"]]
        if hm:
            loops += hm
            regs.append(k.get("registers", 0))
            threads.append(k.get("max_threads") or 256)
    if not loops:
        raise ValueError(f"sm_{arch}: no {prec.mma} main loop in {rep['source']}")
    nominal = NOMINAL_INT8 if prec.name == "int8" else NOMINAL[design]
    smem_static = max((k.get("smem_static", 0) for k in rep["archs"][arch].values()), default=0)
    return Kernels(
        instr_per_hmma=max(lp["nest_per_mma"] for lp in loops),
        async_copy=all(lp["async_copy"] for lp in loops),
        l1_bypass=any(key.startswith("LDGSTS.BYPASS") for lp in loops for key in lp["memory"]),
        registers=max(regs), smem_block=max(nominal.smem_block, smem_static), threads=max(threads),
        epi_instr_per_elem=nominal.epi_instr_per_elem,
        lower_bound=any(il["moves_data"] or il["instructions"] > sass_report.MAX_CONTROL_LOOP
                        for lp in loops for il in lp["inner_loops"]))


def derived_instr_per_hmma_limit() -> float:
    """Largest instructions/HMMA for which design v2 meets both Orin 720p targets in this model."""
    dev = DEVICES["orin"]
    px = FRAMES["1280x720"]

    def ok(x: float) -> bool:
        k = dataclasses.replace(NOMINAL["v2"], instr_per_hmma=x)
        return (frame_times("v2", [0.37] * 5, px, dev, k)["speedup"] >= 1.3
                and frame_times("v2", [1.0] * 5, px, dev, k)["speedup"] >= 0.9)

    lo, hi = 1.0, 64.0
    if not ok(lo):
        return 0.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def derived_instr_per_imma_limit() -> float:
    """Largest instructions/IMMA for which the INT8 design meets its Orin 720p target in this model: INT8 sparse
    blocks >= 1.3x faster than dense INT8 blocks at 37 % density (issue 14), at nominal occupancy."""
    dev = DEVICES["orin"]
    px = FRAMES["1280x720"]
    prec = PRECISIONS["int8"]

    def ok(x: float) -> bool:
        k = dataclasses.replace(NOMINAL_INT8, instr_per_hmma=x)
        return frame_times("v2", [0.37] * 5, px, dev, k, prec=prec)["speedup"] >= 1.3

    lo, hi = 1.0, 64.0
    if not ok(lo):
        return 0.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


# ------------------------------------------------------------------------------------------- masks, output
def measure_masks(weights: str, set5: Path) -> dict[str, list[float]]:
    """Per-image, per-block mask densities of the official model (needs PyTorch)."""
    import roofline
    _, per_image = roofline.collect_masks(weights, set5)
    return {name: [round(float((m > 0).mean()), 3) for m in masks] for name, masks in per_image.items()}


def table(design: str, kern_by_dev: dict[str, Kernels], prec: Precision = FP16) -> list[dict]:
    rows = []
    for frame, px in FRAMES.items():
        for case, dens in cases().items():
            for key, dev in DEVICES.items():
                ft = frame_times(design, dens, px, dev, kern_by_dev[key], prec=prec)
                lim = {}
                for b in ft["blocks"]:
                    for kk in b["kernels"]:
                        lim[kk["limiter"]] = lim.get(kk["limiter"], 0) + kk["time"]
                rows.append({"design": design, "frame": frame, "case": case, "device": dev.name,
                             "mean_density": sum(dens) / 5, "dense_ms": ft["dense_ms"], "sparse_ms": ft["sparse_ms"],
                             "speedup": ft["speedup"], "limiter": max(lim, key=lim.get)})
    return rows


def format_rows(rows: list[dict], lower_bound: bool) -> str:
    out = ["| frame (LR) | masks | mean density | device | dense 5 blocks | sparse 5 blocks | speed-up "
           "| main limiter |", "|---|---|---|---|---|---|---|---|"]
    ge, le = ("≥ ", "≤ ") if lower_bound else ("", "")
    for r in rows:
        out.append(f"| {r['frame']} | {r['case']} | {r['mean_density']:.2f} | {r['device']} | {r['dense_ms']:.2f} ms "
                   f"| {ge}{r['sparse_ms']:.2f} ms | {le}{r['speedup']:.2f}× | {r['limiter']} |")
    return "\n".join(out)


def load_kernels(source: str | None, design: str | None, prec: Precision = FP16) -> tuple[str, dict[str, Kernels]]:
    """(design, per-device Kernels) from a kernel source's SASS, or the nominal v2 figures when source is None."""
    import sass_report
    if source is None:
        design = design or "v2"
        return design, {key: NOMINAL_INT8 if prec.name == "int8" else NOMINAL[design] for key in DEVICES}
    rep = sass_report.report(Path(source), [d.arch for d in DEVICES.values()])
    is_async = all(lp["async_copy"] for k in rep["archs"]["87"].values() for lp in k["main_loops"]
                   if lp["mma_op"].startswith("HMMA") and lp["outermost"])
    design = design or ("v2" if is_async else "v1")
    return design, {key: kernels_from_report(rep, dev.arch, design, prec) for key, dev in DEVICES.items()}


def compare_rows(before: list[dict], after: list[dict], lb_before: bool = False, lb_after: bool = False) -> str:
    """Before/after Markdown table; '≥ t' / '≤ x' where inner loops make the SASS count a lower bound."""
    tb, sb = ("≥ ", "≤ ") if lb_before else ("", "")
    ta, sa = ("≥ ", "≤ ") if lb_after else ("", "")
    keep = ("Set5 mean per block", "uniform 37%", "uniform 63%", "uniform 100%")
    out = ["| frame (LR) | masks | device | dense ×5 | before ×5 | before speed-up | after ×5 | after speed-up "
           "| after limiter |", "|---|---|---|---|---|---|---|---|---|"]
    for b, a in zip(before, after):
        if a["case"] not in keep:
            continue
        out.append(f"| {a['frame']} | {a['case']} ({a['mean_density']:.2f}) | {a['device']} | {a['dense_ms']:.2f} ms "
                   f"| {tb}{b['sparse_ms']:.2f} ms | {sb}{b['speedup']:.2f}× | {ta}{a['sparse_ms']:.2f} ms "
                   f"| {sa}{a['speedup']:.2f}× "
                   f"| {a['limiter']} |")
    return "\n".join(out)


def main(argv=None) -> int:
    import sass_report
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", nargs="?", default=str(sass_report.DEFAULT_SOURCE))
    ap.add_argument("--design", choices=("v1", "v2"), help="work decomposition (default: v2 if the main loops "
                                                          "use cp.async, else v1)")
    ap.add_argument("--nominal", action="store_true", help="use the design's nominal SASS figures (no compile)")
    ap.add_argument("--measure-masks", action="store_true", help="recompute the Set5 densities (PyTorch, weights)")
    ap.add_argument("--weights", default=str(ROOT.parent / "shared/weights/smsr_x2_official.pt"))
    ap.add_argument("--set5", default=str(ROOT.parent / "shared/data/Set5/LR_bicubic/X2"))
    ap.add_argument("--before", metavar="KERNEL.cu", help="print a before/after table against this source")
    ap.add_argument("--precision", choices=tuple(PRECISIONS), default="fp16",
                    help="fp16 kernels vs dense FP16 (default), or the INT8 kernels vs dense INT8")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    prec = PRECISIONS[args.precision]
    if args.measure_masks:
        MEASURED_DENSITY.clear()
        MEASURED_DENSITY.update(measure_masks(args.weights, Path(args.set5)))
    try:
        design, kern = load_kernels(None if args.nominal else args.source, args.design, prec)
        before = load_kernels(args.before, None) if args.before else None
    except (sass_report.ReportError, ValueError) as exc:
        print(f"perf_model: {exc}", file=sys.stderr)
        return 2
    rows = table(design, kern, prec)
    if before:
        print("MODEL (not measured): the five sparse blocks of one frame vs five dense blocks (FP16)\n")
        lb = [any(k.lower_bound for k in kk.values()) for kk in (before[1], kern)]
        print(compare_rows(table(*before), rows, *lb))
        return 0
    if args.json:
        print(json.dumps({"design": design, "kernels": {k: dataclasses.asdict(v) for k, v in kern.items()},
                          "densities": MEASURED_DENSITY, "rows": rows}, indent=1))
        return 0
    lb = any(v.lower_bound for v in kern.values())
    print(f"MODEL (not measured), design {design}, {prec.name} vs dense {prec.name}, "
          f"kernels {args.source if not args.nominal else '(nominal)'}")
    for key, v in kern.items():
        print(f"  {DEVICES[key].name}: {v.instr_per_hmma:.1f} instr/{prec.mma}{' (lower bound)' if v.lower_bound else ''}, "
              f"{'cp.async' if v.async_copy else 'synchronous'} gathers{' (L1 bypass)' if v.l1_bypass else ''}, "
              f"{v.registers} regs x {v.threads} threads, {occupancy(DEVICES[key], v)} blocks/SM")
    if prec.name == "int8":
        print(f"  limit derived for CI: instructions per IMMA <= {derived_instr_per_imma_limit():.1f}\n")
    else:
        print(f"  limit derived for CI: instructions per HMMA <= {derived_instr_per_hmma_limit():.1f}\n")
    print(format_rows(rows, lb))
    dev = DEVICES["orin"]
    ft = frame_times(design, [0.37] * 5, FRAMES["1280x720"], dev, kern["orin"], prec=prec)
    if design == "v2" and prec.name == "fp16":
        hwc = frame_times(design, [0.37] * 5, FRAMES["1280x720"], dev, kern["orin"], nhwc_io=True)
        print(f"\nWith kHWC8 (channels-last) x and y, no pack in the prepare kernel: {dev.name} 1280x720 37 %: "
              f"{hwc['sparse_ms']:.2f} ms, {hwc['speedup']:.2f}x")
    print(f"\nBreakdown, {dev.name}, 1280x720, 37 % in every block (ms; limiter):")
    for b, blk in enumerate(ft["blocks"]):
        parts = ", ".join(f"{k['label']} {k['time'] * 1e3:.2f} ({k['limiter']})" for k in blk["kernels"])
        print(f"  block {b}: prepare/launches {blk['prepare'] * 1e3:.2f}, {parts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
