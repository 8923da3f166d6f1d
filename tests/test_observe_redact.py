"""The log redaction filter: every form a credential can take in a log line is replaced, nothing
else is, and once installed it covers every logger and handler (records made anywhere)."""

from __future__ import annotations

import base64
import io
import logging
import subprocess
import sys

import pytest

from helpers import ROOT
from registry.observe.redact import REDACTED, redact

PASSWORD = "Sup3r-S3cret-Passw0rd"
CRED = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
JWT = ("eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImFjY2VzcyI6W119."
       "MEUCIQDx1x2y3z4A5B6C7D8E9F0a1b2c3d4e5f6g7h8i9j0k")
REFRESH = "rt1_" + "Zm9vYmFyYmF6cXV4" * 3
STATE = "k3Jx9_aZ-QmFzZTY0IHN0YXRlIHRva2Vu"


def fragments(secret: str, n: int = 8) -> set[str]:
    return {secret[i:i + n] for i in range(len(secret) - n + 1)}


LEAKS = [
    # aiohttp parser messages, as they were logged (with the request's bytes in a repr)
    f"Invalid header value char:\n\n  b'Authorization: Basic {CRED[:9]}\\x00{CRED[9:]}'\n       ^",
    f"Unexpected whitespace after header value:\n\n  b' {CRED}'\n    ^",
    f"Got more than 8190 bytes when reading: b'Basic {CRED}AAAAAAAAAAAAAAAA...'.",
    f"b'GET / HTTP/1.1\\r\\nAuthorization: Basic\\r\\n {CRED}\\r\\nHost: x\\r\\n'",
    f"b'GET / HTTP/1.1\\r\\nProxy-Authorization: Basic {CRED[:12]}\\r\\n\\t{CRED[12:]}\\r\\n'",
    # headers in every shape: raw, folded, repr'd dicts, JSON
    f"Authorization: Basic {CRED}\r\nHost: registry",
    f"Authorization: Basic\r\n {CRED}\r\nHost: registry",
    f"Authorization: Basic {CRED[:10]}\r\n\t{CRED[10:]}\r\nHost: registry",
    f"headers: {{'Host': 'x', 'Authorization': 'Bearer {JWT}', 'X-Other': 'y'}}",
    f'{{"authorization": "Basic {CRED}", "path": "/v2/"}}',
    f"<CIMultiDictProxy('Host': 'x', 'AUTHORIZATION': 'basic {CRED}')>",
    f"X-Registry-Auth: {CRED}",
    f"Cookie: session={PASSWORD}; other=1",
    f"X-Auth-Token: AUTH_tk{PASSWORD}",
    # the credential without its header, or cut in two
    f"... {CRED} ...",
    f"first half {CRED[:12]} second half {CRED[12:]}",
    f"Basic\x00{CRED}",
    f"basic {CRED}",
    # tokens
    f"token: {JWT}",
    f"Bearer {JWT}",
    f"refresh token {REFRESH} was used",
    f'{{"refresh_token": "{REFRESH}", "access_token": "{JWT}"}}',
    f"{{'password': '{PASSWORD}', 'username': 'alice'}}",
    # URLs and forms
    f'127.0.0.1 "PATCH /v2/a/b/blobs/uploads/0b7f?_state={STATE}%3D%3D&digest=sha256:{"0" * 64} HTTP/1.1" 202',
    f"grant_type=password&username=alice&password={PASSWORD}&client_id=cli",
    f"grant_type=refresh_token&refresh_token={REFRESH}",
    f"GET /v2/?password={PASSWORD} HTTP/1.1",
    f"fetching https://alice:{PASSWORD}@upstream.example/v2/ failed",
    f"https://bucket.s3.amazonaws.com/blob?X-Amz-Credential=AKIA{PASSWORD}&X-Amz-Signature=ab12{PASSWORD}",
    f"https://acct.blob.core.windows.net/c/b?sv=2021&sig={PASSWORD}%3D",
]


@pytest.mark.parametrize("line", LEAKS)
def test_credentials_are_redacted(line):
    out = redact(line)
    assert REDACTED in out
    for secret in (PASSWORD, JWT, REFRESH, STATE):
        assert secret not in out
    for secret in (CRED, JWT.split(".")[2], PASSWORD):
        leaked = [f for f in fragments(secret) if f in out]
        assert not leaked, (out, leaked)


CLEAN = [
    '127.0.0.1 "GET /v2/library/ubuntu/manifests/sha256:' + "0123456789abcdef" * 4 + ' HTTP/1.1" 200 1234 '
    '"containers/5.23.1 (github.com/containers/image)" 0.001234s',
    "PUT /v2/team/app/blobs/uploads/7d2c1e0a-4b5f-4c3e-9d2a-1f0e2d3c4b5a?digest=sha512:" + "ab" * 64,
    "failed login for account 'alice' from 192.0.2.10",
    "bearer token refused for GET /v2/alice/app/tags/list: token rejected: ExpiredSignatureError",
    "token issued: account='alice' service='registry.example.com' scope='repository:alice/app:pull,push'",
    "/var/lib/registry/docker/registry/v2/repositories/library/ubuntu/_manifests/tags/latest/current/link",
    "rejected a malformed HTTP request from 127.0.0.1: BadHttpMessage: Invalid header value char",
    "storage: s3 bucket my-registry in eu-west-1, rootdirectory /registry",
    'GET /v2/a/blobs/uploads/1?_state=REDACTED&digest=sha256:' + "1" * 64,  # redacted by the access log
    "Traceback (most recent call last):\n  File \"/work/registry/store/uploads.py\", line 42, in commit\n"
    "    raise RegistryError(ErrorCode.DIGEST_INVALID)",
]


@pytest.mark.parametrize("line", CLEAN)
def test_ordinary_lines_are_left_alone(line):
    assert redact(line) == line


def test_install_covers_every_logger_and_handler():
    """In a fresh interpreter: records of aiohttp's and other loggers, propagated or not, handlers
    added after install, tracebacks, %-arguments and extra fields, and the last-resort handler."""
    script = f'''
import io, logging, sys
from registry.observe import redact
out = logging.StreamHandler(sys.stdout)
out.setFormatter(logging.Formatter("%(name)s %(message)s %(who)s", defaults={{"who": ""}}))
logging.basicConfig(level=logging.DEBUG, handlers=[out])
redact.install()
late = io.StringIO()
own = logging.getLogger("own.child")
own.propagate = False
own.addHandler(logging.StreamHandler(late))  # a handler added after install
logging.getLogger("aiohttp.server").error("bad request %r", b"Authorization: Basic {CRED}")
own.warning("creds %s", "{CRED}")
logging.getLogger("registry.x").info("token", extra={{"who": "Bearer {JWT}"}})
try:
    raise ValueError("password={PASSWORD}")
except ValueError:
    logging.getLogger("asyncio").exception("failed")
logging.lastResort.handle(logging.makeLogRecord({{"msg": "last {CRED}", "levelno": 40, "levelname": "ERROR"}}))
sys.stdout.write(late.getvalue())
'''
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert out.count(REDACTED) == 5 and "ValueError" in out and "Traceback" in out, out
    for secret in (PASSWORD, JWT, *fragments(CRED)):
        assert secret not in out, out


def test_install_is_idempotent_and_keeps_other_factories(monkeypatch):
    from registry.observe import redact as mod

    seen = []
    base = logging.getLogRecordFactory()

    def other(*args, **kwargs):
        seen.append(1)
        return base(*args, **kwargs)

    monkeypatch.setattr(logging, "_logRecordFactory", other)
    logger = logging.getLogger("test-redact-idempotent")
    handler = logging.StreamHandler(io.StringIO())
    logger.addHandler(handler)
    try:
        mod.install(logger)
        mod.install(logger)
        assert sum(isinstance(f, mod.RedactingFilter) for f in handler.filters) == 1
        logger.warning("Basic %s", CRED)
        assert seen and CRED not in handler.stream.getvalue()
    finally:
        logger.removeHandler(handler)
        if logging.lastResort is not None:
            for f in list(logging.lastResort.filters):
                if isinstance(f, mod.RedactingFilter):
                    logging.lastResort.removeFilter(f)
