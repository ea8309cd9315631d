"""A dependency-free progress bar for loops over steps or studies (writes to stderr)."""
from __future__ import annotations

import sys
import time


class Progress:
    """``with Progress(total, label) as p: ... p.update()`` draws ``label [####    ] 3/8 1.2s``.

    Disabled (draws nothing) when ``enabled`` is False, so samplers can always call it.
    """

    def __init__(self, total: int, label: str = "", enabled: bool = True, stream=None, width: int = 30):
        self.total = max(int(total), 1)
        self.label = label
        self.enabled = bool(enabled)
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.done = 0
        self.start = time.perf_counter()

    def __enter__(self):
        self._draw()
        return self

    def update(self, k: int = 1) -> None:
        self.done = min(self.done + k, self.total)
        self._draw()

    def _draw(self) -> None:
        if not self.enabled:
            return
        filled = int(self.width * self.done / self.total)
        bar = "#" * filled + " " * (self.width - filled)
        elapsed = time.perf_counter() - self.start
        self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total} {elapsed:.1f}s")
        self.stream.flush()

    def __exit__(self, *exc):
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
        return False
