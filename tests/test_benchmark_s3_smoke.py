"""The S3 benchmark (``python -m benchmarks.s3``) runs end to end on a small blob.

No timing is asserted: this proves the tool works (moto and two registries start, the push and
pull through the registry and the raw s3fs transfers all succeed, the JSON has every ratio).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import ROOT

pytestmark = pytest.mark.slow


def test_s3_benchmark_quick_run() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.s3", "--size", "8MiB", "--repeat", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("ratio_push", "ratio_pull", "ratio_pull_redirect"):
        assert result[key] > 0
    assert "registry/raw: push" in proc.stdout
