"""Every C++ test registered with ctest runs in pytest (the single test entry point of CI).

The emulated-kernel suites have their own wrapper (test_kernels_emulated.py: one pytest per warp order, bug and
sanitizer); this module runs every other ctest test (CPU op core in each of its code paths, TensorRT plugin host
tests, ...), discovered from `ctest -N`, so a newly registered C++ test cannot be forgotten by CI.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import missing_component

REPO = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("SMSR_BUILD_DIR", REPO / "build"))
COVERED_ELSEWHERE = re.compile(r"^(smsr_kernels_emu_|smsr_simt_selftest)")


def _ctest_names() -> list[str]:
    if not shutil.which("ctest") or not (BUILD / "CTestTestfile.cmake").is_file():
        return []
    out = subprocess.run(["ctest", "--test-dir", str(BUILD), "-N"], capture_output=True, text=True, timeout=60).stdout
    return re.findall(r"Test\s+#\d+: (\S+)", out)


NAMES = [n for n in _ctest_names() if not COVERED_ELSEWHERE.match(n)]


def test_cpp_build_has_tests():
    if not (BUILD / "CTestTestfile.cmake").is_file():
        missing_component(f"no CMake build at {BUILD} (cmake -S . -B build && cmake --build build -j2)")
    assert NAMES, f"ctest lists no C++ tests besides the emulated kernels in {BUILD}"


@pytest.mark.parametrize("name", NAMES)
def test_ctest(name):
    r = subprocess.run(["ctest", "--test-dir", str(BUILD), "-R", f"^{re.escape(name)}$", "--output-on-failure"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
