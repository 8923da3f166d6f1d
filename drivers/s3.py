"""The ``s3`` driver: Amazon S3 and S3-compatible stores, through s3fs (aiobotocore).

Config keys are distribution's: ``accesskey, secretkey, sessiontoken, region, regionendpoint,
bucket, rootdirectory, forcepathstyle, secure, skipverify, chunksize,
multipartcopythresholdsize, multipartcopychunksize, multipartcopymaxconcurrency, storageclass,
encrypt, keyid``; plus ``uploadmemorybudget`` (bytes all uploads of the process may buffer in
memory before spilling to disk) and ``redirectexpiry`` (seconds a presigned URL lives).

Writes stream as multipart uploads (parts of ``chunksize`` bytes, at least 5 MiB) whose state
survives in a sidecar object (see :mod:`drivers.multipart`). A move is a server-side copy,
in parallel ranged parts above ``multipartcopythresholdsize``.
"""

from __future__ import annotations

import asyncio
import logging
import datetime as dt
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from botocore.exceptions import ClientError

from .base import (
    DELETE_PARALLELISM, Conflict, DriverConfigError, FileInfo, InvalidOffset, PathNotFound, StorageError,
    StorageUnavailable, check_dir, is_valid_path,
)
from .cloud import RETRY_ATTEMPTS, ObjectStoreDriver, Params
from .multipart import BufferReader, PartStore

MIN_PART = 5 << 20
MAX_PART = 5 << 30
_NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}
#: a conditional write refused (412), or raced by another conditional write (409)
_CONFLICT_CODES = {"PreconditionFailed", "412", "ConditionalRequestConflict"}
_STORAGE_CLASSES = (
    "STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING",
    "GLACIER_IR", "NOSTORAGECLASS",
)  # fmt: skip


_SESSION: Any = None


def _retry_throttled(exc: BaseException) -> bool:
    """s3fs's retry hook: also retry 429 and any 5xx (botocore's standard mode retries 429
    only when the body names a throttling code, and a HEAD answer has no body)."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return status == 429 or status >= 500
    return False


def _install_retry_hook() -> None:
    import s3fs.core

    previous = s3fs.core.CUSTOM_ERROR_HANDLER
    if getattr(previous, "_registry_hook", False):
        return

    def hook(exc: BaseException) -> bool:
        return _retry_throttled(exc) or bool(previous(exc))

    hook._registry_hook = True  # type: ignore[attr-defined]
    s3fs.core.set_custom_error_handler(hook)


def _shared_session() -> Any:
    """One botocore session per process: it caches the service models, which every new client
    would otherwise load and parse again (about half a second each)."""
    global _SESSION
    if _SESSION is None:
        from aiobotocore.session import AioSession

        _SESSION = AioSession()
    return _SESSION


def _client_error_code(exc: BaseException) -> str:
    """The S3 error code of a botocore error, or of the OSError s3fs made of one (its cause)."""
    if not isinstance(exc, ClientError) and isinstance(exc.__cause__, ClientError):
        exc = exc.__cause__
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


#: distribution's ``objectacl`` values (S3 canned ACLs); unset: none is sent (the bucket's default,
#: which also works with buckets whose ACLs are disabled)
OBJECT_ACLS = ("private", "public-read", "public-read-write", "authenticated-read", "aws-exec-read",
               "bucket-owner-read", "bucket-owner-full-control", "log-delivery-write")
#: distribution's ``loglevel`` values (the AWS SDK's); anything but off logs the SDK at debug level
S3_LOG_LEVELS = ("off", "debug", "debugwithsigning", "debugwithhttpbody", "debugwithrequestretries",
                 "debugwithrequesterrors", "debugwitheventstreambody")


def _sdk_log_level(level: str) -> None:
    """``loglevel``: the SDK's own logs (botocore, s3fs) at debug, secrets still scrubbed."""
    if level != "off":
        for name in ("botocore", "aiobotocore", "s3fs"):
            logging.getLogger(name).setLevel(logging.DEBUG)


class S3Driver(ObjectStoreDriver):
    """S3 through s3fs, with native multipart writes, server-side moves and presigned URLs."""

    name = "s3"
    secret_params = frozenset({"secretkey", "sessiontoken"})
    #: botocore's request checksums: "when_supported" on AWS, "when_required" on S3 look-alikes
    checksums = "when_supported"
    #: the addressing style when ``forcepathstyle`` is off ("virtual" for stores that need it)
    default_addressing = "auto"
    #: PutObject honours ``If-Match`` (AWS since 2024, moto, MinIO): an upload's state object is
    #: replaced only by a writer that read its current version (see drivers/multipart.py)
    conditional_writes = True

    def __init__(
        self,
        *,
        bucket: str,
        root: str = "",
        key: str | None = None,
        secret: str | None = None,
        token: str | None = None,
        region: str | None = None,
        endpoint: str | None = None,
        secure: bool = True,
        skipverify: bool = False,
        path_style: bool = False,
        part_size: int = 10 << 20,
        copy_threshold: int = 32 << 20,
        copy_chunk: int = 32 << 20,
        copy_concurrency: int = 100,
        storage_class: str | None = "STANDARD",
        encrypt: bool = False,
        kms_key: str | None = None,
        redirect_expiry: int = 1200,
        params: Params | None = None,
        object_acl: str | None = None,
        user_agent: str | None = None,
        dualstack: bool = False,
        accelerate: bool = False,
        fips: bool = False,
    ) -> None:
        import s3fs

        _install_retry_hook()
        self.bucket = bucket
        self.part_size = part_size
        self.copy_threshold = copy_threshold
        self.copy_chunk = copy_chunk
        self.copy_concurrency = copy_concurrency
        self.redirect_expiry = redirect_expiry
        self._can_sign = bool(key and secret)
        self.budget = (params or Params(self.name, {})).budget()
        extra: dict[str, Any] = {}
        if storage_class and storage_class != "NOSTORAGECLASS":
            extra["StorageClass"] = storage_class
        if encrypt:
            extra["ServerSideEncryption"] = "aws:kms" if kms_key else "AES256"
            if kms_key:
                extra["SSEKMSKeyId"] = kms_key
        if object_acl:
            extra["ACL"] = object_acl
        self._put_extra = extra
        s3_options: dict[str, Any] = {"addressing_style": "path" if path_style else self.default_addressing}
        if dualstack:
            s3_options["use_dualstack_endpoint"] = True
        if accelerate:
            s3_options["use_accelerate_endpoint"] = True
        more: dict[str, Any] = {"user_agent": user_agent} if user_agent else {}
        if fips:
            more["use_fips_endpoint"] = True
        client_kwargs: dict[str, Any] = {}
        if region:
            client_kwargs["region_name"] = region
        if skipverify:
            client_kwargs["verify"] = False
        fs = s3fs.S3FileSystem(
            key=key,
            secret=secret,
            token=token,
            endpoint_url=endpoint,
            use_ssl=secure,
            client_kwargs=client_kwargs,
            config_kwargs={
                "s3": s3_options,
                **more,
                "retries": {"max_attempts": RETRY_ATTEMPTS, "mode": "standard"},
                "connect_timeout": 10,
                "read_timeout": 120,
                "request_checksum_calculation": self.checksums,
                "response_checksum_validation": self.checksums,
                "max_pool_connections": 64,
                "signature_version": "s3v4",
            },
            s3_additional_kwargs=extra,
            session=_shared_session(),
            asynchronous=True,
            skip_instance_cache=True,
            use_listings_cache=False,
        )
        fs.retries = RETRY_ATTEMPTS
        prefix = f"{bucket}/{root}" if root else bucket
        super().__init__(fs, prefix)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bucket={self.bucket!r}, root={self.root!r})"

    # --- configuration -------------------------------------------------------------------

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "S3Driver":
        p = cls.params(params)
        if not p.bool("v4auth", True):
            p.warn("storage.s3.v4auth: false is not supported (AWS retired signature version 2): "
                   "requests are signed with version 4")
        _sdk_log_level(p.choice("loglevel", S3_LOG_LEVELS, "off", lower=True))
        acl = p.choice("objectacl", OBJECT_ACLS, None)
        key, secret = p.str("accesskey"), p.str("secretkey")
        if bool(key) != bool(secret):
            raise DriverConfigError("storage.s3: accesskey and secretkey must be given together")
        secure = p.bool("secure", True)
        endpoint = p.str("regionendpoint")
        region = p.str("region")
        if not region and not endpoint:
            raise DriverConfigError("storage.s3.region is required (or regionendpoint)")
        if endpoint and "://" not in endpoint:
            endpoint = ("https://" if secure else "http://") + endpoint
        encrypt = p.bool("encrypt", False)
        return cls(
            bucket=_bucket(p, "bucket"),
            root=p.root(),
            key=key,
            secret=secret,
            token=p.str("sessiontoken"),
            region=region or "us-east-1",
            endpoint=endpoint,
            secure=secure,
            skipverify=p.bool("skipverify", False),
            path_style=p.bool("forcepathstyle", False),
            part_size=p.int("chunksize", 10 << 20, minimum=MIN_PART, maximum=MAX_PART),
            copy_threshold=p.int("multipartcopythresholdsize", 32 << 20, minimum=0, maximum=MAX_PART),
            copy_chunk=p.int("multipartcopychunksize", 32 << 20, minimum=MIN_PART, maximum=MAX_PART),
            copy_concurrency=p.int("multipartcopymaxconcurrency", 100, minimum=1),
            storage_class=(p.choice("storageclass", tuple(c.lower() for c in _STORAGE_CLASSES), "standard",
                                    lower=True) or "standard").upper(),  # case as distribution: any
            encrypt=encrypt,
            kms_key=p.str("keyid") if encrypt else None,
            redirect_expiry=p.int("redirectexpiry", 1200, minimum=1),
            params=p,
            object_acl=acl,
            user_agent=p.str("useragent"),
            dualstack=p.bool("usedualstack", False),
            accelerate=p.bool("accelerate", False),
            fips=p.bool("usefipsendpoint", False),
        )

    # --- backend calls -------------------------------------------------------------------

    def _is_missing(self, exc: Exception) -> bool:
        return _client_error_code(exc) in _NOT_FOUND_CODES

    def _split(self, key: str) -> tuple[str, str]:
        bucket, _, name = key.partition("/")
        return bucket, name

    async def _s3(self, method: str, **kwargs: Any) -> Any:
        return await self.fs._call_s3(method, **kwargs)

    def _part_store(self) -> PartStore:
        return _S3Parts(self)

    async def _move_file(self, src: str, dst: str) -> None:
        sb, sk = self._split(src)
        db, dk = self._split(dst)
        head = await self._s3("head_object", Bucket=sb, Key=sk)
        size = int(head["ContentLength"])
        if size <= self.copy_threshold or size <= self.copy_chunk:
            await self._s3("copy_object", Bucket=db, Key=dk, CopySource={"Bucket": sb, "Key": sk}, **self._put_extra)
        else:
            await self._multipart_copy(sb, sk, db, dk, size)
        await self._s3("delete_object", Bucket=sb, Key=sk)

    async def _multipart_copy(self, sb: str, sk: str, db: str, dk: str, size: int) -> None:
        """Server-side copy in ``multipartcopychunksize`` ranges, several at once."""
        mpu = await self._s3("create_multipart_upload", Bucket=db, Key=dk, **self._put_extra)
        upload_id = mpu["UploadId"]
        limit = asyncio.Semaphore(self.copy_concurrency)

        async def part(number: int, start: int) -> dict[str, Any]:
            end = min(start + self.copy_chunk, size) - 1
            async with limit:
                out = await self._s3(
                    "upload_part_copy", Bucket=db, Key=dk, UploadId=upload_id, PartNumber=number,
                    CopySource={"Bucket": sb, "Key": sk}, CopySourceRange=f"bytes={start}-{end}",
                )  # fmt: skip
            return {"PartNumber": number, "ETag": out["CopyPartResult"]["ETag"]}

        try:
            parts = await asyncio.gather(
                *(part(i + 1, start) for i, start in enumerate(range(0, size, self.copy_chunk)))
            )
            await self._s3(
                "complete_multipart_upload", Bucket=db, Key=dk, UploadId=upload_id,
                MultipartUpload={"Parts": list(parts)},
            )  # fmt: skip
        except BaseException:
            try:
                await self._s3("abort_multipart_upload", Bucket=db, Key=dk, UploadId=upload_id)
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
            raise

    async def list_files(self, path: str, *, details: bool = True) -> AsyncIterator[list[FileInfo]]:  # type: ignore[override]
        """ListObjectsV2 by prefix without a delimiter: 1,000 files per request, streamed."""
        check_dir(self.name, path)
        bucket, name = self._split(self._key(path))
        prefix = name.rstrip("/") + "/" if name else ""
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": 1000}
            if token:
                kwargs["ContinuationToken"] = token
            with self._errors(path):
                resp = await self._s3("list_objects_v2", **kwargs)
            page = []
            for obj in resp.get("Contents", []):
                child = self._path(f"{bucket}/{obj['Key']}")
                if obj["Key"].endswith("/") or not is_valid_path(child):
                    continue  # directory markers, sidecars
                modified = obj.get("LastModified")
                if modified is not None and modified.tzinfo is None:
                    modified = modified.replace(tzinfo=dt.timezone.utc)
                page.append(FileInfo(child, int(obj.get("Size", 0)), modified, False))
            if page:
                yield page
            token = resp.get("NextContinuationToken") if resp.get("IsTruncated") else None
            if not token:
                return

    async def delete_files(self, paths: list[str]) -> None:
        """DeleteObjects, 1,000 keys per request, :data:`DELETE_PARALLELISM` requests at most
        at once (S3 itself ignores keys that do not exist)."""
        keys = [self._split(self._key(self.check(p))) for p in paths]
        if not keys:
            return
        limit = asyncio.Semaphore(max(1, DELETE_PARALLELISM // 4))
        by_bucket: dict[str, list[str]] = {}
        for bucket, name in keys:
            by_bucket.setdefault(bucket, []).append(name)

        async def batch(bucket: str, names: list[str]) -> None:
            async with limit:
                with self._errors(paths[0]):
                    resp = await self._s3(
                        "delete_objects", Bucket=bucket,
                        Delete={"Objects": [{"Key": n} for n in names], "Quiet": True},
                    )  # fmt: skip
            failed = [e for e in resp.get("Errors", []) if e.get("Code") not in _NOT_FOUND_CODES]
            if failed:
                first = failed[0]
                raise StorageError(
                    self.name, self._path(f"{bucket}/{first.get('Key', '')}"),
                    f"delete failed: {first.get('Code')} {first.get('Message', '')}".strip(),
                )  # fmt: skip

        await asyncio.gather(
            *(batch(b, names[i : i + 1000]) for b, names in by_bucket.items() for i in range(0, len(names), 1000))
        )

    async def reader(  # type: ignore[override]
        self, path: str, offset: int = 0, *, chunk_size: int = 1 << 20
    ) -> AsyncIterator[bytes]:
        """One streaming GET from ``offset`` to the end (not one request per block: S3 bills
        and delays per request); a connection that breaks mid-body resumes where it stopped."""
        self.check(path)
        info = await self.stat(path)
        if info.is_dir:
            raise PathNotFound(self.name, path, "is a directory")
        if offset < 0 or offset > info.size:
            raise InvalidOffset(self.name, path, offset)
        bucket, name = self._split(self._key(path))
        pos, failures = offset, 0
        while pos < info.size:
            with self._errors(path):
                resp = await self._s3("get_object", Bucket=bucket, Key=name, Range=f"bytes={pos}-{info.size - 1}")
            body = resp["Body"]
            try:
                while pos < info.size:
                    try:
                        chunk = await body.read(chunk_size)
                    except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
                        failures += 1
                        if failures >= RETRY_ATTEMPTS:
                            raise StorageUnavailable(self.name, path, f"read failed: {type(exc).__name__}") from None
                        await asyncio.sleep(min(0.2 * 2**failures, 5))
                        break  # reconnect from pos
                    if not chunk:
                        if pos < info.size:
                            raise StorageError(self.name, path, "object shrank while being read")
                        break
                    pos += len(chunk)
                    yield chunk
            finally:
                body.close()

    async def _read_range(self, key: str, start: int, end: int) -> bytes:
        bucket, name = self._split(key)
        resp = await self._s3("get_object", Bucket=bucket, Key=name, Range=f"bytes={start}-{end - 1}")
        async with resp["Body"] as body:
            return await body.read()

    async def _url_for(self, key: str, method: str) -> str | None:
        if not self._can_sign:
            return None
        bucket, name = self._split(key)
        await self.fs.set_session()
        client = await self.fs.get_s3(bucket)
        return await client.generate_presigned_url(
            ClientMethod="head_object" if method == "HEAD" else "get_object",
            Params={"Bucket": bucket, "Key": name},
            ExpiresIn=self.redirect_expiry,
        )

    async def close(self) -> None:
        creator = getattr(self.fs, "_s3creator", None)
        if creator is not None:
            self.fs._s3 = None
            self.fs._s3creator = None
            await creator.__aexit__(None, None, None)
        await super().close()


class _S3Parts(PartStore):
    """S3 multipart upload calls for :class:`drivers.multipart.PartWriter`."""

    takes_files = True

    def __init__(self, driver: S3Driver) -> None:
        self._d = driver
        self.name = driver.name

    def _err(self, key: str):  # type: ignore[no-untyped-def]
        return self._d._errors(self._d._path(key))

    async def get_small(self, key: str) -> bytes:
        return (await self.get_small_tagged(key))[0]

    async def put_small(self, key: str, data: bytes) -> None:
        bucket, name = self._d._split(key)
        with self._err(key):
            await self._d._s3("put_object", Bucket=bucket, Key=name, Body=data)

    @property
    def conditional_writes(self) -> bool:  # type: ignore[override]
        return self._d.conditional_writes

    async def get_small_tagged(self, key: str) -> tuple[bytes, str | None]:
        bucket, name = self._d._split(key)
        with self._err(key):
            try:
                resp = await self._d._s3("get_object", Bucket=bucket, Key=name)
            except ClientError as exc:
                if _client_error_code(exc) in _NOT_FOUND_CODES:
                    raise FileNotFoundError(key) from None
                raise
            async with resp["Body"] as body:
                return await body.read(), resp.get("ETag")

    async def put_small_if(self, key: str, data: bytes, tag: str | None) -> str | None:
        """PutObject with ``If-Match`` (S3 since 2024, moto): a sidecar another writer replaced
        since we read it is never overwritten."""
        bucket, name = self._d._split(key)
        extra = {"IfMatch": tag} if tag is not None and self._d.conditional_writes else {}
        with self._err(key):
            try:
                out = await self._d._s3("put_object", Bucket=bucket, Key=name, Body=data, **extra)
            except (ClientError, OSError) as exc:
                if _client_error_code(exc) in _CONFLICT_CODES:
                    raise Conflict(self.name, self._d._path(key), "the upload's state changed since it was read") from None
                raise
        return out.get("ETag")

    async def delete_key(self, key: str) -> None:
        bucket, name = self._d._split(key)
        with self._err(key):
            await self._d._s3("delete_object", Bucket=bucket, Key=name)

    async def put_whole(self, key: str, data: bytes | bytearray) -> None:
        bucket, name = self._d._split(key)
        with self._err(key):
            await self._d._s3("put_object", Bucket=bucket, Key=name, Body=_body(data), **self._d._put_extra)

    async def mpu_start(self, key: str) -> dict[str, Any]:
        bucket, name = self._d._split(key)
        with self._err(key):
            out = await self._d._s3("create_multipart_upload", Bucket=bucket, Key=name, **self._d._put_extra)
        return {"upload_id": out["UploadId"], "parts": []}

    async def mpu_part(
        self, key: str, state: dict[str, Any], offset: int, data: bytes | bytearray, final: bool
    ) -> None:
        if _empty(data):
            return  # S3 needs no closing request: the last uploaded part is the last part
        bucket, name = self._d._split(key)
        number = len(state["parts"]) + 1
        with self._err(key):
            out = await self._d._s3(
                "upload_part", Bucket=bucket, Key=name, UploadId=state["upload_id"],
                PartNumber=number, Body=_body(data),
            )  # fmt: skip
        state["parts"].append([number, out["ETag"]])

    async def mpu_complete(self, key: str, state: dict[str, Any], size: int) -> None:
        bucket, name = self._d._split(key)
        parts = [{"PartNumber": n, "ETag": etag} for n, etag in state["parts"]]
        with self._err(key):
            try:
                await self._d._s3(
                    "complete_multipart_upload", Bucket=bucket, Key=name, UploadId=state["upload_id"],
                    MultipartUpload={"Parts": parts},
                )  # fmt: skip
            except (ClientError, OSError) as exc:
                if _client_error_code(exc) == "InvalidPart":  # S3 checks each part's ETag
                    raise Conflict(self.name, self._d._path(key), "a part was replaced by another writer") from None
                raise

    async def mpu_abort(self, key: str, state: dict[str, Any]) -> None:
        bucket, name = self._d._split(key)
        try:
            await self._d._s3("abort_multipart_upload", Bucket=bucket, Key=name, UploadId=state["upload_id"])
        except (FileNotFoundError, ClientError):
            pass  # already gone


def _body(data: Any) -> Any:
    """A request body botocore and aiohttp send without copying: a file as it is, a buffer
    through :class:`BufferReader` (each would copy ``bytes`` or ``bytearray`` whole)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return BufferReader(data)
    data.seek(0)
    return data


def _empty(data: Any) -> bool:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return len(data) == 0
    return False


def _bucket(p: Params, key: str) -> str:
    value = p.str(key, required=True) or ""
    if "/" in value or not value.strip():
        raise DriverConfigError(f"{p.where(key)}: not a bucket name: {value!r}")
    return value
