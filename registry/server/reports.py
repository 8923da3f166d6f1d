"""Log lines that cannot flood: a few per kind of event per interval, the rest counted.

A flood of malformed requests or refused connections must not grow the log faster than a
bounded rate, yet the operator must see that it happens and how much of it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Window:
    started: float
    level: int
    logged: int = 0
    suppressed: int = 0


class ThrottledLog:
    """At most ``burst`` lines per kind of event per ``interval`` seconds, then one line a window
    saying how many more there were (written by the next event or by :meth:`flush`)."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._windows: dict[str, _Window] = {}
        self._summaries: dict[str, str] = {}

    def event(self, kind: str, summary: str, message: str, *args: object, burst: int = 1,
              level: int = logging.WARNING) -> None:
        """Log ``message % args`` unless ``burst`` lines of ``kind`` were logged in this window; then
        count it for the window's summary ("<summary>: N more in the last 10s")."""
        now = self.clock()
        window = self._windows.get(kind)
        if window is not None and now - window.started >= self.interval:
            self._close(kind, window)
            window = None
        if window is None:
            window = self._windows[kind] = _Window(now, level)
        self._summaries[kind] = summary
        if window.logged < burst:
            window.logged += 1
            self.logger.log(level, message, *args)
        else:
            window.suppressed += 1

    def _close(self, kind: str, window: _Window) -> None:
        del self._windows[kind]
        if window.suppressed:
            self.logger.log(window.level, "%s: %d more in the last %ds", self._summaries.get(kind, kind),
                            window.suppressed, round(self.interval))

    def flush(self) -> None:
        """Write the summary of every window that has ended (call it now and then)."""
        now = self.clock()
        for kind, window in list(self._windows.items()):
            if now - window.started >= self.interval:
                self._close(kind, window)
