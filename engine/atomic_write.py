"""Write a file so that readers see either the old file or the complete new one, never a partial file."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, IO

from .errors import OutputError

# mkstemp creates 0600 files; outputs should get the usual permissions (0666 minus the umask).
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call write(fileobj) on a temp file in the destination folder, then rename it over `path`.
    A failure (or Ctrl-C) leaves no partial file behind; OS errors become OutputError naming the file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    except OSError as e:
        raise OutputError("%s: cannot create output file (%s)" % (path, e.strerror or e)) from None
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise OutputError("%s: cannot write output (%s)" % (path, e.strerror or e)) from None
        raise
    return path
