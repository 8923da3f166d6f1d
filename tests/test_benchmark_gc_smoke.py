"""The GC benchmark (benchmarks/gc.py) end to end on a small root: both collectors run on copies of
it, delete exactly the same blobs and manifests (the tool checks), and every figure is reported.
No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.servers import REFERENCE_BINARY

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.requires_tool(REFERENCE_BINARY, hint="the reference: `make apt-deps` installs docker-registry")


def test_gc_benchmark_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "gc.json"
    argv = ["--repos", "4", "--manifests", "40", "--layers", "300", "--repetitions", "1", "--json", str(out),
            "--workdir", str(tmp_path)]
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gc", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["figures"]) == {"plain", "untagged"}
    for mode, figure in result["figures"].items():
        assert figure["deleted"]["blobs"] > 0, mode
        assert (figure["deleted"]["manifests"] > 0) == (mode == "untagged"), figure
        for who in ("reference", "offline", "online", "online_live", "floor"):
            assert figure["seconds"][who] > 0
        assert figure["ratio_offline"] > 0 and figure["ratio_online"] > 0 and figure["ratio_online_live"] > 0
        assert figure["ratio_floor"] > 0
    assert "2.8" in result["reference"]
