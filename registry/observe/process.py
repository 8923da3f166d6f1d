"""What this process is among the registry's processes (set by the CLI before and after forking)."""

from __future__ import annotations


class Role:
    #: the first process: it serves the debug address and delivers notifications
    primary: bool = True
    #: with ``http.workers > 1`` and metrics on: where the workers' snapshot sockets live
    metrics_dir: str | None = None


ROLE = Role()
