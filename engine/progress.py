"""A small progress bar on stderr (no dependency): drawn only on a terminal, silent otherwise."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, label: str = "", stream=None, enabled: bool | None = None, width: int = 28):
        self.total = max(1, total)
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = (hasattr(self.stream, "isatty") and self.stream.isatty()) if enabled is None else enabled
        self.width = width
        self.done = 0
        self.t0 = time.perf_counter()
        self._last = 0.0
        self._drawn = False

    def update(self, done: int | None = None, total: int | None = None, label: str | None = None) -> None:
        if total is not None:
            self.total = max(1, total)
        if label is not None:
            self.label = label
        self.done = self.done + 1 if done is None else done
        now = time.perf_counter()
        # Redraw at most ~10 times a second, always on completion.
        if self.enabled and (now - self._last > 0.1 or self.done >= self.total):
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        frac = min(1.0, self.done / self.total)
        fill = int(frac * self.width)
        elapsed = now - self.t0
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        line = "\r%s [%s%s] %d/%d %s eta %s" % (self.label, "#" * fill, "." * (self.width - fill), self.done,
                                                self.total, _fmt(elapsed), _fmt(eta))
        self.stream.write(line[:200] + "\033[K")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _fmt(seconds: float) -> str:
    s = int(seconds + 0.5)
    return "%d:%02d" % (s // 60, s % 60)
