"""Every key of distribution's s3, gcs, azure and oss blocks (2.8 and 3.x forms): honoured where the
SDK can, else named in a warning -- checked against the emulators (moto, fake-gcs-server, azurite)."""

from __future__ import annotations

import json
import logging
import urllib.parse

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from drivers.base import DriverConfigError
from drivers.factory import create_driver
from emulators import (  # noqa: F401
    AZURITE_ACCOUNT,
    AZURITE_KEY,
    Proxy,
    azure_params,
    azurite_emulator,
    gcs_emulator,
    gcs_params,
    make_s3_bucket,
    moto_emulator,
    s3_params,
)

FAKE = {"accesskey": "AKIAIOSFODNN7EXAMPLE", "secretkey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}


def warnings_of(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


def service_account() -> dict[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return {"type": "service_account", "project_id": "p", "private_key_id": "1", "private_key": pem,
            "client_email": "registry@p.iam.gserviceaccount.com", "client_id": "1",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": "https://oauth2.googleapis.com/token",
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/registry"}


# --------------------------------------------------------------------------- every documented key


DOCUMENTED = {
    # distribution 3.x's configuration reference and storage-driver pages
    "s3": {**FAKE, "region": "us-west-1", "regionendpoint": "http://myobjects.local", "forcepathstyle": True,
           "accelerate": False, "bucket": "bucketname", "encrypt": True, "keyid": "mykeyid", "secure": True,
           "v4auth": True, "chunksize": 5242880, "multipartcopychunksize": 33554432,
           "multipartcopymaxconcurrency": 100, "multipartcopythresholdsize": 33554432,
           "rootdirectory": "/s3/object/name/prefix", "usedualstack": False, "usefipsendpoint": False,
           "loglevel": "off", "skipverify": False, "storageclass": "STANDARD", "useragent": "registry/1",
           "objectacl": "private"},
    "azure": {"accountname": "accountname", "accountkey": "YmFzZTY0ZW5jb2RlZGFjY291bnRrZXk=",
              "container": "containername", "rootdirectory": "/az/object/name/prefix",
              "credentials": {"type": "client_secret", "clientid": "client_id_string",
                              "tenantid": "tenant-id-string", "secret": "secret_string"},
              "max_retries": 10, "retry_delay": "100ms", "realm": "core.windows.net", "skipverify": False},
    "azure-2.8": {"accountname": "accountname", "accountkey": "YmFzZTY0ZW5jb2RlZGFjY291bnRrZXk=",
                  "container": "containername", "realm": "core.windows.net"},
    "gcs": {"bucket": "bucketname", "credentials": "service account", "rootdirectory": "/gcs/object/name/prefix",
            "chunksize": 5242880, "useragent": "registry/1"},
    "oss": {"accesskeyid": "accesskeyid", "accesskeysecret": "accesskeysecret", "region": "oss-cn-beijing",
            "endpoint": "oss-cn-beijing.aliyuncs.com", "internal": False, "bucket": "ossbucket", "encrypt": False,
            "secure": True, "chunksize": 10485760, "rootdirectory": "/oss/object/name/prefix"},
}


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
async def test_every_documented_key_is_read(name: str, caplog: pytest.LogCaptureFixture) -> None:
    params = dict(DOCUMENTED[name])
    if params.get("credentials") == "service account":
        params["credentials"] = service_account()
    with caplog.at_level(logging.WARNING):
        driver = create_driver(name.split("-")[0], params)
    await driver.close()
    assert "unknown key" not in warnings_of(caplog)


async def test_gcs_keyfile_and_maxconcurrency(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    keyfile = tmp_path / "key.json"
    keyfile.write_text(json.dumps(service_account()))
    with caplog.at_level(logging.WARNING):
        driver = create_driver("gcs", {"bucket": "b", "keyfile": str(keyfile), "maxconcurrency": 50})
    await driver.close()
    found = warnings_of(caplog)
    assert "storage.gcs.maxconcurrency is not supported by this registry and is ignored" in found
    assert "unknown key" not in found


async def test_a_driver_key_typo_gets_a_suggestion(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        driver = create_driver("s3", {**FAKE, "bucket": "b", "region": "us-east-1", "regionendpiont": "http://x"})
    await driver.close()
    assert "unknown key storage.s3.regionendpiont ignored (did you mean storage.s3.regionendpoint?)" in warnings_of(caplog)


# --------------------------------------------------------------------------- s3


async def test_s3_useragent_is_sent(moto_emulator) -> None:
    async with Proxy(moto_emulator.endpoint) as proxy:
        params = s3_params(moto_emulator, regionendpoint=proxy.url, useragent="registry-test/7")
        driver = create_driver("s3", params)
        try:
            await driver.put_content("/ua/x", b"hello")
            assert await driver.get_content("/ua/x") == b"hello"
        finally:
            await driver.close()
    assert proxy.user_agents and all(ua.startswith("registry-test/7") for ua in proxy.user_agents), proxy.user_agents


@pytest.mark.parametrize("write", ["put", "multipart"])
async def test_s3_objectacl_is_applied(moto_emulator, write: str) -> None:
    import boto3

    params = s3_params(moto_emulator, objectacl="public-read")
    driver = create_driver("s3", params)
    try:
        if write == "put":
            await driver.put_content("/acl/small", b"x" * 10)
        else:
            w = await driver.writer("/acl/big")
            await w.write(b"y" * (6 << 20))
            await w.commit()
    finally:
        await driver.close()
    client = boto3.client("s3", endpoint_url=moto_emulator.endpoint, region_name="us-east-1",
                          aws_access_key_id=params["accesskey"], aws_secret_access_key=params["secretkey"])
    key = "registry-root/acl/" + ("small" if write == "put" else "big")
    grants = client.get_object_acl(Bucket=params["bucket"], Key=key)["Grants"]
    assert any(g["Grantee"].get("URI", "").endswith("/global/AllUsers") and g["Permission"] == "READ"
               for g in grants), grants


def test_s3_objectacl_outside_the_canned_list_is_refused() -> None:
    with pytest.raises(DriverConfigError, match="storage.s3.objectacl: expected one of private"):
        create_driver("s3", {**FAKE, "bucket": "b", "region": "us-east-1", "objectacl": "everyone"})


@pytest.mark.parametrize(("key", "host_part"), [
    ("accelerate", "s3-accelerate."), ("usedualstack", "dualstack."), ("usefipsendpoint", "s3-fips."),
])
async def test_s3_endpoint_options_shape_the_urls(key: str, host_part: str) -> None:
    """accelerate, usedualstack and usefipsendpoint pick AWS's endpoints (seen in redirect URLs)."""
    driver = create_driver("s3", {**FAKE, "bucket": "my-bucket", "region": "us-east-1", key: True})
    plain = create_driver("s3", {**FAKE, "bucket": "my-bucket", "region": "us-east-1"})
    try:
        url = await driver.redirect_url("/docker/registry/v2/blobs/x")
        other = await plain.redirect_url("/docker/registry/v2/blobs/x")
    finally:
        await driver.close()
        await plain.close()
    assert url and host_part in urllib.parse.urlsplit(url).netloc, url
    assert other and host_part not in urllib.parse.urlsplit(other).netloc


async def test_s3_storageclass_any_case_and_v4auth_and_loglevel(moto_emulator, caplog) -> None:
    import boto3

    params = s3_params(moto_emulator, storageclass="reduced_redundancy", v4auth=False, loglevel="debug")
    with caplog.at_level(logging.WARNING):
        driver = create_driver("s3", params)
    try:
        await driver.put_content("/sc/x", b"z")
    finally:
        await driver.close()
    client = boto3.client("s3", endpoint_url=moto_emulator.endpoint, region_name="us-east-1",
                          aws_access_key_id=params["accesskey"], aws_secret_access_key=params["secretkey"])
    head = client.head_object(Bucket=params["bucket"], Key="registry-root/sc/x")
    assert head.get("StorageClass") == "REDUCED_REDUNDANCY"
    assert "storage.s3.v4auth: false is not supported" in warnings_of(caplog)
    assert logging.getLogger("botocore").level == logging.DEBUG
    logging.getLogger("botocore").setLevel(logging.NOTSET)
    for name in ("aiobotocore", "s3fs"):
        logging.getLogger(name).setLevel(logging.NOTSET)


# --------------------------------------------------------------------------- gcs


async def test_gcs_useragent_is_sent(gcs_emulator) -> None:
    async with Proxy(gcs_emulator.endpoint) as proxy:
        params = gcs_params(gcs_emulator, endpoint=proxy.url, useragent="registry-test/8")
        driver = create_driver("gcs", params)
        try:
            await driver.put_content("/ua/x", b"hello")
            assert await driver.get_content("/ua/x") == b"hello"
        finally:
            await driver.close()
    assert proxy.user_agents and all(ua == "registry-test/8" for ua in proxy.user_agents), proxy.user_agents


# --------------------------------------------------------------------------- azure


async def test_azure_connection_string_alone(azurite_emulator) -> None:
    params = azure_params(azurite_emulator)
    conn = (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={params['serviceurl']};")
    driver = create_driver("azure", {"connectionstring": conn, "container": params["container"],
                                     "max_retries": 2, "retry_delay": "50ms"})
    try:
        await driver.put_content("/cs/x", b"via connection string")
        assert await driver.get_content("/cs/x") == b"via connection string"
        assert await driver.redirect_url("/cs/x")  # the key from the string signs SAS URLs
    finally:
        await driver.close()


async def test_azure_3x_shared_key_credentials(azurite_emulator) -> None:
    params = azure_params(azurite_emulator, credentials={"type": "shared_key"})
    driver = create_driver("azure", params)
    try:
        await driver.put_content("/sk/x", b"shared key")
        assert await driver.get_content("/sk/x") == b"shared key"
    finally:
        await driver.close()


async def test_azure_token_credentials_need_their_fields_and_give_no_sas() -> None:
    base = {"accountname": "acct", "container": "c"}
    with pytest.raises(DriverConfigError, match="client_secret needs tenantid, clientid and secret"):
        create_driver("azure", {**base, "credentials": {"type": "client_secret", "clientid": "x"}})
    with pytest.raises(DriverConfigError, match="storage.azure.accountkey is required"):
        create_driver("azure", base)
    with pytest.raises(DriverConfigError, match="storage.azure.credentials.type: expected one of"):
        create_driver("azure", {**base, "credentials": {"type": "magic"}})
    driver = create_driver("azure", {**base, "credentials": {"type": "client_secret", "clientid": "i",
                                                              "tenantid": "t", "secret": "s3cr3t-v4lue"}})
    try:
        assert await driver.redirect_url("/x") is None  # no account key: served through the registry
    finally:
        await driver.close()


def test_azure_secrets_never_in_messages() -> None:
    with pytest.raises(DriverConfigError) as info:
        create_driver("azure", {"accountname": "a", "container": "c", "accountkey": ["s3cr3t"]})
    assert "s3cr3t" not in str(info.value)
