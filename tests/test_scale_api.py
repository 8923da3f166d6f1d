"""The API suite (tests/test_api_blobs.py, test_api_manifests.py, test_api_spec_next.py) once more,
through haproxy in front of the three scale-out instances (one moto bucket, one Redis, the blob
descriptor cache on): every request of a test may land on another instance.

Each test of those modules that needs nothing but the ``client`` fixture is collected here with
``client`` bound to :class:`BalancedClient`. The instances are shared by the whole session, so the
client puts each test's repositories under a namespace of its own (``/v2/<ns>/<name>/...``) and
takes it out of every answer again (headers and bodies), so the tests read exactly as they do
against a fresh single registry. Tests that look inside the app or storage, or list the whole
catalog, stay out (they have no meaning through a balancer).
"""

from __future__ import annotations

import inspect
import json
import re
import uuid
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

import test_api_blobs
import test_api_manifests
import test_api_spec_next

MODULES = (test_api_blobs, test_api_manifests, test_api_spec_next)
#: source fragments of tests that cannot run through a balancer
_LOCAL_ONLY = ("client.app", "client.server", "_catalog", "STORE_KEY", "DRIVER_KEY", "_store(client")


class BalancedResponse:
    """A response read whole, with the test's namespace taken out of headers and body."""

    def __init__(self, status: int, headers: CIMultiDict, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self._body = body

    async def read(self) -> bytes:
        return self._body

    async def text(self) -> str:
        return self._body.decode()

    async def json(self) -> Any:
        return json.loads(self._body)

    def release(self) -> None: ...


class BalancedClient:
    """aiohttp's TestClient interface (get/post/put/patch/delete/head/request) over a real URL."""

    def __init__(self, base_url: str, namespace: str) -> None:
        self.base_url = base_url
        self.ns = namespace
        self.session = aiohttp.ClientSession(auto_decompress=False)

    def _path(self, path: str) -> str:
        path = path.replace(f"/v2/{self.ns}/", "/v2/")  # a Location the test took from an answer
        if path.startswith("/v2/") and not path.startswith("/v2/_catalog") and len(path) > 4:
            path = f"/v2/{self.ns}/" + path[4:]
        return re.sub(r"([?&]from=)([^&]+)", lambda m: m.group(1) + f"{self.ns}/" + m.group(2)
                      if not m.group(2).startswith(self.ns) else m.group(0), path)

    def _strip(self, text: str) -> str:
        return text.replace(f"{self.ns}/", "")

    async def request(self, method: str, path: str, **kwargs: Any) -> BalancedResponse:
        kwargs.setdefault("allow_redirects", False)
        if "params" in kwargs and isinstance(kwargs["params"], dict) and "from" in kwargs["params"]:
            kwargs["params"] = dict(kwargs["params"], **{"from": f"{self.ns}/{kwargs['params']['from']}"})
        async with self.session.request(method, self.base_url + self._path(path), **kwargs) as r:
            body = await r.read()
            headers = CIMultiDict((k, self._strip(v)) for k, v in r.headers.items())
            return BalancedResponse(r.status, headers, body.replace(f"{self.ns}/".encode(), b""))

    async def get(self, path: str, **kw: Any) -> BalancedResponse:
        return await self.request("GET", path, **kw)

    async def head(self, path: str, **kw: Any) -> BalancedResponse:
        return await self.request("HEAD", path, **kw)

    async def post(self, path: str, **kw: Any) -> BalancedResponse:
        return await self.request("POST", path, **kw)

    async def put(self, path: str, **kw: Any) -> BalancedResponse:
        return await self.request("PUT", path, **kw)

    async def patch(self, path: str, **kw: Any) -> BalancedResponse:
        return await self.request("PATCH", path, **kw)

    async def delete(self, path: str, **kw: Any) -> BalancedResponse:
        return await self.request("DELETE", path, **kw)

    async def options(self, path: str, **kw: Any) -> BalancedResponse:
        return await self.request("OPTIONS", path, **kw)

    async def close(self) -> None:
        await self.session.close()


@pytest.fixture
async def client(scale_out):  # type: ignore[no-untyped-def]
    c = BalancedClient(scale_out.lb.url, f"t{uuid.uuid4().hex[:10]}")
    yield c
    await c.close()


def _parametrized(fn: Any) -> set[str]:
    names: set[str] = set()
    for mark in getattr(fn, "pytestmark", []):
        if mark.name == "parametrize":
            argnames = mark.args[0]
            names |= set(argnames.split(",") if isinstance(argnames, str) else argnames)
    return {n.strip() for n in names}


def _collect() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for module in MODULES:
        for name, fn in vars(module).items():
            if not name.startswith("test_") or not inspect.iscoroutinefunction(fn):
                continue
            params = set(inspect.signature(fn).parameters)
            if "client" not in params or params - {"client"} - _parametrized(fn):
                continue
            if any(fragment in inspect.getsource(fn) for fragment in _LOCAL_ONLY):
                continue
            found[f"{name}__{module.__name__.removeprefix('test_')}"] = fn
    return found


globals().update(_collect())
