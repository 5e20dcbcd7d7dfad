"""Build progress on stderr from TensorRT's IProgressMonitor (both TensorRT and TensorRT-RTX call it).

On a terminal: one line rewritten in place ("phase > subphase 3/10"); otherwise one line per top-level phase, so CI
logs stay short. The class is made per builder module because IProgressMonitor lives in that module."""
from __future__ import annotations

import sys
import time


def make_progress_monitor(trt, stream=None):
    stream = stream or sys.stderr

    class BuildProgress(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self._phases: dict[str, tuple[int, int]] = {}  # name -> (step, steps)
            self._order: list[str] = []
            self._start = time.perf_counter()
            self._tty = hasattr(stream, "isatty") and stream.isatty()
            self._last_draw = 0.0
            self.phases_seen: list[str] = []

        def phase_start(self, phase_name, parent_phase, num_steps):
            self._phases[phase_name] = (0, num_steps)
            self._order.append(phase_name)
            self.phases_seen.append(phase_name)
            if not parent_phase and not self._tty:
                print(f"  [{time.perf_counter() - self._start:6.1f}s] {phase_name} ({num_steps} steps)",
                      file=stream, flush=True)
            self._draw()

        def step_complete(self, phase_name, step):
            if phase_name in self._phases:
                self._phases[phase_name] = (step + 1, self._phases[phase_name][1])
            self._draw(throttle=True)
            return True  # never cancel

        def phase_finish(self, phase_name):
            self._phases.pop(phase_name, None)
            if phase_name in self._order:
                self._order.remove(phase_name)
            if not self._order and self._tty:
                print("\r\033[K", end="", file=stream, flush=True)

        def _draw(self, throttle: bool = False):
            now = time.perf_counter()
            if not self._tty or (throttle and now - self._last_draw < 0.1):  # thousands of steps: 10 redraws/s
                return
            self._last_draw = now
            text = " > ".join(f"{n} {s}/{t}" for n, (s, t) in ((n, self._phases[n]) for n in self._order))
            print(f"\r\033[K  [{time.perf_counter() - self._start:6.1f}s] {text[-150:]}", end="", file=stream,
                  flush=True)

    return BuildProgress()
