"""Progress on stderr: a tqdm bar on a terminal, plain lines elsewhere (logs, pipes), nothing when disabled.

Progress(total, label, enabled=None): None = bar on a terminal, plain lines otherwise; True = always the bar;
False = silent. `update(done, total, mp=...)` moves it; `mp` (megapixels written so far) adds an MP/s figure.
Plain lines are written at most every PLAIN_INTERVAL seconds and once at the end, and only for more than one step.
"""
from __future__ import annotations

import sys
import time

PLAIN_INTERVAL = 5.0


def _fmt(seconds: float) -> str:
    s = int(seconds + 0.5)
    return "%d:%02d" % (s // 60, s % 60)


class Progress:
    def __init__(self, total: int, label: str = "", stream=None, enabled: bool | None = None):
        self.total = max(1, total)
        self.label = label
        self.stream = stream or sys.stderr
        tty = bool(getattr(self.stream, "isatty", None) and self.stream.isatty())
        self.mode = "off" if enabled is False else ("bar" if (enabled or tty) else "plain")
        self.done = 0
        self.mp = 0.0
        self.t0 = time.perf_counter()
        self._last_plain = self.t0
        self._closed = False
        self._bar = None
        if self.mode == "bar":
            from tqdm import tqdm
            self._bar = tqdm(total=self.total, desc=label, file=self.stream, leave=False, dynamic_ncols=True,
                             unit="", bar_format="{desc} {bar} {n_fmt}/{total_fmt} [{elapsed}<{remaining}]{postfix}")

    def _rate(self) -> str:
        dt = time.perf_counter() - self.t0
        return " %.2f MP/s" % (self.mp / dt) if self.mp and dt > 0 else ""

    def update(self, done: int | None = None, total: int | None = None, label: str | None = None,
               mp: float | None = None) -> None:
        if total is not None:
            self.total = max(1, total)
        if label is not None:
            self.label = label
        if mp is not None:
            self.mp = mp
        self.done = self.done + 1 if done is None else done
        if self._bar is not None:
            self._bar.total = self.total
            if label is not None:
                self._bar.set_description_str(label, refresh=False)
            if mp is not None:
                self._bar.set_postfix_str(self._rate().strip(), refresh=False)
            # tqdm.update redraws at most every 0.1 s (mininterval): cheap even for thousands of tiles
            self._bar.update(min(self.done, self.total) - self._bar.n)
            if self.done >= self.total:
                self._bar.refresh()  # the final state is always drawn
        elif self.mode == "plain" and self.total > 1:
            now = time.perf_counter()
            if self.done >= self.total or now - self._last_plain >= PLAIN_INTERVAL:
                self._last_plain = now
                self._plain_line(now)

    def _plain_line(self, now: float) -> None:
        elapsed = now - self.t0
        frac = min(1.0, self.done / self.total)
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        self.stream.write("%s %d/%d (%.0f%%) %s elapsed, eta %s%s\n" % (
            self.label, self.done, self.total, 100 * frac, _fmt(elapsed), _fmt(eta), self._rate()))
        self.stream.flush()

    def clear(self) -> None:
        """Take the bar off the line so a message can be printed; the next update draws it again."""
        if self._bar is not None:
            self._bar.clear()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
