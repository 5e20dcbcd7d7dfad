"""`smsr download`: the official x2 checkpoint and Set5 (HR + LR_bicubic/X2) from the authors' repository
(github.com/LongguangWang/SMSR) at a pinned commit, each file SHA-256 verified, into $SMSR_HOME:

    $SMSR_HOME/weights/smsr_x2_official.pt
    $SMSR_HOME/data/Set5/HR/*.png, $SMSR_HOME/data/Set5/LR_bicubic/X2/*.png

All files are fetched into a staging folder first and moved into place only when every one arrived and matched its
hash: a network failure or a bad file leaves nothing behind (files already in place and verified are kept and not
fetched again). No PyTorch needed.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from .atomic_write import atomic_write
from .errors import EngineError, UsageError

PINNED_COMMIT = "e1fd21e99a1baad14b6e6b4a7cd36735d7180ea5"  # the repository's last commit (2021-07-16)
BASE_URL = f"https://raw.githubusercontent.com/LongguangWang/SMSR/{PINNED_COMMIT}/"
_SET5 = "testsets/benchmark/Set5/"
# (path in the repository, path under $SMSR_HOME, SHA-256, bytes)
FILES = [
    ("experiment/SMSR_X2/model/model_1000.pt", "weights/smsr_x2_official.pt",
     "fe2a9ea09595e1ee3288d5543a22802ead716bdd0b4df9a5af373eb943eced0a", 3970719),
    (_SET5 + "HR/baby.png", "data/Set5/HR/baby.png",
     "cb85956d68f708a1030c790d143cbcd108f5ac5988d3349180cdcb54dd80597d", 371264),
    (_SET5 + "HR/bird.png", "data/Set5/HR/bird.png",
     "5dcf863f7c3802e68fbb0fca2ec351052a1f97a4db613e510dbd105cee9a6a32", 120453),
    (_SET5 + "HR/butterfly.png", "data/Set5/HR/butterfly.png",
     "487d841c9dbc46c7ab496c319ec1f13268de7ea7e02f94ae18781ca86a5abd0d", 127529),
    (_SET5 + "HR/head.png", "data/Set5/HR/head.png",
     "f524c1ce41641c1cf269a20c4dfbe965e07e471d609abc19dfadfb71037cc873", 113787),
    (_SET5 + "HR/woman.png", "data/Set5/HR/woman.png",
     "f276625a222b9ce18d18d86e1ec603fea50427b7c0a2927b3750b1bb86a07b83", 118848),
    (_SET5 + "LR_bicubic/X2/baby.png", "data/Set5/LR_bicubic/X2/baby.png",
     "3af537bab7a821cc201f38c59b4f2a74fbdacd5de83167df6098b5ea4b8d84d3", 109515),
    (_SET5 + "LR_bicubic/X2/bird.png", "data/Set5/LR_bicubic/X2/bird.png",
     "262d6c1a957eb247fdd0d889c4b39d80513cb684669f110fa7906f8da3b21e16", 38256),
    (_SET5 + "LR_bicubic/X2/butterfly.png", "data/Set5/LR_bicubic/X2/butterfly.png",
     "7a719cea96320ea0ed6d160d8597c89d791c1feb232f285db3a9f830934ffaec", 35925),
    (_SET5 + "LR_bicubic/X2/head.png", "data/Set5/LR_bicubic/X2/head.png",
     "cde6c758123bda99fe72dd799c0214066491f8c3dbaeb464952a50c6fe8e4f82", 33123),
    (_SET5 + "LR_bicubic/X2/woman.png", "data/Set5/LR_bicubic/X2/woman.png",
     "9c68395707709632579d89137793e826627a06ccb0a7f7360cc80e48a7f19cbe", 36618),
]
EXIT_NETWORK, EXIT_BAD_FILE = 5, 4


class DownloadError(EngineError):
    """The server could not be reached or did not send the file (exit 5)."""

    exit_code = EXIT_NETWORK


class HashMismatchError(EngineError):
    """A file arrived but is not the expected one (exit 4)."""

    exit_code = EXIT_BAD_FILE


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return "HTTP %d %s" % (exc.code, exc.reason)
    if isinstance(exc, urllib.error.URLError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
        if isinstance(exc, str):
            return exc
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def fetch(url: str, dest: Path, sha256: str | None, timeout: float = 60.0) -> None:
    """Download `url` to `dest` and check the hash; on any failure neither `dest` nor a temp file is left.
    Network failures raise DownloadError (never the OSError that a full disk would be), a wrong file
    HashMismatchError, a local write failure OutputError."""
    def write(out):
        h = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                while True:
                    block = response.read(1 << 20)
                    if not block:
                        break
                    h.update(block)
                    out.write(block)  # a local write error propagates as OSError -> OutputError
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, ValueError) as exc:
            raise DownloadError("download failed: cannot fetch %s: %s (no network? retry, or pass --base-url "
                                "with a mirror or a local copy)" % (url, _describe(exc))) from None
        if sha256 and h.hexdigest() != sha256:
            raise HashMismatchError("download failed: %s has SHA-256 %s, expected %s (not the pinned file)"
                                    % (url, h.hexdigest(), sha256))
    atomic_write(dest, write)


def _created_dirs(path: Path) -> list[Path]:
    """The folders mkdir(parents=True) would create for `path`, outermost first."""
    missing = []
    while not path.exists() and path.parent != path:
        missing.append(path)
        path = path.parent
    return missing[::-1]


def download_all(dest: Path, base_url: str = BASE_URL, files=FILES, timeout: float = 60.0,
                 log=print) -> list[Path]:
    """Fetch every missing or wrong file of `files` into `dest`; returns the paths. All or nothing."""
    base_url = base_url if base_url.endswith("/") else base_url + "/"
    todo = []
    for src, rel, sha, size in files:
        target = dest / rel
        if target.is_file() and sha256_file(target) == sha:
            continue
        todo.append((src, rel, sha, size))
    paths = [dest / rel for _, rel, _, _ in files]
    if not todo:
        log("all %d files already in %s (SHA-256 verified)" % (len(files), dest))
        return paths
    new_dirs = _created_dirs(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(dir=dest, prefix=".download-"))
    except OSError as exc:
        for d in reversed(new_dirs):
            if d.exists() and not any(d.iterdir()):
                d.rmdir()
        raise UsageError("cannot write into %s: %s" % (dest, exc.strerror or exc)) from None
    moved_dirs: list[Path] = []
    try:
        total = sum(size for *_, size in todo)
        log("downloading %d file%s (%.1f MB) from %s into %s" % (len(todo), "" if len(todo) == 1 else "s",
                                                                 total / 1e6, base_url, dest))
        for src, rel, sha, _ in todo:
            part = stage / rel
            part.parent.mkdir(parents=True, exist_ok=True)
            fetch(base_url + src, part, sha, timeout)
        for _, rel, _, _ in todo:  # every file arrived and matched: move them into place
            target = dest / rel
            moved_dirs += _created_dirs(target.parent)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / rel, target)
    except BaseException:
        for d in reversed(moved_dirs + new_dirs):  # only folders this run created, and only if still empty
            if d.exists() and d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        for d in reversed(new_dirs):
            if d.exists() and not any(d.iterdir()):
                d.rmdir()
    log("done: %s, %s (SHA-256 verified)" % (dest / "weights", dest / "data" / "Set5"))
    return paths


def main(argv: list[str] | None = None, prog: str = "python -m engine.download") -> int:
    from .home import smsr_home
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0].strip("`"),
                                 epilog="exit codes: 0 done, 2 cannot write the destination, 4 a file did not "
                                        "match its SHA-256, 5 network failure. Nothing partial is ever left.")
    ap.add_argument("--dest", type=Path, default=None, help="destination (default: $SMSR_HOME, ~/.cache/smsr)")
    ap.add_argument("--base-url", default=BASE_URL,
                    help="where the repository's files are (default: the pinned commit on raw.githubusercontent.com"
                         "); a mirror, or file:///path/to/a/clone/")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per connection (default: 60)")
    args = ap.parse_args(argv)
    dest = args.dest or smsr_home()
    try:
        download_all(dest, args.base_url, timeout=args.timeout)
    except EngineError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print("error: cannot write into %s: %s" % (dest, exc.strerror or exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing partial was kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
