"""The Swift benchmark (``python -m benchmarks.swift``) runs end to end on a small blob.

No timing is asserted: this proves the tool works (a Swift all-in-one and two registries start,
the push and pull through the registry and the raw python-swiftclient transfers all succeed, the
JSON has every ratio).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import swift_aio
from helpers import ROOT

pytestmark = pytest.mark.slow


def test_swift_benchmark_quick_run() -> None:
    if not swift_aio.available():
        pytest.fail("OpenStack Swift is not installed: run `make test-deps`")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.swift", "--size", "8MiB", "--repeat", "1", "--chunksize", "5MiB"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("ratio_push", "ratio_push_vs_single_put", "ratio_pull", "ratio_pull_redirect"):
        assert result[key] > 0
    assert "registry/raw: push" in proc.stdout
