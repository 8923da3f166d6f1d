"""The ``gcs`` driver: Google Cloud Storage through gcsfs.

Config keys are distribution's: ``bucket, keyfile, credentials, rootdirectory, chunksize``;
plus ``endpoint`` (another API endpoint, e.g. an emulator), ``anonymous`` (send requests
without credentials: emulators and public buckets; URL signing still uses ``keyfile`` or
``credentials``), ``uploadmemorybudget`` and ``redirectexpiry``.

Writes stream into a resumable upload session in ``chunksize`` chunks (multiples of 256 KiB);
the session URI and the short tail survive in a sidecar object, so any instance resumes the
upload. The session's status is never queried: the offset is known from the sidecar (and the
emulator commits an upload on a status query). Redirects are V4 signed URLs, given only when a
service-account key is configured.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import urllib.parse
from collections.abc import Mapping
from typing import Any

from .base import DriverConfigError
from .cloud import ObjectStoreDriver, Params
from .multipart import BufferReader, PartStore

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

CHUNK_ALIGN = 256 << 10
DEFAULT_ENDPOINT = "https://storage.googleapis.com"


class GCSDriver(ObjectStoreDriver):
    """GCS through gcsfs, with resumable-session writes, server-side moves and signed URLs."""

    name = "gcs"
    secret_params = frozenset({"credentials"})

    def __init__(
        self,
        *,
        bucket: str,
        root: str = "",
        service_account: dict[str, Any] | None = None,
        anonymous: bool = False,
        endpoint: str | None = None,
        part_size: int = 5 << 20,
        redirect_expiry: int = 1200,
        params: Params | None = None,
        user_agent: str | None = None,
    ) -> None:
        import gcsfs

        self.bucket = bucket
        self.part_size = part_size
        self.redirect_expiry = redirect_expiry
        self.endpoint = (endpoint or DEFAULT_ENDPOINT).rstrip("/")
        self.budget = (params or Params(self.name, {})).budget()
        self._signer = None
        token: Any = "anon" if anonymous else None
        if service_account is not None:
            from google.oauth2 import service_account as sa

            try:
                creds = sa.Credentials.from_service_account_info(
                    service_account, scopes=["https://www.googleapis.com/auth/devstorage.read_write"]
                )
            except (ValueError, KeyError) as exc:
                raise DriverConfigError(f"storage.gcs: unusable service account credentials ({type(exc).__name__})") from None
            self._signer = creds
            if not anonymous:
                token = creds
        fs = gcsfs.GCSFileSystem(
            token=token,
            endpoint_url=endpoint,
            asynchronous=True,
            skip_instance_cache=True,
            use_listings_cache=False,
            requests_timeout=120,
        )
        if user_agent:  # distribution's useragent: every request's User-Agent
            headers_of = fs._get_headers
            fs._get_headers = lambda headers=None, *a, **k: headers_of({**(headers or {}), "User-Agent": user_agent},
                                                                       *a, **k)
        super().__init__(fs, f"{bucket}/{root}" if root else bucket)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bucket={self.bucket!r}, root={self.root!r})"

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "GCSDriver":
        p = cls.params(params)
        p.unimplemented("maxconcurrency", "concurrency is bounded by the client's connection pool")
        account = _service_account(p)
        return cls(
            bucket=_bucket(p),
            root=p.root(),
            service_account=account,
            anonymous=p.bool("anonymous", False),
            endpoint=p.str("endpoint"),
            part_size=_chunk(p),
            redirect_expiry=p.int("redirectexpiry", 1200, minimum=1),
            params=p,
            user_agent=p.str("useragent"),
        )

    def _part_store(self) -> PartStore:
        return _GCSParts(self)

    async def _url_for(self, key: str, method: str) -> str | None:
        if self._signer is None:
            return None
        from google.cloud.storage._signing import generate_signed_url_v4

        bucket, _, name = key.partition("/")
        return generate_signed_url_v4(
            self._signer,
            resource=f"/{bucket}/{urllib.parse.quote(name, safe='/~')}",
            expiration=dt.timedelta(seconds=self.redirect_expiry),
            api_access_endpoint=self.endpoint,
            method=method,
        )

    async def close(self) -> None:
        session = getattr(self.fs, "_session", None)
        if session is not None:
            self.fs._session = None
            await session.close()
        await super().close()


def _bucket(p: Params) -> str:
    value = p.str("bucket", required=True) or ""
    if "/" in value:
        raise DriverConfigError(f"storage.gcs.bucket: not a bucket name: {value!r}")
    return value


def _chunk(p: Params) -> int:
    size = p.int("chunksize", 5 << 20, minimum=CHUNK_ALIGN)
    if size % CHUNK_ALIGN:
        raise DriverConfigError(f"storage.gcs.chunksize: must be a multiple of {CHUNK_ALIGN} (256 KiB), got {size}")
    return size


def _service_account(p: Params) -> dict[str, Any] | None:
    """The service-account key from ``credentials`` (inline) or ``keyfile`` (a JSON file)."""
    inline = p.raw("credentials")
    if inline not in (None, ""):
        if isinstance(inline, str):
            try:
                inline = json.loads(inline)
            except ValueError:
                raise DriverConfigError("storage.gcs.credentials: expected a mapping (a service-account key)") from None
        if not isinstance(inline, Mapping):
            raise DriverConfigError("storage.gcs.credentials: expected a mapping (a service-account key)")
        info = {str(k): v for k, v in inline.items()}
    elif p.has("keyfile"):
        path = p.str("keyfile") or ""
        try:
            with open(path, encoding="utf-8") as f:
                info = json.load(f)
        except OSError as exc:
            raise DriverConfigError(f"storage.gcs.keyfile: cannot read {path!r}: {exc.strerror}") from None
        except ValueError:
            raise DriverConfigError(f"storage.gcs.keyfile: {path!r} is not JSON") from None
    else:
        return None
    if info.get("private_key"):
        from .cloud import register_secret

        register_secret(str(info["private_key"]))
    missing = [k for k in ("client_email", "private_key") if not info.get(k)]
    if missing:
        raise DriverConfigError(f"storage.gcs: the service-account key lacks {', '.join(missing)}")
    return info


class _GCSParts(PartStore):
    """A GCS resumable upload session for :class:`drivers.multipart.PartWriter`."""

    part_alignment = CHUNK_ALIGN
    takes_files = True

    def __init__(self, driver: GCSDriver) -> None:
        self._d = driver
        self._fs = driver.fs
        self.name = driver.name

    def _err(self, key: str):  # type: ignore[no-untyped-def]
        return self._d._errors(self._d._path(key))

    async def get_small(self, key: str) -> bytes:
        with self._err(key):
            return bytes(await self._fs._cat_file(key))

    async def put_small(self, key: str, data: bytes) -> None:
        with self._err(key):
            await self._fs._pipe_file(key, data)

    async def delete_key(self, key: str) -> None:
        try:
            await self._fs._rm_file(key)
        except FileNotFoundError:
            pass

    async def put_whole(self, key: str, data: Any) -> None:
        from gcsfs.core import simple_upload

        if not isinstance(data, (bytes, bytearray, memoryview)):
            data = await asyncio.to_thread(data.read)  # spilled: less than one part
        bucket, _, name = key.partition("/")
        with self._err(key):
            await simple_upload(self._fs, bucket, name, data)

    async def mpu_start(self, key: str) -> dict[str, Any]:
        from gcsfs.core import initiate_upload

        bucket, _, name = key.partition("/")
        with self._err(key):
            location = await initiate_upload(self._fs, bucket, name)
        return {"session": location}

    async def mpu_part(
        self, key: str, state: dict[str, Any], offset: int, data: Any, final: bool
    ) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            data.seek(0, 2)
            length = data.tell()
            data.seek(0)
        else:
            length = len(data)
        body = BufferReader(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
        with self._err(key):
            while True:
                total = str(offset + length) if final else "*"
                span = f"bytes {offset}-{offset + length - 1}/{total}" if length else f"bytes */{total}"
                headers, _ = await self._fs._call(
                    "PUT", state["session"], headers={"Content-Range": span, "Content-Length": str(length)},
                    data=body if length else b"",
                )  # fmt: skip
                done = _confirmed_end(headers)
                if final or done is None or done >= offset + length:
                    return
                # the service kept only part of the chunk: send the rest (rare; bounded by a part)
                body.seek(done - offset)
                body = BufferReader(body.read())
                length -= done - offset
                offset = done

    async def mpu_complete(self, key: str, state: dict[str, Any], size: int) -> None:
        """Nothing to do: the final chunk (sent with the total size) completed the upload."""

    async def mpu_abort(self, key: str, state: dict[str, Any]) -> None:
        try:
            await self._fs._call("DELETE", state["session"])
        except Exception:  # noqa: BLE001 - a cancelled session answers 499; gone is gone
            pass


def _confirmed_end(headers: Mapping[str, str]) -> int | None:
    """The byte count the service has from a 308's ``Range: bytes=0-N`` header."""
    value = headers.get("Range")
    if not value:
        return None
    try:
        return int(value.rsplit("-", 1)[1]) + 1
    except (IndexError, ValueError):
        return None
