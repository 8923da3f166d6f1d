"""The ``oss`` driver: Alibaba Cloud OSS through its S3-compatible API (s3fs).

ossfs, the fsspec filesystem for OSS's own API, does not work on the aiohttp that current s3fs
needs, while OSS serves the S3 protocol at its regular endpoints. So this is the s3 driver with
OSS's settings: virtual-hosted addressing, SigV4 with the OSS region name, and botocore's
request checksums only where required (OSS rejects the newer default ones).

Config keys are distribution's: ``accesskeyid, accesskeysecret, region, endpoint, internal,
bucket, secure, chunksize, rootdirectory`` (plus ``encrypt``, ``uploadmemorybudget`` and
``redirectexpiry``). Without ``endpoint`` the endpoint is ``<region>[-internal].aliyuncs.com``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import DriverConfigError
from .cloud import Params
from .s3 import MAX_PART, MIN_PART, S3Driver, _bucket


class OSSDriver(S3Driver):
    """OSS over the S3 protocol; all behaviour is the s3 driver's."""

    name = "oss"
    secret_params = frozenset({"accesskeysecret"})
    checksums = "when_required"
    default_addressing = "virtual"
    #: OSS's S3 API documents no If-Match on PutObject: the state is written unconditionally
    conditional_writes = False

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "OSSDriver":
        p = cls.params(params)
        region = p.str("region", required=True) or ""
        secure = p.bool("secure", True)
        internal = p.bool("internal", False)
        endpoint = p.str("endpoint") or f"{region}{'-internal' if internal else ''}.aliyuncs.com"
        if "://" not in endpoint:
            endpoint = ("https://" if secure else "http://") + endpoint
        key, secret = p.str("accesskeyid"), p.str("accesskeysecret")
        if not key or not secret:
            raise DriverConfigError("storage.oss: accesskeyid and accesskeysecret are required")
        encrypt = p.bool("encrypt", False)
        return cls(
            bucket=_bucket(p, "bucket"),
            root=p.root(),
            key=key,
            secret=secret,
            region=region,
            endpoint=endpoint,
            secure=secure,
            path_style=False,
            part_size=p.int("chunksize", 10 << 20, minimum=MIN_PART, maximum=MAX_PART),
            storage_class=None,
            encrypt=encrypt,
            kms_key=p.str("encryptionkeyid") if encrypt else None,
            redirect_expiry=p.int("redirectexpiry", 1200, minimum=1),
            params=p,
        )
