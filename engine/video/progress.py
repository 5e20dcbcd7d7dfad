"""Progress of a video job: frames, fps and ETA; a redrawn line on a terminal, a plain line every few seconds in a
log, nothing with --quiet. The total is an estimate (or unknown for live streams): the ETA is shown only then."""
from __future__ import annotations

import sys
import time


class VideoProgress:
    def __init__(self, total: int | None, label: str, bar: bool | None = None, log=None, every_s: float = 10.0,
                 stream=None):
        self.total = total
        self.label = label
        self.stream = stream or sys.stderr
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = tty if bar is None else bar
        self.log = log  # plain lines when not drawing a bar (None: silent)
        self.every_s = every_s
        self.t0 = time.perf_counter()
        self._last = 0.0
        self._drawn = False
        self.done = 0
        self.offset = 0  # frames done before this run (resume): not counted in the fps

    def line(self, now: float | None = None) -> str:
        now = time.perf_counter() if now is None else now
        el = max(1e-9, now - self.t0)
        fps = (self.done - self.offset) / el
        s = "%s: frame %d" % (self.label, self.done)
        if self.total:
            s += "/%d (%d%%)" % (self.total, min(100, 100 * self.done // max(1, self.total)))
        s += ", %.2f fps, %s elapsed" % (fps, _fmt(el))
        if self.total and fps > 0 and self.done < self.total:
            s += ", eta %s" % _fmt((self.total - self.done) / fps)
        return s

    def update(self, done: int) -> None:
        self.done = done
        now = time.perf_counter()
        if self.bar:
            if now - self._last > 0.2:
                self._last = now
                self.stream.write("\r" + self.line(now)[:200] + "\033[K")
                self.stream.flush()
                self._drawn = True
        elif self.log is not None and now - self._last >= self.every_s:
            self._last = now
            self.log(self.line(now))

    def close(self) -> None:
        if self.bar and self._drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _fmt(seconds: float) -> str:
    s = int(seconds + 0.5)
    return "%d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60) if s >= 3600 else "%d:%02d" % (s // 60, s % 60)
