"""The conformance port (tests/test_conformance.py) once more, through haproxy in front of the three
scale-out instances on one moto bucket with Redis (round robin: consecutive requests of one push or
pull land on different instances). Same tests, same order; only the registry fixture differs."""

from __future__ import annotations

import pytest

from test_conformance import *  # noqa: F401,F403 - the suite's tests and fixtures, collected here
from test_conformance import _client  # noqa: F401 - the autouse fixture that sets the suite's client
from fixtures_registry import Client


@pytest.fixture(scope="module")
def registry(scale_out) -> Client:  # type: ignore[no-untyped-def]  # noqa: F811
    """The load balancer in front of the scale-out instances."""
    return scale_out.client
