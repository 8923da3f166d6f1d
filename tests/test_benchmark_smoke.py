"""The benchmark's quick mode runs end to end against both registries and reports every figure.

No timing is asserted: this only proves the tool works (both registries start, every scenario runs
without a protocol error, the JSON has each figure with a value for both and a ratio).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.compare import figures_for, parse_args
from benchmarks.servers import REFERENCE_BINARY

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.requires_tool(REFERENCE_BINARY, hint="the reference: `make apt-deps` installs docker-registry"),
]


def test_quick_benchmark_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    argv = ["--quick", "--sizes", "8MiB,16MiB", "--duration", "0.2", "--tags", "20", "--json", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.compare", *argv, "--workdir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == result  # the last stdout line is the JSON
    expected = [fig.key for fig in figures_for(parse_args(argv))]
    assert list(result["figures"]) == expected
    assert "push_chunked_16MiB" in expected and "tag_list" in expected and "pull_4x_16MiB" in expected
    for key, entry in result["figures"].items():
        for who in ("ref", "ours"):
            assert entry.get(f"{who}_error") is None, (key, who, entry.get(f"{who}_error"))
            assert entry[who] > 0, (key, who)
            assert entry[f"{who}_peak_rss_mib"] > 0, (key, who)
        assert entry["ratio"] is not None, key
    assert result["machine"]["nproc"] >= 1
    assert "2.8" in result["reference"]
    assert set(result["goals"]["ours_push_peak_rss_mib"]) == {"8MiB", "16MiB"}


def test_observability_benchmark_reports_on_and_off(tmp_path: Path) -> None:
    """``benchmarks.observability`` runs end to end (no timing asserted): both variants measured."""
    out = tmp_path / "obs.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.observability", "--size", "8MiB", "--reps", "1", "--duration", "0.2",
         "--tags", "10", "--scrape-interval", "0.1", "--json", str(out), "--workdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["figures"]) == {"manifest_get_tag", "push_8MiB"}
    for entry in result["figures"].values():
        assert entry["off"] > 0 and entry["on"] > 0 and entry["ratio"] > 0, entry
    assert result["params"]["scrapes"] > 0


def test_serving_benchmark_reports_guarded_and_plain() -> None:
    """``benchmarks.serving`` (the connection guard's cost) runs end to end: both servers answer
    every figure, and the JSON has a CPU ratio for each."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.serving", "--reps", "1", "--duration", "0.3",
                           "--concurrency", "4"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result) == {"GET /v2/", "manifest GET by tag", "blob HEAD"}
    for figure in result.values():
        assert figure["plain_rps"] > 0 and figure["guarded_rps"] > 0 and figure["cpu_ratio"] > 0
