"""The backends the driver conformance suite (drivers/testsuite.py) runs against.

To add a backend: define a session-scoped fixture ``<name>_storage`` returning a
:class:`~drivers.testsuite.Storage` (it may depend on an emulator fixture), and append
``<name>`` to :data:`BACKENDS`. ``Storage.make(location)`` must open a driver on a storage
location of that name; the same name must reach the same data (a new instance, as after a
restart). Example::

    @pytest.fixture(scope="session")
    def s3_storage(moto_emulator):
        bucket = make_s3_bucket(moto_emulator)
        return Storage(lambda loc: create_driver("s3", s3_params(moto_emulator, bucket=bucket,
                                                                  rootdirectory=f"/{loc}")))

    BACKENDS.append("s3")
"""

from __future__ import annotations

import uuid

import pytest

from drivers.factory import create_driver
from drivers.testsuite import Storage

BACKENDS: list[str] = ["filesystem", "inmemory"]


@pytest.fixture(scope="session")
def filesystem_storage(tmp_path_factory: pytest.TempPathFactory) -> Storage:
    base = tmp_path_factory.mktemp("filesystem-driver")
    return Storage(lambda location: create_driver("filesystem", {"rootdirectory": str(base / location)}))


@pytest.fixture(scope="session")
def inmemory_storage() -> Storage:
    return Storage(
        lambda location: create_driver("inmemory", {"rootdirectory": f"/{location}"}),
        holds_data_in_process=True,
    )


# --- cloud backends on their emulators (tests/emulators.py starts them) ----------------------
from emulators import (  # noqa: E402
    azure_params,
    gcs_params,
    make_azure_container,
    make_gcs_bucket,
    make_s3_bucket,
    oss_params,
    s3_params,
    swift_params,
)


@pytest.fixture(scope="session")
def s3_storage(moto_emulator) -> Storage:  # type: ignore[no-untyped-def]
    bucket = make_s3_bucket(moto_emulator)
    return Storage(
        lambda loc: create_driver("s3", s3_params(moto_emulator, bucket=bucket, rootdirectory=f"/{loc}")),
        stream_size=256 << 20,  # moto holds a whole multipart object in memory at completion
    )


@pytest.fixture(scope="session")
def oss_storage(moto_emulator) -> Storage:  # type: ignore[no-untyped-def]
    bucket = make_s3_bucket(moto_emulator)
    return Storage(
        lambda loc: create_driver("oss", oss_params(moto_emulator, bucket=bucket, rootdirectory=f"/{loc}")),
        stream_size=256 << 20,
    )


@pytest.fixture(scope="session")
def gcs_storage(gcs_emulator) -> Storage:  # type: ignore[no-untyped-def]
    bucket = make_gcs_bucket(gcs_emulator)
    return Storage(
        # fake-gcs-server's resumable uploads cost quadratic time in the number of chunks
        lambda loc: create_driver(
            "gcs", gcs_params(gcs_emulator, bucket=bucket, rootdirectory=f"/{loc}", chunksize=16 << 20)
        ),
        stream_size=256 << 20,
    )


@pytest.fixture(scope="session")
def azure_storage(azurite_emulator) -> Storage:  # type: ignore[no-untyped-def]
    container = make_azure_container(azurite_emulator)
    return Storage(
        lambda loc: create_driver(
            "azure", azure_params(azurite_emulator, container=container, rootdirectory=f"/{loc}")
        ),
    )


@pytest.fixture(scope="session")
def swift_storage(swift_server) -> Storage:  # type: ignore[no-untyped-def]
    container = f"suite-{uuid.uuid4().hex[:12]}"
    return Storage(
        lambda loc: create_driver("swift", swift_params(swift_server, container=container, prefix=f"/{loc}")),
    )


BACKENDS += ["s3", "oss", "gcs", "azure", "swift"]
