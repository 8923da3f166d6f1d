"""The scale-out benchmark (``python -m benchmarks.scale``) runs end to end, small and short.

No timing is asserted: this proves the tool works (Redis, moto, haproxy with two frontends, three
instances and the cached/uncached pair start; pushes, GETs and HEADs succeed; the JSON has every
figure and the load averages)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import ROOT

pytestmark = pytest.mark.slow


def test_scale_benchmark_quick_run() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale", "--clients", "3", "--size", "1MiB", "--repeat", "1",
         "--duration", "0.5", "--concurrency", "4", "--cache-concurrency", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("ratio_push_three_vs_one", "ratio_manifest_get_three_vs_one", "ratio_manifest_get_cache_vs_none",
                "ratio_blob_head_cache_vs_none", "load_start", "load_end"):
        assert result[key] > 0, key
