"""The ``azure`` driver: Azure Blob Storage through adlfs (azure-storage-blob's async client).

Config keys are distribution's (2.8 and 3.x): ``accountname, accountkey, container, realm,
serviceurl, rootdirectory, connectionstring, credentials: {type, clientid, tenantid, secret},
max_retries, retry_delay, skipverify``; plus ours: ``chunksize`` (bytes per staged block),
``uploadmemorybudget`` and ``redirectexpiry``. The service URL is ``serviceurl`` when given, else
the connection string's ``BlobEndpoint``, else ``https://<accountname>.blob.<realm>`` (realm
``core.windows.net``). ``credentials.type`` is ``shared_key`` (the account key; the default when
``accountkey`` is set), ``client_secret`` or ``default_credentials`` (azure-identity's token
credentials: no SAS redirects then, blobs are served through the registry).

Writes stage blocks (``stage_block``) of ``chunksize`` bytes and publish them with
``commit_block_list``. Blocks may be short, so on close the tail is staged too and the sidecar
holds only the block list: any instance resumes without moving bytes. Redirects are SAS URLs
signed with the account key.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import urllib.parse
import uuid
import weakref
from collections.abc import Mapping
from typing import Any

from .base import DriverConfigError
from .cloud import RETRY_ATTEMPTS, ObjectStoreDriver, Params
from .multipart import BufferReader, PartStore

MAX_BLOCK = 4000 << 20


class AzureDriver(ObjectStoreDriver):
    """Azure Blob Storage: staged-block writes, server-side moves, SAS redirects."""

    name = "azure"
    secret_params = frozenset({"accountkey", "connectionstring", "credentials"})

    def __init__(
        self,
        *,
        account: str,
        key: str | None,
        container: str,
        service_url: str,
        root: str = "",
        part_size: int = 10 << 20,
        redirect_expiry: int = 1200,
        params: Params | None = None,
        token_credential: Any = None,
        retries: int = RETRY_ATTEMPTS,
        retry_delay: float = 0.25,
        verify: bool = True,
    ) -> None:
        import adlfs
        from azure.storage.blob.aio import BlobServiceClient, ExponentialRetry

        _retry_429_too()
        self.account = account
        self.container = container
        self.service_url = service_url.rstrip("/")
        self.part_size = part_size
        self.redirect_expiry = redirect_expiry
        self.budget = (params or Params(self.name, {})).budget()
        self._account_key = key
        self._token_credential = token_credential
        scheme = urllib.parse.urlsplit(self.service_url).scheme or "https"
        if key:
            conn = (
                f"DefaultEndpointsProtocol={scheme};AccountName={account};AccountKey={key};"
                f"BlobEndpoint={self.service_url};"
            )
            fs = adlfs.AzureBlobFileSystem(
                connection_string=conn, asynchronous=True, skip_instance_cache=True, use_listings_cache=False,
                assume_container_exists=True,
            )
        else:
            fs = adlfs.AzureBlobFileSystem(
                account_name=account, credential=token_credential, account_host=urllib.parse.urlsplit(
                    self.service_url).netloc, asynchronous=True, skip_instance_cache=True, use_listings_cache=False,
                assume_container_exists=True,
            )
        # the SDK's default retry waits 15 s first; back off from ``retry_delay`` (a quarter second) instead
        self.client = BlobServiceClient(
            account_url=self.service_url,
            credential={"account_name": account, "account_key": key} if key else token_credential,
            retry_policy=ExponentialRetry(initial_backoff=retry_delay, increment_base=2, retry_total=retries),
            connection_verify=verify,
        )
        fs.service_client = self.client
        _detach_finalizers(fs)  # we close our client ourselves, on our loop
        super().__init__(fs, f"{container}/{root}" if root else container)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(account={self.account!r}, container={self.container!r}, root={self.root!r})"

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "AzureDriver":
        p = cls.params(params)
        p.unimplemented("maxconcurrency")
        conn = _connection_string(p.str("connectionstring", "") or "")
        account = p.str("accountname") or conn.get("accountname") or ""
        if not account:
            raise DriverConfigError("storage.azure.accountname is required")
        creds = p.section("credentials")
        kind = creds.choice("type", ("shared_key", "client_secret", "default_credentials", "default"), None)
        key = p.str("accountkey") or conn.get("accountkey")
        token_credential = None
        if kind in (None, "shared_key"):
            if not key:
                raise DriverConfigError("storage.azure.accountkey is required (or credentials.type "
                                        "client_secret or default_credentials)")
            try:
                base64.b64decode(key, validate=True)
            except ValueError:
                raise DriverConfigError("storage.azure.accountkey: not a base64 account key") from None
        else:
            key = None  # token credentials: as in distribution, the account key is not used
            token_credential = _token_credential(kind, creds)
        container = p.str("container", required=True) or ""
        if "/" in container:
            raise DriverConfigError(f"storage.azure.container: not a container name: {container!r}")
        url = (p.str("serviceurl") or conn.get("blobendpoint")
               or f"https://{account}.blob.{p.str('realm', conn.get('endpointsuffix') or 'core.windows.net')}")
        if not urllib.parse.urlsplit(url).scheme.startswith("http"):
            raise DriverConfigError(f"storage.azure.serviceurl: not an http(s) URL: {url!r}")
        retries = p.int("max_retries", RETRY_ATTEMPTS, minimum=-1)
        return cls(
            account=account,
            key=key,
            container=container,
            service_url=url,
            root=p.root(),
            part_size=p.int("chunksize", 10 << 20, minimum=1 << 20, maximum=MAX_BLOCK),
            redirect_expiry=p.int("redirectexpiry", 1200, minimum=1),
            params=p,
            token_credential=token_credential,
            retries=max(retries, 0),  # distribution: -1 turns retries off
            retry_delay=p.duration("retry_delay", 0.25),
            verify=not p.bool("skipverify", False),
        )

    def _is_missing(self, exc: Exception) -> bool:
        from azure.core.exceptions import ResourceNotFoundError

        return isinstance(exc, ResourceNotFoundError)

    def _blob(self, key: str) -> Any:
        container, _, name = key.partition("/")
        return self.client.get_blob_client(container, name)

    def _part_store(self) -> PartStore:
        return _AzureBlocks(self)

    async def _read_range(self, key: str, start: int, end: int) -> bytes:
        stream = await self._blob(key).download_blob(offset=start, length=end - start, max_concurrency=1)
        return await stream.readall()

    async def _move_file(self, src: str, dst: str) -> None:
        """Server-side copy (waiting until the service finished it), then delete the source."""
        from azure.core.exceptions import ResourceNotFoundError

        source, target = self._blob(src), self._blob(dst)
        try:
            copy = await target.start_copy_from_url(source.url, requires_sync=None)
        except ResourceNotFoundError:
            raise FileNotFoundError(src) from None
        status = copy.get("copy_status")
        delay = 0.05
        while status == "pending":
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
            status = (await target.get_blob_properties()).copy.status
        if status != "success":
            raise OSError(f"server-side copy ended as {status!r}")
        await source.delete_blob()

    async def _url_for(self, key: str, method: str) -> str | None:
        from azure.storage.blob import BlobSasPermissions, generate_blob_sas

        if not self._account_key:
            return None  # token credentials: blobs are served through the registry

        container, _, name = key.partition("/")
        sas = generate_blob_sas(
            account_name=self.account,
            container_name=container,
            blob_name=name,
            account_key=self._account_key,
            permission=BlobSasPermissions(read=True),
            expiry=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=self.redirect_expiry),
            start=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5),
        )
        return f"{self.service_url}/{container}/{urllib.parse.quote(name, safe='/~')}?{sas}"

    async def close(self) -> None:
        await self.client.close()
        if self._token_credential is not None:
            await self._token_credential.close()
        await super().close()


def _connection_string(text: str) -> dict[str, str]:
    """``Key=Value;...`` of an Azure connection string, keys lower-cased."""
    out: dict[str, str] = {}
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            out[name.strip().lower()] = value.strip()
    if text and "accountname" not in out and "blobendpoint" not in out:
        raise DriverConfigError("storage.azure.connectionstring: not an Azure connection string")
    return out


def _token_credential(kind: str, creds: Any) -> Any:
    """azure-identity's async credential for ``credentials.type`` client_secret or default_credentials."""
    try:
        from azure.identity import aio as identity
    except ImportError:
        raise DriverConfigError("storage.azure.credentials: token credentials need the azure-identity package") from None
    if kind == "client_secret":
        tenant, client, secret = (creds.str(k) for k in ("tenantid", "clientid", "secret"))
        if not (tenant and client and secret):
            raise DriverConfigError("storage.azure.credentials: client_secret needs tenantid, clientid and secret")
        return identity.ClientSecretCredential(tenant, client, secret)
    for k in ("tenantid", "clientid", "secret"):
        creds.raw(k)  # may be set; the environment (workload identity) decides
    return identity.DefaultAzureCredential()


def _body(data: Any) -> Any:
    """A body the SDK streams without copying (see :class:`drivers.multipart.BufferReader`)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return BufferReader(data)
    data.seek(0)
    return data


def _length(data: Any) -> int:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return len(data)
    data.seek(0, 2)
    size = data.tell()
    data.seek(0)
    return size


def _retry_429_too() -> None:
    """azure-storage-blob retries 408 and 5xx but not 429, which Azure's front ends (and
    proxies before them) send under load; its async retry policy asks this module function."""
    from azure.storage.blob._shared import policies_async

    original = policies_async.is_retry
    if getattr(original, "_registry_hook", False):
        return

    def is_retry(response: Any, mode: Any) -> bool:
        return response.http_response.status_code == 429 or original(response, mode)

    is_retry._registry_hook = True  # type: ignore[attr-defined]
    policies_async.is_retry = is_retry


def _detach_finalizers(obj: object) -> None:
    """adlfs registers exit hooks that run on fsspec's own loop thread, where our async client
    does not live; :meth:`AzureDriver.close` closes it instead."""
    for finalizer in list(weakref.finalize._registry):  # type: ignore[attr-defined]
        info = finalizer.peek()
        if info is not None and info[0] is obj:
            finalizer.detach()


class _AzureBlocks(PartStore):
    """Azure staged blocks for :class:`drivers.multipart.PartWriter`."""

    short_parts_ok = True
    takes_files = True

    def __init__(self, driver: AzureDriver) -> None:
        self._d = driver
        self.name = driver.name

    def _err(self, key: str):  # type: ignore[no-untyped-def]
        return self._d._errors(self._d._path(key))

    async def get_small(self, key: str) -> bytes:
        from azure.core.exceptions import ResourceNotFoundError

        with self._err(key):
            try:
                stream = await self._d._blob(key).download_blob()
            except ResourceNotFoundError:
                raise FileNotFoundError(key) from None
            return await stream.readall()

    async def put_small(self, key: str, data: bytes) -> None:
        with self._err(key):
            await self._d._blob(key).upload_blob(data, overwrite=True)

    async def delete_key(self, key: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        with self._err(key):
            try:
                await self._d._blob(key).delete_blob()
            except ResourceNotFoundError:
                pass

    async def put_whole(self, key: str, data: bytes | bytearray) -> None:
        with self._err(key):
            await self._d._blob(key).upload_blob(_body(data), length=_length(data), overwrite=True, max_concurrency=1)

    async def mpu_start(self, key: str) -> dict[str, Any]:
        return {"session": uuid.uuid4().hex[:16], "blocks": []}

    async def mpu_part(
        self, key: str, state: dict[str, Any], offset: int, data: bytes | bytearray, final: bool
    ) -> None:
        length = _length(data)
        if not length:
            return
        index = len(state["blocks"])
        block_id = base64.b64encode(f"{state['session']}-{index:06d}".encode()).decode()
        with self._err(key):
            await self._d._blob(key).stage_block(block_id, _body(data), length=length)
        state["blocks"].append(block_id)

    async def mpu_complete(self, key: str, state: dict[str, Any], size: int) -> None:
        from azure.storage.blob import BlobBlock

        with self._err(key):
            await self._d._blob(key).commit_block_list([BlobBlock(block_id=b) for b in state["blocks"]])

    async def mpu_abort(self, key: str, state: dict[str, Any]) -> None:
        """Nothing to do: uncommitted blocks expire on their own and never become visible."""
