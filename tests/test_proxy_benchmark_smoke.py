"""``benchmarks.proxy --quick`` runs end to end: every path measured, every ratio reported (no
timing asserted: this proves the tool works)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow,
              pytest.mark.requires_tool("/usr/bin/docker-registry", hint="the reference: `make apt-deps` installs it")]


def test_quick_proxy_benchmark_reports_every_ratio(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.proxy", "--quick", "--link-rates", "200MiB",
                           "--json", str(out), "--workdir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == result
    assert set(result["ratios"]) == {"loopback: cold vs direct", "link 200 MiB/s: cold vs direct", "warm vs local"}
    assert all(v > 0 for v in result["mib_per_s"].values()) and len(result["mib_per_s"]) == 6
    assert result["cache_peak_rss_mib"] > 0 and len(result["load"]["before"]) == 3
    assert result["workdir"] is None and not list(tmp_path.glob("registry-proxy-bench-*")), "servers' data left behind"
