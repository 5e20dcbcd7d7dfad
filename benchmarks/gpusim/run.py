"""Sparse-block kernels vs a dense plain-WMMA block on GPGPU-Sim (SM86_RTX3070 config): simulated cycles.

    python benchmarks/gpusim/run.py [--kernels DIR] [--sizes 48x48,64x64] [--jobs 2] [--quick]

Builds (or reuses) the simulator (build_sim.sh), makes block-0 fixtures of the official model from Set5
crops (tests/fixtures/dump_block_fixture.py), compiles driver.cu with the simulator's CUDA 11.8 nvcc for sm_86
(kernel sources from --kernels, built with -DSMSR_PLAIN_WMMA), runs every case in the simulator (--jobs in
parallel), reads each launch's gpu_sim_cycle from the simulator log and prints cycles per layer and per block
and the sparse/dense ratio per density. Every run checks its output against a float64 host reference.
Results: <build>/results/results.json and results.md. Relative numbers only (the simulator's tensor-core
timing is a config, not validated against hardware).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CONFIG = "SM86_RTX3070"

# Real crops (Set5 LR x2 centre crops, official block-0 split) and synthetic densities on one image's inputs.
REAL_IMAGES = {"48x48": "bird", "64x64": "butterfly", "32x32": "bird"}
SYNTHETIC = (0.0, 0.37, 1.0)


class BenchError(Exception):
    """A step failed in a way the user can act on (message says which)."""


@dataclass
class Case:
    name: str
    mode: str  # sparse | dense
    size: str
    fixture: Path
    density: float | None = None  # None: the fixture's real mask
    launches: list = field(default_factory=list)
    result: dict = field(default_factory=dict)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    reused: bool = False
    error: str = ""


def sh(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=False, text=True, capture_output=True, **kw)


def build_simulator(build: Path) -> Path:
    env = dict(os.environ, GPUSIM_DIR=str(build))
    r = subprocess.run(["bash", str(HERE / "build_sim.sh"), "all"], env=env, check=False)
    if r.returncode != 0:
        raise BenchError("building the simulator failed (see the messages above)")
    libs = sorted((build / "gpgpu-sim" / "lib").glob("gcc-*/cuda-11080/release/libcudart.so.11.0"))
    if not libs:
        raise BenchError(f"no simulator libcudart under {build / 'gpgpu-sim' / 'lib'}")
    return libs[0].parent


def simulator_env(build: Path, libdir: Path) -> dict:
    """The environment the simulator's setup_environment makes (PTX extraction needs CUDA_INSTALL_PATH etc.)."""
    sim = build / "gpgpu-sim"
    env = dict(os.environ, CUDA_INSTALL_PATH=str(build / "cuda-11.8"),
               PATH=f"{build / 'prefix' / 'usr' / 'bin'}:{os.environ.get('PATH', '')}")
    r = subprocess.run(["bash", "-c", "source setup_environment release >/dev/null && env -0"], cwd=sim, env=env,
                       capture_output=True, check=False)
    if r.returncode != 0:
        raise BenchError(f"sourcing {sim}/setup_environment failed: {r.stderr.decode(errors='replace')[-1000:]}")
    out = dict(kv.split("=", 1) for kv in r.stdout.decode(errors="replace").split("\0") if "=" in kv)
    out["LD_LIBRARY_PATH"] = f"{libdir}:{out.get('LD_LIBRARY_PATH', '')}"
    return out


def make_fixture(build: Path, weights: Path, data: Path, image: str, size: str) -> Path:
    out = build / "fixtures" / f"{image}_{size}_block0.bin"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    img = data / "LR_bicubic" / "X2" / f"{image}.png"
    if not img.exists():
        raise BenchError(f"Set5 image not found: {img} (set --data to the folder holding Set5/)")
    if not weights.exists():
        raise BenchError(f"weights not found: {weights} (set --weights)")
    r = sh([sys.executable, "-m", "tests.fixtures.dump_block_fixture", "--weights", str(weights), "--image", str(img),
            "--block", "0", "--crop", size, "--out", str(out)], cwd=ROOT)
    if r.returncode != 0:
        raise BenchError(f"making the fixture {out.name} failed:\n{r.stderr[-2000:]}")
    return out


def compile_driver(build: Path, kernels: Path, tag: str, driver: Path) -> Path:
    nvcc = build / "cuda-11.8" / "bin" / "nvcc"
    exe = build / f"driver-{tag}"
    srcs = [driver, kernels / "sparseBlockKernels.cu", kernels / "sparseBlockShape.cpp"]
    for s in srcs:
        if not s.exists():
            raise BenchError(f"source missing: {s}")
    stamp = exe.with_suffix(".srcs")
    key = json.dumps([[str(s), s.stat().st_mtime] for s in srcs + list(kernels.glob("*.cuh"))
                      + list(kernels.glob("*.h")) + [HERE / "dense_block.cuh"]])
    if exe.exists() and stamp.exists() and stamp.read_text() == key:
        return exe
    common = kernels.parent.parent / "common"
    cmd = [str(nvcc), "-allow-unsupported-compiler", "--cudart", "shared", "-arch=sm_86", "-std=c++17", "-O3",
           "--expt-relaxed-constexpr", "-DSMSR_PLAIN_WMMA", f"-I{kernels}", f"-I{common}", f"-I{HERE}",
           *map(str, srcs), "-o", str(exe)]
    print(f"compiling the driver ({tag}) with CUDA 11.8 nvcc ...", flush=True)
    r = sh(cmd)
    if r.returncode != 0:
        raise BenchError(f"compiling the driver failed:\n{' '.join(cmd)}\n{r.stderr[-4000:]}")
    stamp.write_text(key)
    return exe


def prepare_config(sim_root: Path, run_dir: Path) -> None:
    """Copy the SM86_RTX3070 config; give the two int-pipe lists the 6th (shfl) value the simulator reads."""
    run_dir.mkdir(parents=True, exist_ok=True)
    src = sim_root / "configs" / "tested-cfgs" / CONFIG
    for f in src.iterdir():
        shutil.copy(f, run_dir / f.name)
    cfg = run_dir / "gpgpusim.config"
    text = cfg.read_text()
    for opt, extra in (("-ptx_opcode_latency_int", "21"), ("-ptx_opcode_initiation_int", "4")):
        m = re.search(rf"^{opt}\s+(\S+)\s*$", text, re.M)
        if not m:
            raise BenchError(f"{cfg}: option {opt} not found")
        if len(m.group(1).split(",")) == 5:  # GV100's shfl values; without them the simulator segfaults
            text = text[:m.end(1)] + "," + extra + text[m.end(1):]
    cfg.write_text(text)


LAUNCH_KEYS = ("gpu_sim_cycle", "gpu_sim_insn", "gpu_tot_sim_cycle")


def parse_log(text: str) -> list[dict]:
    """One dict per kernel launch: name, grid, cycles, instructions and the work counters the simulator prints."""
    launches = []
    cur = None
    for line in text.splitlines():
        m = re.match(r"^kernel_name = (\S+)", line)
        if m:
            cur = {"name": m.group(1)}
            launches.append(cur)
            continue
        if cur is None:
            continue
        m = re.match(r"^(gpu_sim_cycle|gpu_sim_insn|gpu_tot_sim_cycle|gpu_tot_issued_cta|gpgpu_n_tot_w_icount|"
                     r"gpgpu_n_load_insn|gpgpu_n_store_insn|gpgpu_n_shmem_insn|gpgpu_n_sstarr_insn|"
                     r"gpgpu_n_tex_insn|gpgpu_n_const_mem_insn|gpgpu_n_param_mem_insn)\s*=\s*([0-9.]+)", line)
        if m and m.group(1) not in cur:
            v = m.group(2)
            cur[m.group(1)] = float(v) if "." in v else int(v)
    return launches


def short_name(mangled: str) -> str:
    """Unqualified function name of an Itanium-mangled kernel name (_ZN4smsr4kern11layerKernelI...E... -> layerKernel)."""
    m = re.match(r"_Z(N?)(.*)", mangled)
    if not m:
        return mangled
    rest, last = m.group(2), mangled
    while True:
        n = re.match(r"(\d+)", rest)
        if not n:
            return last
        k = int(n.group(1))
        last = rest[len(n.group(1)):len(n.group(1)) + k]
        rest = rest[len(n.group(1)) + k:]
        if not m.group(1):
            return last


def load_case(case: Case, d: Path) -> Case:
    text = (d / "sim.log").read_text(errors="replace")
    case.launches = parse_log(text)
    m = re.search(r"^GPUSIM_RESULT (.*)$", text, re.M)
    if m:
        for kv in m.group(1).split():
            k, v = kv.split("=", 1)
            try:
                case.result[k] = float(v) if re.search(r"[.e]|nan|inf", v) else int(v)
            except ValueError:
                case.result[k] = v
    return case


def dense_key(case: Case) -> str:
    """The dense baseline does not depend on the sparse kernels: its runs are reused while these inputs hold."""
    h = hashlib.sha256()
    for f in (HERE / "dense_block.cuh", HERE / "driver.cu", case.fixture):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def run_case(case: Case, exe: Path, env: dict, sim_root: Path, runs: Path, timeout: int) -> Case:
    d = runs / case.name
    if case.mode == "dense":
        d = runs.parent / "dense" / case.name
        key = dense_key(case)
        if (d / "key").exists() and (d / "key").read_text() == key:
            load_case(case, d)
            if case.result.get("ok") == 1:
                case.wall_s = case.cpu_s = 0.0
                case.error = ""
                case.reused = True
                return case
            case.launches, case.result = [], {}
    if d.exists():
        shutil.rmtree(d)
    prepare_config(sim_root, d)
    # GPGPU-Sim sums each WMMA k=16 dot product in FP16 (its mma_impl), so its outputs deviate ~1e-2 relative
    # from the float64 reference (5e-4 in the SIMT emulation); wrong work (lists, loads) shows as ~100 %.
    cmd = [str(exe), "--fixture", str(case.fixture), "--mode", case.mode, "--tol", "3e-2"]
    if case.density is not None:
        cmd += ["--density", str(case.density), "--seed", "7"]
    if case.mode == "dense":
        (d / "key").unlink(missing_ok=True)
    t0 = time.time()
    with open(d / "sim.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=d, env=env, stdout=log, stderr=subprocess.STDOUT)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        # wait4: this child's own CPU time (the machine may be shared; CPU seconds say what an idle one needs)
        _, status, usage = os.wait4(proc.pid, 0)
        timed_out = not timer.is_alive()
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
    rc = None if timed_out else proc.returncode
    case.wall_s = time.time() - t0
    case.cpu_s = usage.ru_utime + usage.ru_stime
    load_case(case, d)
    text = (d / "sim.log").read_text(errors="replace")
    m = case.result
    if rc is None:
        case.error = f"timed out after {timeout} s"
    elif rc != 0:
        tail = "\n".join(text.splitlines()[-5:])
        case.error = f"exit status {rc}" + ("" if m else f" (no result line; log tail: {tail})")
    elif case.mode == "dense":
        (d / "key").write_text(dense_key(case))
    return case


def total_cycles(case: Case) -> int:
    return sum(int(l.get("gpu_sim_cycle", 0)) for l in case.launches)


def layer_rows(case: Case) -> list[tuple[str, int]]:
    return [(short_name(l["name"]), int(l.get("gpu_sim_cycle", 0))) for l in case.launches]


def report(cases: list[Case], kernels_label: str) -> str:
    lines = [f"GPGPU-Sim 4.2.0, {CONFIG}, kernels: {kernels_label}",
             "", "| case | size | mode | density | launches (cycles each) | block cycles | vs dense | check |",
             "|---|---|---|---|---|---|---|---|"]
    dense = {c.size: total_cycles(c) for c in cases if c.mode == "dense" and not c.error}
    for c in cases:
        tot = total_cycles(c)
        ratio = f"{tot / dense[c.size]:.2f}x" if c.size in dense and dense[c.size] and c.mode == "sparse" else "-"
        dens = c.result.get("density", c.density)
        dens_s = f"{100 * dens:.1f} %" if isinstance(dens, (int, float)) else "?"
        if c.mode == "dense":
            dens_s = "- (all pixels)"
        per = ", ".join(f"{n} {v:,}" for n, v in layer_rows(c))
        chk = ("ok" if c.result.get("ok") == 1 else "MISMATCH") if c.result.get("checked") else "unchecked"
        if c.result:
            chk += f" (max err {c.result.get('max_abs_err', 0):.3g} of {c.result.get('max_abs_ref', 0):.3g})"
        if c.error:
            chk += f"; {c.error}"
        lines.append(f"| {c.name} | {c.size} | {c.mode} | {dens_s} | {per} | {tot:,} | {ratio} | {chk} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernels", type=Path, default=ROOT / "plugins" / "smsrSparseBlock" / "kernels",
                    help="folder with sparseBlockKernels.cu (default: this checkout's)")
    ap.add_argument("--driver", type=Path, default=HERE / "driver.cu",
                    help="driver source (default driver.cu; another one only for kernels with an older API)")
    ap.add_argument("--label", default="", help="name of the kernel version in the report")
    ap.add_argument("--build", type=Path, default=ROOT / "build-gpusim", help="reusable simulator folder (git-ignored)")
    ap.add_argument("--weights", type=Path, default=ROOT.parent / "shared" / "weights" / "smsr_x2_official.pt")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "Set5")
    # Defaults sized for < 15 min on an idle 2-core machine (estimated from the per-launch speeds, not timed end
    # to end): larger crops fill more of the simulated GPU but cost ~linearly more CPU time.
    ap.add_argument("--sizes", default="48x48", help="crop sizes (HxW), comma-separated")
    ap.add_argument("--synthetic-size", default="32x32", help="size of the synthetic-mask cases ('' = none)")
    ap.add_argument("--cases", default="", help="comma-separated case names to run (default all)")
    ap.add_argument("--jobs", type=int, default=2, help="simulations run in parallel (single-threaded each)")
    ap.add_argument("--report-only", action="store_true",
                    help="no simulations: rebuild the report from the logs of an earlier run with the same cases")
    ap.add_argument("--timeout", type=int, default=7200, help="seconds per simulation")
    args = ap.parse_args(argv)
    try:
        return run(args)
    except BenchError as e:
        print(f"gpusim-bench: error: {e}", file=sys.stderr)
        return 2


def run(args) -> int:
    build = args.build.resolve()
    kernels = args.kernels.resolve()
    if not (kernels / "sparseBlockKernels.cu").exists():
        raise BenchError(f"--kernels {kernels}: no sparseBlockKernels.cu there")
    tag = re.sub(r"[^A-Za-z0-9]+", "_", args.label or "tree")
    if not args.report_only:
        libdir = build_simulator(build)
        exe = compile_driver(build, kernels, tag, args.driver.resolve())
        env = simulator_env(build, libdir)
    sim_root = build / "gpgpu-sim"

    cases: list[Case] = []
    sizes = [s for s in args.sizes.split(",") if s]
    for size in sizes:
        if not re.fullmatch(r"\d+x\d+", size):
            raise BenchError(f"bad size {size!r} (want HxW, e.g. 64x64)")
        img = REAL_IMAGES.get(size, "butterfly")
        fx = make_fixture(build, args.weights, args.data, img, size)
        cases.append(Case(f"dense_{size}", "dense", size, fx))
        cases.append(Case(f"sparse_{img}_{size}", "sparse", size, fx))
    if args.synthetic_size:
        size = args.synthetic_size
        img = REAL_IMAGES.get(size, "butterfly")
        fx = make_fixture(build, args.weights, args.data, img, size)
        if size not in sizes:
            cases.append(Case(f"dense_{size}", "dense", size, fx))
        for d in SYNTHETIC:
            cases.append(Case(f"sparse_synth{round(100 * d)}_{size}", "sparse", size, fx, density=d))
    if args.cases:
        want = set(args.cases.split(","))
        unknown = want - {c.name for c in cases}
        if unknown:
            raise BenchError(f"unknown case(s) {sorted(unknown)}; known: {[c.name for c in cases]}")
        cases = [c for c in cases if c.name in want]

    runs = build / "runs" / tag
    if args.report_only:
        for c in cases:
            d = (runs.parent / "dense" if c.mode == "dense" else runs) / c.name
            if (d / "sim.log").exists():
                load_case(c, d)
                if c.result.get("ok") is None:
                    c.error = "no result line (unfinished or failed run)"
            else:
                c.error = "not run"
        print(report(cases, args.label or str(kernels)))
        return 0
    print(f"running {len(cases)} simulations, {args.jobs} at a time (logs in {runs}) ...", flush=True)
    t0 = time.time()
    with cf.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futs = [pool.submit(run_case, c, exe, env, sim_root, runs, args.timeout) for c in cases]
        for f in cf.as_completed(futs):
            c = f.result()
            print(f"  {c.name}: {total_cycles(c):,} cycles, "
                  + ("reused" if c.reused else f"{c.wall_s:.0f} s wall, {c.cpu_s:.0f} s CPU") + (f" [{c.error}]" if c.error else ""),
                  flush=True)
    print(f"all simulations: {time.time() - t0:.0f} s wall")
    text = report(cases, args.label or str(kernels))
    print(text)
    out = build / "results" / tag
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps(
        [{"name": c.name, "mode": c.mode, "size": c.size, "density": c.density, "launches": c.launches,
          "result": c.result, "block_cycles": total_cycles(c), "wall_s": round(c.wall_s, 1), "cpu_s": round(c.cpu_s, 1), "error": c.error}
         for c in cases], indent=1))
    bad = [c.name for c in cases if c.error or c.result.get("ok") != 1]
    if bad:
        print(f"gpusim-bench: {len(bad)} case(s) failed or mismatched: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
