"""``python -m benchmarks.shaper --listen PORT --target HOST:PORT --rate BYTES``: a WAN link.

A TCP forwarder whose answers (target -> client) share one token bucket of ``--rate`` bytes per
second across all connections, as one network link does; requests go through unshaped. It runs
as its own process so that it costs the benchmark client nothing. ``benchmarks.proxy`` puts it
in front of the upstream: direct pulls and the cache's fetches then cross the same link.
"""

from __future__ import annotations

import argparse
import asyncio
import time

PIECE = 64 * 1024


class Bucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self, n: int) -> None:
        async with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens -= n
            if self.tokens < 0:
                await asyncio.sleep(-self.tokens / self.rate)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, bucket: Bucket | None) -> None:
    try:
        while data := await reader.read(PIECE):
            if bucket is not None:
                await bucket.take(len(data))
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except (ConnectionError, OSError):
            pass


async def main(args: argparse.Namespace) -> None:
    host, port = args.target.rsplit(":", 1)
    bucket = Bucket(args.rate, max(args.rate / 20, 4 * PIECE))

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(host, int(port))
        except OSError:
            client_w.close()
            return
        await asyncio.gather(pipe(client_r, up_w, None), pipe(up_r, client_w, bucket))

    server = await asyncio.start_server(handle, "127.0.0.1", args.listen)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", type=int, required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--rate", type=float, required=True, help="bytes per second, all connections together")
    asyncio.run(main(p.parse_args()))
