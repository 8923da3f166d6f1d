"""An upload chunk is exactly what its Content-Range says (issue 9, finding 7), on every driver.

A PATCH (or a closing PUT) whose ``Content-Range: a-b`` declares N bytes must carry N bytes: a
Content-Length that disagrees is refused before a byte is read, a chunked body is held to N while it
streams. Refused: 400 SIZE_INVALID, and no byte beyond the range is ever stored. A chunk retried
after its bytes all arrived (its answer lost) is recognised instead of refused or doubled.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from api_support import client, digest_of, driver, loc_of  # noqa: F401  (fixtures)


async def error_code(r) -> str:
    return (await r.json())["errors"][0]["code"]


def chunked(data: bytes, piece: int = 64 << 10):
    async def gen() -> AsyncIterator[bytes]:
        for i in range(0, len(data), piece):
            yield data[i:i + piece]
    return gen()


async def new_upload(client, repo: str = "ranges") -> str:
    r = await client.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status == 202
    return loc_of(r)


async def range_of(client, loc: str) -> str:
    r = await client.get(loc)
    assert r.status == 204
    return r.headers["Range"]


async def test_content_length_disagreeing_with_content_range_is_refused(client):
    loc = await new_upload(client)
    r = await client.patch(loc, data=b"x" * 20, headers={"Content-Range": "0-9"})
    assert r.status == 400 and await error_code(r) == "SIZE_INVALID", await r.text()
    assert await range_of(client, loc) == "0-0"
    r = await client.patch(loc, data=b"y" * 10, headers={"Content-Range": "0-9"})
    assert r.status == 202 and r.headers["Range"] == "0-9"
    r = await client.patch(loc_of(r), data=b"z" * 5, headers={"Content-Range": "10-19"})
    assert r.status == 400 and await error_code(r) == "SIZE_INVALID"
    assert await range_of(client, loc) == "0-9"
    r = await client.put(f"{loc}&digest={digest_of(b'y' * 10)}")
    assert r.status == 201, await r.text()
    assert await (await client.get(f"/v2/ranges/blobs/{digest_of(b'y' * 10)}")).read() == b"y" * 10


async def test_chunked_body_longer_or_shorter_than_its_range_keeps_nothing(client):
    loc = await new_upload(client)
    for body, declared in ((b"a" * 20, "0-9"), (b"b" * 10, "0-19")):
        r = await client.patch(loc, data=chunked(body, 3), headers={"Content-Range": declared})
        assert r.status == 400 and await error_code(r) == "SIZE_INVALID", await r.text()
        assert await range_of(client, loc) == "0-0"  # not even the first bytes of the range
    data = os.urandom(300_000)
    r = await client.patch(loc, data=chunked(data), headers={"Content-Range": f"0-{len(data) - 1}"})
    assert r.status == 202 and r.headers["Range"] == f"0-{len(data) - 1}"
    r = await client.put(f"{loc_of(r)}&digest={digest_of(data)}")
    assert r.status == 201
    assert await (await client.get(f"/v2/ranges/blobs/{digest_of(data)}")).read() == data


async def test_long_chunked_body_never_stores_a_byte_beyond_its_range(client):
    """A body longer than one batch: what was streamed before the excess showed may stay, but the
    upload never grows past the range's end, and the client can continue from its Range."""
    data = os.urandom(9 << 20)
    declared = 6 << 20
    loc = await new_upload(client)
    r = await client.patch(loc, data=chunked(data, 1 << 20), headers={"Content-Range": f"0-{declared - 1}"})
    assert r.status == 400 and await error_code(r) == "SIZE_INVALID"
    end = int((await range_of(client, loc)).split("-")[1])
    assert end < declared
    have = end + 1 if end else 0
    r = await client.patch(loc, data=data[have:], headers={"Content-Range": f"{have}-{len(data) - 1}"})
    assert r.status == 202, await r.text()
    r = await client.put(f"{loc_of(r)}&digest={digest_of(data)}")
    assert r.status == 201, await r.text()
    assert await (await client.get(f"/v2/ranges/blobs/{digest_of(data)}")).read() == data


async def test_closing_put_chunk_is_checked_too(client):
    data = os.urandom(50_000)
    loc = await new_upload(client)
    r = await client.patch(loc, data=data[:30_000], headers={"Content-Range": "0-29999"})
    loc = loc_of(r)
    r = await client.put(f"{loc}&digest={digest_of(data)}", data=data[30_000:] + b"extra",
                         headers={"Content-Range": f"30000-{len(data) - 1}"})
    assert r.status == 400 and await error_code(r) == "SIZE_INVALID"
    assert await range_of(client, loc) == "0-29999"
    r = await client.put(f"{loc}&digest={digest_of(data)}", data=data[30_000:],
                         headers={"Content-Range": f"30000-{len(data) - 1}"})
    assert r.status == 201, await r.text()
    assert await (await client.get(f"/v2/ranges/blobs/{digest_of(data)}")).read() == data


async def test_a_chunk_sent_again_is_out_of_order(client):
    """The spec's MUST: a chunk must start where the upload ends, so one sent twice (the retry of a
    PATCH whose answer was lost) is 416 with the current Range, and nothing is appended twice."""
    data = os.urandom(120_000)
    loc = await new_upload(client)
    r = await client.patch(loc, data=data[:70_000], headers={"Content-Range": "0-69999"})
    assert r.status == 202
    second = loc_of(r)
    r = await client.patch(second, data=data[70_000:], headers={"Content-Range": f"70000-{len(data) - 1}"})
    assert r.status == 202 and r.headers["Range"] == f"0-{len(data) - 1}"
    r = await client.patch(second, data=data[70_000:], headers={"Content-Range": f"70000-{len(data) - 1}"})
    assert r.status == 416 and r.headers["Range"] == f"0-{len(data) - 1}", await r.text()
    r = await client.put(f"{second}&digest={digest_of(data)}")
    assert r.status == 201, await r.text()
    assert await (await client.get(f"/v2/ranges/blobs/{digest_of(data)}")).read() == data


async def test_a_closing_put_sent_again_after_its_chunk_arrived(client):
    """The closing PUT's chunk arrived but its answer did not (a crash, a dropped connection): the
    same PUT again is recognised, the chunk not appended twice, and the blob committed."""
    data = os.urandom(90_000)
    loc = await new_upload(client)
    r = await client.patch(loc, data=data[:50_000], headers={"Content-Range": "0-49999"})
    put_loc = f"{loc_of(r)}&digest={digest_of(data)}"
    # the first attempt's chunk lands (as when the process died before answering): a PATCH here
    r = await client.patch(loc_of(r), data=data[50_000:], headers={"Content-Range": f"50000-{len(data) - 1}"})
    assert r.status == 202
    r = await client.put(put_loc, data=data[50_000:])  # its token still says 50000
    assert r.status == 201, await r.text()
    assert await (await client.get(f"/v2/ranges/blobs/{digest_of(data)}")).read() == data
