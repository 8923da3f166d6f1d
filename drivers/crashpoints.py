"""Test-only crash points: a test makes the process kill itself (SIGKILL) at a chosen point.

``PYREGISTRY_TEST_CRASH`` arms points: a comma-separated list of ``<point>`` or
``<point>@<text>`` (the point fires only when its subject, usually a driver path, contains
``<text>``). The variable is read once, when this module is first imported; unset -- always,
outside the kill -9 tests -- :func:`reached` is a single falsy check and does nothing.

A fired point sends SIGKILL to its own process: no ``finally``, no flush, no clean-up, exactly
what ``kill -9`` from outside at that instant would leave. Tests use it to hit the crash points of
a commit or a tag PUT deterministically instead of by timing. Points (grep ``reached(``):

- ``fs.put.before_rename`` / ``fs.put.after``: the filesystem driver's ``put_content``, with the
  temporary file (or directory) written and not yet renamed / after the rename
- ``upload.commit.before_move`` / ``upload.commit.after_move`` / ``upload.commit.after_link``:
  the commit of an upload, around the move of its data to the blob and the repository link
"""

from __future__ import annotations

import os
import signal

ENV = "PYREGISTRY_TEST_CRASH"


def _parse(value: str) -> dict[str, tuple[str, ...]]:
    armed: dict[str, list[str]] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        point, _, text = item.partition("@")
        armed.setdefault(point, []).append(text)
    return {point: tuple(texts) for point, texts in armed.items()}


_ARMED = _parse(os.environ.get(ENV, ""))


def reached(point: str, subject: str = "") -> None:
    """Die here, at once, when ``point`` is armed (and its text is in ``subject``)."""
    if not _ARMED:
        return
    texts = _ARMED.get(point)
    if texts is not None and any(text in subject for text in texts):
        os.kill(os.getpid(), signal.SIGKILL)
