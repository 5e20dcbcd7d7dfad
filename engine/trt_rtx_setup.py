"""Work around the TensorRT-RTX wheel's packaging bug (tensorrt-rtx-cu13 1.7.x).

The wheel ships only ``libtensorrt_rtx.so.1``, but its ONNX parser dlopen()s the unversioned
``libtensorrt_rtx.so`` when it loads a plugin library; without it the process aborts
(``terminate called without an active exception``). The fix is one symlink next to the library:

    libtensorrt_rtx.so -> libtensorrt_rtx.so.1

Run after ``pip install tensorrt-rtx-cu13`` (idempotent, no GPU needed)::

    python -m engine.trt_rtx_setup          # apply the fix, print what it did
    python -m engine.trt_rtx_setup --check  # exit 1 when the fix is missing

No TensorRT import here: locating the wheel's folder must not load the libraries it fixes.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

LIBS_PACKAGE = "tensorrt_rtx_libs"
VERSIONED = "libtensorrt_rtx.so.1"
UNVERSIONED = "libtensorrt_rtx.so"


def libs_dir() -> Path | None:
    """Folder of the wheel's shared libraries, or None when tensorrt-rtx is not installed."""
    spec = importlib.util.find_spec(LIBS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def status(folder: Path | None = None) -> tuple[bool, str]:
    """(fixed, message). ``fixed`` is True when the unversioned name resolves to the real library."""
    folder = folder if folder is not None else libs_dir()
    if folder is None:
        return False, f"{LIBS_PACKAGE} not found: install tensorrt-rtx-cu13 first"
    real = folder / VERSIONED
    link = folder / UNVERSIONED
    if not real.is_file():
        return False, f"{real} missing: unexpected tensorrt-rtx wheel layout"
    if link.exists() and link.resolve() == real.resolve():
        return True, f"{link} -> {VERSIONED} present"
    if link.exists() or link.is_symlink():
        return False, f"{link} exists but does not point to {VERSIONED}"
    return False, f"{link} missing (TensorRT-RTX parser aborts when it loads a plugin)"


def apply(folder: Path | None = None) -> str:
    """Create the symlink if needed; returns a one-line description. Raises OSError on failure."""
    folder = folder if folder is not None else libs_dir()
    ok, msg = status(folder)
    if ok:
        return "already fixed: " + msg
    if folder is None or not (folder / VERSIONED).is_file():
        raise OSError(msg)
    link = folder / UNVERSIONED
    if link.is_symlink():  # dangling or wrong target: replace it
        link.unlink()
    elif link.exists():
        raise OSError(f"{link} is a regular file, not touching it")
    # Relative target so the fix survives moving the environment.
    os.symlink(VERSIONED, link)
    return f"fixed: created {link} -> {VERSIONED}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report; exit 1 when the fix is missing")
    args = parser.parse_args(argv)
    if args.check:
        ok, msg = status()
        print(msg)
        return 0 if ok else 1
    try:
        print(apply())
    except OSError as exc:
        print(f"trt_rtx_setup: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
