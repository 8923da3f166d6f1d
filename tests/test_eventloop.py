"""The server's event loop (registry.eventloop): aiohttp's FileResponse over its zero-copy sendfile
sends the right bytes (whole, ranges, keep-alive), and a client that disconnects mid-body harms
no other connection."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from helpers import missing
from registry import eventloop



@pytest.fixture(autouse=True)
def _uvloop() -> None:
    if not eventloop.uvloop_available():
        missing("uvloop is not installed: `make test-deps` installs the fast extra")

SIZE = 8 * 1024 * 1024 + 12345


def _run(coro_fn) -> None:  # type: ignore[no-untyped-def]
    with asyncio.Runner(loop_factory=eventloop.new_event_loop) as runner:
        assert type(runner.get_loop()).__name__ == "SendfileLoop"
        runner.run(coro_fn())


async def _serve(path: Path) -> tuple[web.AppRunner, int]:
    async def handler(request: web.Request) -> web.FileResponse:
        return web.FileResponse(path)

    app = web.Application()
    app.router.add_get("/blob", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port


def test_file_responses_use_zero_copy_sendfile(tmp_path: Path) -> None:
    data = os.urandom(SIZE)
    blob = tmp_path / "blob"
    blob.write_bytes(data)

    async def main() -> None:
        runner, port = await _serve(blob)
        try:
            async with aiohttp.ClientSession() as session:
                for _ in range(2):  # twice on one keep-alive connection
                    async with session.get(f"http://127.0.0.1:{port}/blob") as resp:
                        assert resp.status == 200
                        body = await resp.read()
                    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
                async with session.get(f"http://127.0.0.1:{port}/blob", headers={"Range": "bytes=1000-2000999"}) as resp:
                    assert resp.status == 206
                    assert await resp.read() == data[1000:2001000]
        finally:
            await runner.cleanup()

    _run(main)
    assert eventloop._pool is not None  # the zero-copy path ran, not aiohttp's copying fallback


def test_client_gone_mid_body_harms_no_other_connection(tmp_path: Path) -> None:
    data = os.urandom(SIZE)
    blob = tmp_path / "blob"
    blob.write_bytes(data)

    async def main() -> None:
        runner, port = await _serve(blob)
        loop = asyncio.get_running_loop()
        try:
            for _ in range(5):
                sock = socket.create_connection(("127.0.0.1", port))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.sendall(b"GET /blob HTTP/1.1\r\nHost: x\r\n\r\n")
                await loop.run_in_executor(None, sock.recv, 1024)
                sock.close()  # leaves the server with most of the body unsent
                async with aiohttp.ClientSession() as session:
                    async with session.get(f"http://127.0.0.1:{port}/blob") as resp:
                        body = await resp.read()
                assert body == data
        finally:
            await runner.cleanup()

    _run(main)
