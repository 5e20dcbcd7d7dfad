"""The `smsr` command: one entry point for every tool of the project (a thin dispatcher).

    smsr upscale IMG... -o OUT      smsr bench           (engine/cli.py, no PyTorch)
    smsr evaluate --data DIR        (engine/evaluate.py)
    smsr download                   (engine/download.py: official checkpoint + Set5 into $SMSR_HOME)
    smsr export-onnx  smsr summary  smsr build-engine   (converters/, need PyTorch: pip install smsr-engine[convert])

Each subcommand keeps its own parser and exit codes; `python -m engine ...`, `python -m engine.evaluate ...`,
`python -m converters.export_onnx ...` and `python converters/build_engine.py ...` keep working.
"""
from __future__ import annotations

import importlib
import sys
from typing import Callable

# name -> (module, help); the module's main(argv, prog=...) runs the subcommand. Later tools add a line here.
COMMANDS: dict[str, tuple[str, str]] = {
    "upscale": ("engine.cli", "upscale images (default model: $SMSR_HOME/models/smsr_x2_deploy.onnx)"),
    "bench": ("engine.cli", "latency and throughput on random input"),
    "evaluate": ("engine.evaluate", "PSNR/SSIM on a benchmark folder (HR/ + LR_bicubic/X<s>/)"),
    "download": ("engine.download", "official x2 checkpoint and Set5, SHA-256 verified, into $SMSR_HOME"),
    "export-onnx": ("converters.export_onnx", "checkpoint -> ONNX graphs; --install sets the default model"),
    "build-engine": ("converters.build_engine", "checkpoint/ONNX -> TensorRT or TensorRT-RTX engine"),
    "summary": ("converters.summary", "per-block channel split, mask density and multiply-adds"),
}
# Commands whose module shares one parser with its siblings (engine.cli has upscale and bench).
_SHARED_PARSER = {"upscale", "bench"}
CONVERT_HINT = ("needs PyTorch (the converters): pip install 'smsr-engine[convert]' (a CPU-only machine: "
                "pip install torch --index-url https://download.pytorch.org/whl/cpu first)")


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: smsr COMMAND [options]   (smsr COMMAND --help for its options)", "", "commands:"]
    lines += ["  %-*s  %s" % (width, name, text) for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def _load(name: str) -> Callable[..., int]:
    module = importlib.import_module(COMMANDS[name][0])
    return module.main


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print("error: unknown command %r\n%s" % (name, usage()), file=sys.stderr)
        return 2
    try:
        run = _load(name)
    except ModuleNotFoundError as exc:  # a converter without PyTorch (or onnx) installed
        if exc.name in ("torch", "onnx", "onnx_graphsurgeon", "onnxconverter_common"):
            print("error: smsr %s %s (missing module %s)" % (name, CONVERT_HINT, exc.name), file=sys.stderr)
            return 5
        raise
    try:
        if name in _SHARED_PARSER:
            return run([name, *rest], prog="smsr")
        return run(rest, prog="smsr " + name)
    except ModuleNotFoundError as exc:  # imported lazily by the subcommand
        if exc.name == "torch":
            print("error: smsr %s %s" % (name, CONVERT_HINT), file=sys.stderr)
            return 5
        raise


if __name__ == "__main__":
    sys.exit(main())
