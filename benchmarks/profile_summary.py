"""``python -m benchmarks.profile_summary FILE...``: top functions of a py-spy raw (collapsed) profile.

``compare --py-spy DIR`` records our server per figure in py-spy's ``raw`` format (one line per
stack: ``frame;frame;... count``). This prints, per file, the functions holding the most samples
by themselves (self) and including callees (total), so a profile can be read in a terminal.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


#: leaf frames of a thread that waits for work (py-spy cannot always tell a blocked C call from work)
_IDLE_LEAVES = ("_worker (futures/thread.py)", "wait (threading.py)", "select (", "poll (", "epoll")


def short(frame: str) -> str:
    """``func (path/to/module.py:12)`` -> ``func (module.py)``: one entry per function, not per line."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    parts = path.split("/")
    tail = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{m.group('func')} ({tail})"


def summarize(path: Path, top: int, idle: bool) -> str:
    self_counts: collections.Counter[str] = collections.Counter()
    total_counts: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [short(f) for f in stack.split(";") if f]
        # py-spy puts the process/thread frames first; an idle thread sits in a wait at its leaf
        if not idle and frames and frames[-1].startswith(_IDLE_LEAVES):
            continue
        n = int(count)
        samples += n
        if frames:
            self_counts[frames[-1]] += n
        for frame in set(frames):
            total_counts[frame] += n
    out = [f"== {path.name}: {samples} samples"]
    out.append("-- self")
    for frame, n in self_counts.most_common(top):
        out.append(f"{100 * n / max(samples, 1):5.1f}%  {frame}")
    out.append("-- total (including callees)")
    for frame, n in total_counts.most_common(top):
        out.append(f"{100 * n / max(samples, 1):5.1f}%  {frame}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--idle", action="store_true", help="keep samples of threads waiting for work")
    args = parser.parse_args(argv)
    for path in args.files:
        print(summarize(path, args.top, args.idle))
    return 0


if __name__ == "__main__":
    sys.exit(main())
