"""A table of malformed requests: none may be answered 500, none may change stored data.

Each answer must be a 4xx with the OCI error envelope (HEAD: status only).
"""

from __future__ import annotations

import hashlib
import json

from yarl import URL

from api_support import OCI_MANIFEST, digest_of, driver, loc_of, make_config, push_blob, push_image  # noqa: F401
from drivers.base import PathNotFound
from registry.app import create_app
from registry.errors import ErrorCode
from registry.store import paths

CODES = {c.name for c in ErrorCode} | {"SIZE_INVALID"}
HEX = "0" * 64
GOOD = f"sha256:{HEX}"

BAD_NAMES = ["UPPER", "a//b", "-a", "a-", "a..b", "a/", "_x", "a" * 256, "a%20b", "%C3%BC", "a:b", "a@b",
             "%2e%2e/x", "a%00b", "a/%2e%2e"]  # (a/./b, a/../b, a%2Fb normalize to valid names)
BAD_DIGESTS = ["sha256:abc", f"sha256:{'g' * 64}", f"sha256:{'A' * 64}", f"md5:{'0' * 32}", f"sha512:{HEX}",
               "sha256", f"sha256:{HEX}0", f"SHA256:{HEX}", "sha256:%00", f"sha256:{'0' * 63}x", ":" + HEX]
BAD_TAGS = ["-tag", ".tag", "a" * 129, "tag%21", "t%20g"]
BAD_RANGES = ["bytes=abc", "bytes=5-1", "bytes=99999999-", "bytes=--1", "bytes= 1-2", "bytes=18446744073709551616-",
              "bytes=-0", "bytes=-", "bytes=0x1-2", "bytes"]
BAD_CONTENT_RANGES = ["abc", "5-1", "-1-5", "0-", "99999999999999999999-1", "1-2-3", "bytes=0-1", "٣-٤"]
BAD_N = ["abc", "-1", "1e3", "", "99999999999999999999999", "0x10", "%EF%BC%91", "+5", "%205"]


def malformed_requests(upload: str, upload_id: str, blob: str):
    """(method, raw path+query, headers, body) tuples, each of which the registry must refuse."""
    reqs = []
    for name in BAD_NAMES:
        for method, suffix in (("GET", "manifests/latest"), ("HEAD", "manifests/latest"), ("PUT", "manifests/latest"),
                               ("DELETE", f"manifests/{GOOD}"), ("POST", "blobs/uploads/"), ("GET", "tags/list"),
                               ("GET", f"blobs/{GOOD}"), ("DELETE", f"blobs/{GOOD}"), ("GET", f"referrers/{GOOD}")):
            reqs.append((method, f"/v2/{name}/{suffix}", {}, b"{}" if method == "PUT" else None))
    for d in BAD_DIGESTS:
        reqs += [("GET", f"/v2/repo/blobs/{d}", {}, None), ("HEAD", f"/v2/repo/blobs/{d}", {}, None),
                 ("DELETE", f"/v2/repo/blobs/{d}", {}, None), ("GET", f"/v2/repo/referrers/{d}", {}, None),
                 ("PUT", f"/v2/repo/manifests/{d}", {"Content-Type": OCI_MANIFEST}, b"{}"),
                 ("PUT", f"{upload}&digest={d}", {}, None),
                 ("POST", f"/v2/repo/blobs/uploads/?digest={d}", {}, b"data")]
    for t in BAD_TAGS:
        reqs.append(("PUT", f"/v2/repo/manifests/{t}", {"Content-Type": OCI_MANIFEST}, b"{}"))
    for rng in BAD_RANGES:
        reqs.append(("GET", f"/v2/repo/blobs/{blob}", {"Range": rng}, None))
    for cr in BAD_CONTENT_RANGES:
        reqs.append(("PATCH", upload, {"Content-Range": cr}, b"zz"))
    for n in BAD_N:
        reqs += [("GET", f"/v2/repo/tags/list?n={n}", {}, None), ("GET", f"/v2/_catalog?n={n}", {}, None)]
    for uid in ("..", ".", "a" * 200, "%00", "x%2Fy", "a%20b"):
        reqs.append(("PATCH", f"/v2/repo/blobs/uploads/{uid}", {}, b"x"))
    for state in ("!!!", "A" * 5000, "", "%FF%FE", "eyJ9"):
        reqs += [("PATCH", f"/v2/repo/blobs/uploads/{upload_id}?_state={state}", {}, b"x")] if state else []
        reqs += [("PUT", f"/v2/repo/blobs/uploads/{upload_id}?_state={state}&digest={digest_of(b'x')}", {}, b"x")] \
            if state else []
    reqs += [("PUT", upload, {}, b"no digest"), ("PUT", f"{upload}&digest=", {}, None),
             ("GET", "/v2/repo/blobs/uploads/00000000-0000-0000-0000-000000000000", {}, None),
             ("DELETE", "/v2/repo/blobs/uploads/00000000-0000-0000-0000-000000000000", {}, None)]
    bodies = [b"not json", b"[]", b'{"schemaVersion": 3}', b'{"schemaVersion": "2"}', b"\xff\xfe", b'"str"',
              b"[" * 100000 + b"]" * 100000, b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json"}',
              json.dumps({"schemaVersion": 2, "config": {"digest": "sha256:zz", "size": 1, "mediaType": "a/b"},
                          "layers": []}).encode(),
              json.dumps({"schemaVersion": 2, "config": {"digest": GOOD, "size": -1, "mediaType": "a/b"},
                          "layers": {}}).encode(),
              json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"digest": GOOD, "size": 2,
                          "mediaType": "a/b"}, "layers": []}).encode()]
    for body in bodies:
        reqs.append(("PUT", "/v2/repo/manifests/newtag", {"Content-Type": OCI_MANIFEST}, body))
    reqs += [("PUT", "/v2/repo/manifests/newtag", {"Content-Type": "text/html"}, b'{"schemaVersion": 2}'),
             ("PUT", "/v2/repo/manifests/newtag", {"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"},
              json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST}).encode()),
             ("PUT", "/v2/repo/manifests/newtag", {"Content-Type": OCI_MANIFEST}, b" " * (4 * 1024 * 1024 + 1)),
             ("POST", "/v2/repo/manifests/latest", {}, None), ("PATCH", "/v2/repo/manifests/latest", {}, b"x"),
             ("POST", f"/v2/repo/blobs/{blob}", {}, None), ("PUT", "/v2/repo/tags/list", {}, b"x"),
             ("GET", "/v2/repo/manifests/nosuchtag", {"Accept": "~;;;,,,q=abc"}, None),
             ("DELETE", "/v2/repo/manifests/nosuchtag", {}, None),
             ("DELETE", f"/v2/repo/manifests/{GOOD}", {}, None),
             ("GET", f"/v2/repo/manifests/{GOOD}", {"If-None-Match": '"""'}, None),
             ("GET", "/v2/nosuchrepo/tags/list", {}, None), ("GET", "/v3/", {}, None), ("GET", "/v2/repo", {}, None)]
    return reqs


async def snapshot(driver) -> dict[str, bytes]:
    out: dict[str, bytes] = {}

    async def visit(directory: str) -> None:
        try:
            children = await driver.list(directory)
        except PathNotFound:
            return
        for child in children:
            info = await driver.stat(child)
            if info.is_dir:
                await visit(child)
            else:
                out[child] = hashlib.sha256(await driver.get_content(child)).digest() if info.size < 1 << 20 \
                    else str(info.size).encode()

    await visit(paths.ROOT)
    return out


async def test_malformed_requests(aiohttp_client, driver):
    # on S3 a blob GET would answer 307 to moto: judge the registry's own answers
    client = await aiohttp_client(create_app(make_config(redirect_disable=driver.name in ("s3", "swift")), driver))
    await push_image(client, "repo", "latest")
    blob = await push_blob(client, "repo", b"some blob content")
    r = await client.post("/v2/repo/blobs/uploads/")
    upload, upload_id = loc_of(r), r.headers["Docker-Upload-UUID"]
    await client.patch(upload, data=b"partial")
    upload = loc_of(await client.get(upload))
    before = await snapshot(driver)
    requests = malformed_requests(upload, upload_id, blob)
    assert len(requests) >= 100
    failures = []
    for method, raw, headers, body in requests:
        r = await client.request(method, URL(raw, encoded=True), headers=headers, data=body)
        text = await r.read()
        problem = None
        if r.status >= 500 or r.status < 400:
            problem = f"status {r.status}"
        elif r.headers.get("Docker-Distribution-API-Version") != "registry/2.0":
            problem = "no API version header"
        elif method != "HEAD":
            try:
                code = json.loads(text)["errors"][0]["code"]
                if code not in CODES:
                    problem = f"unknown code {code}"
            except (ValueError, KeyError, IndexError, TypeError):
                problem = f"no error envelope: {text[:80]!r}"
        if problem:
            failures.append(f"{method} {raw[:100]} {headers}: {problem} {text[:150]!r}")
    assert not failures, "\n".join(failures)
    assert await snapshot(driver) == before
    # the upload in progress survived every malformed request
    r = await client.get(upload)
    assert r.status == 204 and r.headers["Range"] == "0-6"
