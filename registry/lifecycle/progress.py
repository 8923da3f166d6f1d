"""Progress of a long operation: a tqdm bar on a terminal, a line every few seconds otherwise.

The collector reports phases (``phase(name, total)``), work done (``advance(n)``) and notes
(``note(text)``: what a dry run would delete, warnings). Notes go to stdout, progress to stderr,
so ``registry garbage-collect --dry-run config.yml > list.txt`` keeps the list clean.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class Progress:
    """Silent reporter (``--quiet``, the background schedule): notes only if ``notes``."""

    def __init__(self, notes: bool = False, out: TextIO | None = None) -> None:
        self._notes = notes
        self.out = out or sys.stdout

    def phase(self, name: str, total: int | None = None) -> None: ...

    def advance(self, n: int = 1) -> None: ...

    def note(self, text: str) -> None:
        if self._notes:
            print(text, file=self.out, flush=True)

    def close(self) -> None: ...


class LineProgress(Progress):
    """``name: done/total`` on stderr at most every ``interval`` seconds, and at each phase's end."""

    def __init__(self, interval: float = 5.0, err: TextIO | None = None, out: TextIO | None = None) -> None:
        super().__init__(notes=True, out=out)
        self.err = err or sys.stderr
        self.interval = interval
        self._name: str | None = None
        self._total: int | None = None
        self._done = 0
        self._started = 0.0
        self._last = 0.0

    def phase(self, name: str, total: int | None = None) -> None:
        self._finish()
        self._name, self._total, self._done = name, total, 0
        self._started = self._last = time.monotonic()

    def advance(self, n: int = 1) -> None:
        self._done += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._line()

    def _line(self, final: bool = False) -> None:
        if self._name is None:
            return
        count = f"{self._done}/{self._total}" if self._total is not None else str(self._done)
        took = f" in {time.monotonic() - self._started:.1f}s" if final else ""
        print(f"{self._name}: {count}{' done' if final else ''}{took}", file=self.err, flush=True)

    def _finish(self) -> None:
        if self._name is not None:
            self._line(final=True)
        self._name = None

    def close(self) -> None:
        self._finish()


class BarProgress(Progress):
    """A tqdm bar per phase on the terminal (stderr); notes printed above it."""

    def __init__(self, out: TextIO | None = None) -> None:
        super().__init__(notes=True, out=out)
        from tqdm import tqdm

        self._tqdm = tqdm
        self._bar: Any = None

    def phase(self, name: str, total: int | None = None) -> None:
        self.close()
        self._bar = self._tqdm(total=total, desc=name, unit=" items", leave=True, file=sys.stderr,
                               dynamic_ncols=True, mininterval=0.2)

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def note(self, text: str) -> None:
        if self._bar is not None and self.out.isatty():
            self._bar.write(text, file=self.out)
        else:
            print(text, file=self.out, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def for_terminal(quiet: bool = False) -> Progress:
    """The reporter for a CLI run: silent with ``quiet``; a bar on a terminal; else lines."""
    if quiet:
        return Progress(notes=False)
    if sys.stderr.isatty():
        try:
            return BarProgress()
        except ImportError:  # tqdm missing: lines still tell the operator what happens
            pass
    return LineProgress()
