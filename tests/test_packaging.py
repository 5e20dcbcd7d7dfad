"""Packaging: `cmake --install --prefix` stays under the prefix; `pip install .` (a scikit-build-core wheel) ships
the CPU op in engine/lib/ with a RUNPATH relative to itself that finds the scipy-openblas32 wheel beside it."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers import missing_component

REPO = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("SMSR_BUILD_DIR", REPO / "build"))


def _runpath(lib: Path) -> str:
    if not shutil.which("readelf"):
        missing_component("readelf (binutils) not found")
    out = subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True, check=True).stdout
    return next((line.split("[", 1)[1].rstrip("]") for line in out.splitlines() if "RUNPATH" in line
                 or "RPATH" in line), "")


def test_cmake_install_honours_the_prefix(tmp_path):
    if not (BUILD / "plugins" / "onnxruntime" / "libsmsr_ort_ops.so").is_file():
        missing_component(f"CPU op library not built in {BUILD}")
    before = sorted((REPO / "engine").rglob("*.so"))
    r = subprocess.run(["cmake", "--install", str(BUILD), "--prefix", str(tmp_path / "x")], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    files = sorted(p.relative_to(tmp_path / "x").as_posix() for p in (tmp_path / "x").rglob("*") if p.is_file())
    assert "lib/libsmsr_ort_ops.so" in files, files
    if (BUILD / "plugins" / "smsrSparseBlock" / "libsmsr_trt_plugin.so").is_file():
        assert {"lib/libsmsr_trt_plugin.so", "lib/libsmsr_trt_plugin.so.archs"} <= set(files)
    assert sorted((REPO / "engine").rglob("*.so")) == before  # nothing into the source tree
    import scipy_openblas32
    assert scipy_openblas32.get_lib_dir() in _runpath(tmp_path / "x" / "lib" / "libsmsr_ort_ops.so").split(":")


@pytest.mark.slow
def test_wheel_ships_a_relocatable_cpu_op(tmp_path, onnx_graphs):
    if importlib.util.find_spec("scikit_build_core") is None:
        missing_component("scikit-build-core (the build backend; make setup installs it)")
    env = {k: v for k, v in os.environ.items() if k not in ("SMSR_ORT_OPS_LIB", "TensorRT_ROOT")}
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    wheel = next((tmp_path / "dist").glob("smsr_engine-*.whl"))
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        z.extractall(site)
    assert "engine/lib/libsmsr_ort_ops.so" in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "smsr = engine.smsr:main" in (site / entry).read_text()
    lib = site / "engine" / "lib" / "libsmsr_ort_ops.so"
    assert _runpath(lib) == "$ORIGIN/../../scipy_openblas32/lib"
    assert b"site-packages" not in lib.read_bytes()  # no absolute path of the build machine
    # A site-packages of its own: the package and the OpenBLAS wheel side by side, nothing from the checkout.
    import scipy_openblas32
    os.symlink(Path(scipy_openblas32.__file__).parent, site / "scipy_openblas32")
    # The checkout's own editable install (make setup: scikit-build-core) puts an import redirect in front of
    # sys.path; drop it so this interpreter sees only the unpacked wheel, as a user's site-packages would.
    code = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path "
            "if type(f).__name__ != 'ScikitBuildRedirectingFinder']; "
            "import numpy as np, onnxruntime as ort; from engine import ort_ops; "
            "p = ort_ops.find_custom_op_library(); assert str(p).startswith(%r), p; "
            "so = ort.SessionOptions(); ort_ops.register_custom_ops(so); "
            "s = ort.InferenceSession(%r, so, providers=['CPUExecutionProvider']); "
            "x = np.random.default_rng(0).uniform(0, 255, (1, 3, 20, 18)).astype(np.float32); "
            "print('sr', s.run(['sr'], {'lr': x})[0].shape)" % (str(site), str(onnx_graphs["deploy"])))
    run_env = {**env, "PYTHONPATH": str(site), "SMSR_CPU_PATH": "blas"}  # the OpenBLAS path of the op
    run_env.pop("SMSR_OPENBLAS_LIB", None)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env=run_env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "sr (1, 3, 40, 36)" in r.stdout
