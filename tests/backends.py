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
