"""The driver conformance suite, run against every backend in tests/backends.py."""

from __future__ import annotations

import pytest

from backends import *  # noqa: F401,F403  (the <name>_storage fixtures)
from backends import BACKENDS
from drivers.testsuite import *  # noqa: F401,F403  (the tests and the driver fixtures)
from drivers.testsuite import Storage


@pytest.fixture(scope="session", params=BACKENDS)
def storage(request: pytest.FixtureRequest) -> Storage:
    return request.getfixturevalue(f"{request.param}_storage")
