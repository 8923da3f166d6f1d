"""The request a piece of code runs for: its id, for log lines, events and the response header.

The observe middleware puts the request in :data:`CURRENT` (a context variable, so tasks the
request starts inherit it); log records, events and spans read it from there instead of having
the request passed down. A request id comes from the client's ``X-Request-Id`` when that is a
short, plain token (a proxy in front may have assigned it), else it is made here: a random
per-process prefix plus a counter (cheaper than a UUID, unique across processes and hosts).
"""

from __future__ import annotations

import itertools
import os
import re
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web

REQUEST_ID_HEADER = "X-Request-Id"
#: the request being handled by the current task (None outside requests)
CURRENT: ContextVar[web.Request | None] = ContextVar("registry_request", default=None)
#: ``time.perf_counter()`` when the observe middleware saw the request (the access hook's clock).
#: A context variable, not a request key: aiohttp runs each request in its own task (its own copy
#: of the context) and calls the access hook in that task, so one C call sets it and one reads it
#: (a request key costs two Python-level calls each way); never reset, it dies with the task.
STARTED: ContextVar[float | None] = ContextVar("registry_request_started", default=None)

_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{8,128}")


class _Ids:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count(1)

    def new(self) -> str:
        return f"{self.prefix}-{next(self.counter):x}"


_IDS = _Ids()
os.register_at_fork(after_in_child=_IDS.reset)  # forked workers must not repeat the parent's ids


def _request_id_key() -> "web.RequestKey[str]":
    key = globals().get("REQUEST_ID_KEY")
    if key is None:
        from aiohttp import web

        key = globals()["REQUEST_ID_KEY"] = web.RequestKey("registry.request_id", str)
    return key


def __getattr__(name: str) -> Any:
    """``REQUEST_ID_KEY`` (``web.RequestKey("registry.request_id", str)``), made on first use:
    the operator commands (``registry garbage-collect``...) import this module through the
    notifier but never serve a request, and importing aiohttp costs them ~0.2 s."""
    if name == "REQUEST_ID_KEY":
        return _request_id_key()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def new_request_id() -> str:
    return _IDS.new()


def request_id_for(request: web.Request) -> str:
    """The id to use for ``request``: the client's (or proxy's) when well-formed, else a new one."""
    given = request.headers.get(REQUEST_ID_HEADER)
    if given is not None and _VALID_ID.fullmatch(given):
        return given
    return _IDS.new()


def current_request() -> web.Request | None:
    return CURRENT.get()


def current_request_id() -> str | None:
    request = CURRENT.get()
    return None if request is None else request.get(_request_id_key())


def set_current(request: web.Request) -> Any:
    return CURRENT.set(request)


def reset_current(token: Any) -> None:
    CURRENT.reset(token)
