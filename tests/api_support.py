"""Shared set-up of the API tests: the app over real drivers, and small push/pull helpers."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from drivers.base import StorageDriver
from drivers.filesystem import FilesystemDriver
from drivers.inmemory import InMemoryDriver
from registry.app import create_app
from registry.config import Config

SECRET = "api-test-secret"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def make_config(**storage: Any) -> Config:
    raw: dict[str, Any] = {
        "storage": {"inmemory": {}, "delete": {"enabled": storage.pop("delete", True)}},
        "http": {"secret": storage.pop("secret", SECRET)},
    }
    if storage.pop("redirect_disable", False):
        raw["storage"]["redirect"] = {"disable": True}
    if storage.pop("schema1", False):
        raw["compatibility"] = {"schema1": {"enabled": True}}
    if storage.pop("readonly", False):
        raw["storage"]["maintenance"] = {"readonly": {"enabled": True}}
    raw["http"].update(storage.pop("http", {}))
    raw.update(storage)
    return Config.from_dict(raw)


def make_driver(kind: str, tmp_path: Any) -> StorageDriver:
    if kind == "filesystem":
        return FilesystemDriver(str(tmp_path / "root"))
    return InMemoryDriver()


def count_reads(driver: StorageDriver) -> Counter:
    """Instrument ``driver.reader`` (the real one) to count the bytes read back, per path."""
    counter: Counter = Counter()
    original = driver.reader

    def reader(path: str, offset: int = 0, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        async def gen() -> AsyncIterator[bytes]:
            async for chunk in original(path, offset, chunk_size=chunk_size):
                counter[path] += len(chunk)
                yield chunk

        return gen()

    driver.reader = reader  # type: ignore[method-assign]
    return counter


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


async def push_blob(client: Any, name: str, data: bytes) -> str:
    d = digest_of(data)
    r = await client.post(f"/v2/{name}/blobs/uploads/?digest={d}", data=data)
    assert r.status == 201, await r.text()
    return d


def image_manifest(config: bytes, layers: list[bytes], media_type: str = OCI_MANIFEST, **extra: Any) -> bytes:
    cfg_type = "application/vnd.oci.image.config.v1+json" if media_type == OCI_MANIFEST else (
        "application/vnd.docker.container.image.v1+json")
    layer_type = "application/vnd.oci.image.layer.v1.tar+gzip" if media_type == OCI_MANIFEST else (
        "application/vnd.docker.image.rootfs.diff.tar.gzip")
    body = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": cfg_type, "digest": digest_of(config), "size": len(config)},
        "layers": [{"mediaType": layer_type, "digest": digest_of(x), "size": len(x)} for x in layers],
        **extra,
    }
    return json.dumps(body, indent=2).encode()


async def push_image(client: Any, name: str, tag: str | None, *, seed: bytes = b"x",
                     media_type: str = OCI_MANIFEST, **extra: Any) -> tuple[str, bytes]:
    config = b'{"architecture":"amd64","os":"linux","seed":"' + seed + b'"}'
    layer = b"layer-" + seed * 100
    await push_blob(client, name, config)
    await push_blob(client, name, layer)
    body = image_manifest(config, [layer], media_type, **extra)
    ref = tag or digest_of(body)
    r = await client.put(f"/v2/{name}/manifests/{ref}", data=body, headers={"Content-Type": media_type})
    assert r.status == 201, await r.text()
    return r.headers["Docker-Content-Digest"], body


@pytest.fixture(params=["filesystem", "inmemory", "s3", "swift"])
async def driver(request: Any, tmp_path: Any) -> AsyncIterator[StorageDriver]:
    if request.param == "s3":  # the whole API once more on object storage (moto)
        from drivers.factory import create_driver
        from emulators import s3_params

        instance = create_driver("s3", s3_params(request.getfixturevalue("moto_emulator")))
    elif request.param == "swift":  # and on a real OpenStack Swift
        from drivers.factory import create_driver
        from emulators import swift_params

        instance = create_driver("swift", swift_params(request.getfixturevalue("swift_server")))
    else:
        instance = make_driver(request.param, tmp_path)
    yield instance
    await instance.close()


@pytest.fixture
async def client(aiohttp_client: Any, driver: StorageDriver) -> Any:
    # on S3 and Swift, blob GETs would answer 307 to the store; the suite checks the registry's own
    # answers (redirects have their own tests in test_api_s3.py and test_swift.py)
    return await aiohttp_client(create_app(make_config(redirect_disable=driver.name in ("s3", "swift")), driver))


def loc_of(r: Any) -> str:
    """The response's Location as a path (the test client takes no absolute URLs)."""
    from yarl import URL

    url = URL(r.headers["Location"])
    return str(url.relative()) if url.absolute else str(url)
