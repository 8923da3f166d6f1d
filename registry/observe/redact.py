"""Log redaction: no log line, from any logger at any level, carries a credential.

:func:`redact` replaces, anywhere in a text: the values of credential headers
(``Authorization``, ``Proxy-Authorization``, ``X-Registry-Auth``, ``Cookie``, Swift's
``X-Auth-Token``/``X-Auth-Key``...), also when quoted, folded over several lines, or cut by a NUL
or other byte a parser complained about; the credential after an auth scheme (``Basic``,
``Bearer``...); JWTs; our refresh tokens; secret query, form and JSON parameters (upload
``_state``, ``password``, ``token``, presigned-URL signatures...); passwords in URLs; and any
base64 run that decodes to text (a ``user:password`` seen without its header, as in a folded
header's second line).

:func:`install` makes it apply to every record of every logger: a log record factory redacts
each record as it is made (message, arguments, traceback, stack, string ``extra`` fields), and a
:class:`RedactingFilter` on the root logger's handlers (and on ``logging.lastResort``) catches
records made elsewhere. The traceback is kept as ``record.exc_text`` and ``record.exc_info`` is
cleared: formatters must print ``exc_text`` (the standard one does).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from typing import Any

REDACTED = "[REDACTED]"

_SECRET_HEADERS = (
    "proxy-authorization", "authorization", "x-registry-auth", "cookie", "set-cookie", "x-auth-token",
    "x-auth-key", "x-storage-token", "x-subject-token", "x-amz-security-token", "x-goog-iam-authorization-token",
)
#: cheap substring tests (on the lower-cased text) that gate each rule: most lines hold no secret
_HEADER_HINTS = frozenset(("authoriz", "registry-auth", "cookie", "x-auth-", "storage-token", "subject-token",
                           "security-token"))
_SCHEME_HINTS = frozenset(("basic", "bearer", "digest", "negotiate"))
_PARAM_HINTS = frozenset(("_state", "pass", "pwd", "secret", "token", "sig", "credential", "key"))
_ALL_HINTS = tuple(sorted(_HEADER_HINTS | _SCHEME_HINTS | _PARAM_HINTS | {"eyj", "rt1_", "://"}))
_HEADER_RE = re.compile(
    r"(?i)(?:(?<![A-Za-z0-9-])|(?<=\\[rnt]))(" + "|".join(re.escape(h) for h in _SECRET_HEADERS)
    + r")(['\"]?[ \t]*[:=][ \t]*)")
#: a scheme and its credential (at least 8 characters, one of them not a lower-case letter)
_SCHEME_RE = re.compile(r"(?i)\b(basic|bearer|digest|negotiate)([ \t]+|[ \t]*\\x[0-9a-f]{2}[ \t]*)"
                        r"(?=[A-Za-z0-9+/=._~-]{8})(?-i:(?=[a-z._~-]*[A-Z0-9+/=]))[A-Za-z0-9+/=._~-]+")
_JWT_RE = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){0,2}")
_REFRESH_RE = re.compile(r"\brt1_[A-Za-z0-9_-]{8,}")
_SECRET_PARAMS = (
    "_state", "password", "passwd", "pwd", "secret", "client_secret", "token", "access_token", "refresh_token",
    "id_token", "identitytoken", "registrytoken", "sig", "signature", "x-amz-signature", "x-amz-credential",
    "x-amz-security-token", "x-goog-signature", "x-goog-credential", "temp_url_sig", "secretkey", "accountkey",
    "accesskeysecret", "sessiontoken", "session_token",
)
_PARAM_NAMES = "|".join(re.escape(p) for p in _SECRET_PARAMS)
_PARAM_RE = re.compile(r"(?i)(?<![A-Za-z0-9_-])(" + _PARAM_NAMES + r")=([^&\s\"'<>;,]+)")
_QUOTED_PARAM_RE = re.compile(
    r"(?i)(?P<q>[\"'])(?P<name>" + _PARAM_NAMES + r")(?P=q)(?P<sep>\s*:\s*)(?P<vq>[\"'])(?P<value>(?:\\.|(?!(?P=vq)).)*)(?P=vq)")
_USERINFO_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/\s:@'\"]*):([^/\s@'\"]+)@")
_B64_RUN_RE = re.compile(r"[A-Za-z0-9+/]{8,}={0,2}")


def _line_end(text: str, start: int) -> int:
    """Where an unquoted header value starting at ``start`` ends: at a line break (real, or escaped
    as ``\\r``/``\\n`` in a repr) that no folded continuation line (space or tab) follows."""
    i, n = start, len(text)
    while i < n:
        c = text[i]
        if c in "\r\n":
            j = i
            while j < n and text[j] in "\r\n":
                j += 1
            if j < n and text[j] in " \t":
                i = j
                continue
            return i
        if c == "\\" and i + 1 < n and text[i + 1] in "rn":
            j = i
            while j + 1 < n and text[j] == "\\" and text[j + 1] in "rn":
                j += 2
            if j < n and (text[j] in " \t" or text.startswith("\\t", j)):
                i = j + 1
                continue
            return i
        if c in "'\"":
            return i
        i += 1
    return n


def _redact_headers(text: str) -> str:
    out: list[str] = []
    pos = 0
    for m in _HEADER_RE.finditer(text):
        if m.start() < pos:
            continue
        start = m.end()
        if start < len(text) and text[start] in "'\"":  # a quoted value: up to its closing quote
            quote = text[start]
            end = start + 1
            while end < len(text) and text[end] != quote:
                end += 2 if text[end] == "\\" else 1
            out.append(text[pos:start + 1] + REDACTED)
            pos = min(end, len(text))
        else:
            end = _line_end(text, start)
            if end == start:
                continue
            out.append(text[pos:start] + REDACTED)
            pos = end
    out.append(text[pos:])
    return "".join(out)


def _is_text(data: bytes) -> bool:
    return all(0x20 <= b < 0x7F for b in data)


def _decodes_to_text(run: str) -> bool:
    """Whether a base64 run is the encoding of printable text (a credential shown without its
    header), also when cut off at either end (tried at each of the four alignments)."""
    core = run.rstrip("=")
    if core.lower() == core:
        return False  # base64 of text always has an upper-case letter; paths, names, hex digests do not
    for skip in range(4):
        part = core[skip:]
        part = part[: len(part) - (len(part) % 4 == 1)]
        if len(part) < 8 or (skip and len(part) < 12):
            break
        try:
            data = base64.b64decode(part + "=" * (-len(part) % 4), validate=True)
        except (binascii.Error, ValueError):
            continue
        if _is_text(data):
            return True
    return False


def redact(text: str) -> str:
    """``text`` with every credential it holds replaced by ``[REDACTED]``."""
    if not text:
        return text
    low = text.lower()
    hints = {h for h in _ALL_HINTS if h in low}
    if hints:
        if hints & _HEADER_HINTS:
            text = _redact_headers(text)
        if hints & _SCHEME_HINTS:
            text = _SCHEME_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
        if "eyj" in hints:
            text = _JWT_RE.sub(REDACTED, text)
        if "rt1_" in hints:
            text = _REFRESH_RE.sub(REDACTED, text)
        if hints & _PARAM_HINTS:
            text = _QUOTED_PARAM_RE.sub(
                lambda m: f"{m['q']}{m['name']}{m['q']}{m['sep']}{m['vq']}{REDACTED}{m['vq']}", text)
            text = _PARAM_RE.sub(_param_replacement, text)
        if "://" in hints and "@" in text:
            text = _USERINFO_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}:{REDACTED}@", text)
    for run in _B64_RUN_RE.findall(text):
        if _decodes_to_text(run):
            text = text.replace(run, REDACTED)
    return text


def _param_replacement(m: re.Match[str]) -> str:
    if m.group(2).strip("[]") == "REDACTED":  # redacted already (the access log does it for _state)
        return m.group(0)
    return f"{m.group(1)}={REDACTED}"


# --------------------------------------------------------------------------- logging integration

_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
_MARK = "_registry_redacted"


def _redact_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact(value)
    if depth < 3 and isinstance(value, dict):
        return {k: _redact_value(v, depth + 1) for k, v in value.items()}
    if depth < 3 and isinstance(value, (list, tuple)):
        return type(value)(_redact_value(v, depth + 1) for v in value)
    return value


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Redact ``record`` in place: message with its arguments merged, traceback, stack, and
    ``extra`` fields. Cheap on a record it already redacted, unless its message was set since
    (``logging.makeLogRecord`` and ``Logger.makeRecord(extra=...)`` fill records after the factory)."""
    for name, value in list(record.__dict__.items()):
        if name not in _STANDARD_ATTRS and not name.startswith("_"):
            record.__dict__[name] = _redact_value(value)
    done = record.__dict__.get(_MARK)
    if done is not None and done[0] is record.msg and record.args is None and done[1] is record.exc_text:
        return record
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: keep its parts, still redacted
        message = f"{record.msg!s} {record.args!r}"
    record.msg, record.args = redact(message), None
    if record.exc_info:
        if not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.exc_info = None
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    record.__dict__[_MARK] = (record.msg, record.exc_text)
    return record


class RedactingFilter(logging.Filter):
    """A handler filter that redacts every record it passes (and never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


_FILTER = RedactingFilter()


def install(logger: logging.Logger | None = None) -> None:
    """Redact every log record from now on: the record factory, plus :class:`RedactingFilter` on
    the handlers of ``logger`` (the root logger by default) and on ``logging.lastResort``.
    Idempotent; call it again after adding handlers."""
    current = logging.getLogRecordFactory()
    if not getattr(current, _MARK, False):
        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return redact_record(current(*args, **kwargs))

        setattr(factory, _MARK, True)
        logging.setLogRecordFactory(factory)
    handlers = list((logger or logging.getLogger()).handlers)
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for handler in handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(_FILTER)

