"""Log formatting: ``log.formatter`` text | json | logstash, ``log.fields`` on every line, the
request id on every line a request causes, and the access log in the same format.

One handler on the root logger writes every line to stderr (like distribution). Its filters run
in this order: the redaction filter (:mod:`registry.observe.redact`: no credential, token or
upload state gets through; it is also the record factory), then :class:`ContextFilter` (request
id, static fields). The
access log is a logger (``registry.access``) like any other, so it shares handler, format and
filters (the HTTP metrics are recorded by the observe middleware, :mod:`.http`).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlencode

from aiohttp.abc import AbstractAccessLogger

from .context import CURRENT, REQUEST_ID_KEY, STARTED
from .http import body_bytes

FORMATTERS = ("text", "json", "logstash")
ACCESS_LOGGER = "registry.access"
#: query parameters whose values never reach a log line
SECRET_PARAMS = frozenset({"_state", "token", "access_token", "refresh_token", "password", "client_secret"})
#: record attributes the logging module sets itself (not fields of a line)
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_LEVELS = {"DEBUG": "debug", "INFO": "info", "WARNING": "warning", "ERROR": "error", "CRITICAL": "fatal"}


class ContextFilter(logging.Filter):
    """Adds ``http.request.id`` (from the current request) and the static ``log.fields``."""

    def __init__(self, fields: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.fields = dict(fields or {})

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            request = CURRENT.get()
            record.request_id = None if request is None else request.get(REQUEST_ID_KEY)
        record.static_fields = self.fields
        return True


def _timestamp(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    """Fields passed with ``extra=`` (e.g. the access log's ``http.*``)."""
    return {k: v for k, v in record.__dict__.items() if k not in _RESERVED and k not in _OURS}


_OURS = frozenset({"request_id", "static_fields", "fields"})


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...`` (request id and fields appended)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        parts = []
        request_id = getattr(record, "request_id", None)
        if request_id:
            parts.append(f"request_id={request_id}")
        for key, value in (getattr(record, "static_fields", None) or {}).items():
            parts.append(f"{key}={_text_value(value)}")
        if not parts:
            return line
        head, sep, tail = line.partition("\n")  # keep a traceback below the fields
        return f"{head} {' '.join(parts)}{sep}{tail}"


def _text_value(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (not text or any(c in text for c in ' "=\n')) else text


class JSONFormatter(logging.Formatter):
    """One JSON object per line, in logrus's shape (distribution's ``json`` formatter):
    ``time``, ``level``, ``msg``, then the fields."""

    time_key, level_key, message_key = "time", "level", "msg"
    constant: dict[str, Any] = {}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {}
        for key, value in (getattr(record, "static_fields", None) or {}).items():
            entry[str(key)] = value
        entry.update(self.constant)
        entry[self.time_key] = _timestamp(record.created)
        entry[self.level_key] = _LEVELS.get(record.levelname, record.levelname.lower())
        entry[self.message_key] = record.getMessage()
        entry["logger"] = record.name
        entry["pid"] = record.process
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["http.request.id"] = request_id
        entry.update(_extra(record))
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["error"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, separators=(",", ":"), ensure_ascii=False)


class LogstashFormatter(JSONFormatter):
    """The logstash shape distribution's ``logstash`` formatter writes: ``@timestamp``,
    ``@version``, ``level``, ``message``, then the fields."""

    time_key, level_key, message_key = "@timestamp", "level", "message"
    constant = {"@version": "1"}


def formatter_for(name: str) -> logging.Formatter:
    return {"text": TextFormatter, "json": JSONFormatter, "logstash": LogstashFormatter}[name]()


def configure(level: str = "info", formatter: str = "text", fields: Mapping[str, Any] | None = None,
              stream: TextIO | None = None) -> logging.Handler:
    """Route every logger to one stderr handler in ``formatter``'s format (replacing earlier set-ups)."""
    level = {"warn": "warning"}.get(level, level)
    from . import redact

    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(redact.RedactingFilter())  # first: nothing unredacted reaches the formatter
    handler.addFilter(ContextFilter(fields))
    handler.setFormatter(formatter_for(formatter))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close() if old is not handler else None
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    logging.getLogger("aiohttp.access").propagate = True
    redact.install()  # and the record factory: records are redacted where they are made
    return handler


# --------------------------------------------------------------------------- access log


def safe_path(request: Any) -> str:
    """The request's path and query with secret query values (upload ``_state``, tokens) removed."""
    query = request.query_string
    if not query:
        return request.path
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(k in SECRET_PARAMS for k, _ in pairs):
        query = urlencode([(k, "REDACTED" if k in SECRET_PARAMS else v) for k, v in pairs])
    return f"{request.path}?{query}"


def access_log_class() -> type[AbstractAccessLogger]:
    """The aiohttp access-logger class that writes the access line (installed only when the
    access log is on; the HTTP metrics are the observe middleware's)."""
    started_at = STARTED.get
    clock = time.perf_counter

    class AccessLog(AbstractAccessLogger):
        def log(self, request: Any, response: Any, duration: float) -> None:
            try:
                started = started_at()
                if started is not None:  # aiohttp's loop clock has millisecond steps on uvloop
                    duration = clock() - started
                self._write(request, response, duration, body_bytes(request.method, response))
            except Exception:  # noqa: BLE001 - an access line must never break a response
                self.logger.exception("access log failed")

        def _write(self, request: Any, response: Any, duration: float, sent: int) -> None:
            path = safe_path(request)
            agent = request.headers.get("User-Agent", "")
            remote = request.remote or "-"
            version = f"{request.version.major}.{request.version.minor}"
            extra = {
                "request_id": request.get(REQUEST_ID_KEY),
                "http.request.method": request.method,
                "http.request.uri": path,
                "http.request.host": request.host,
                "http.request.remoteaddr": remote,
                "http.request.useragent": agent,
                "http.response.status": response.status,
                "http.response.written": sent,
                "http.response.duration": round(duration, 6),
            }
            account = _account(request)
            if account:
                extra["auth.user.name"] = account
            self.logger.info('%s "%s %s HTTP/%s" %d %d "%s" %.6fs', remote, request.method, path, version,
                             response.status, sent, agent, duration, extra=extra)

    return AccessLog


_ACCOUNT_KEY: Any = None


def _account(request: Any) -> str | None:
    global _ACCOUNT_KEY
    if _ACCOUNT_KEY is None:
        from ..auth.middleware import ACCOUNT_KEY

        _ACCOUNT_KEY = ACCOUNT_KEY
    return request.get(_ACCOUNT_KEY)
