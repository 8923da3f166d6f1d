"""The test helpers that keep other tests honest: a missing tool fails under CI, and a memory
sampler that could not measure fails instead of passing its bound."""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
import time

import pytest

from helpers import RssSampler, in_ci, missing, require_module, require_tool

ABSENT = "no-such-tool-4f1c2a"


@pytest.mark.parametrize("value,expected", [("", False), ("0", False), ("false", False), ("true", True),
                                            ("1", True), ("yes", True)])  # fmt: skip
def test_in_ci_reads_the_ci_variable(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("CI", value)
    assert in_ci() is expected


def test_a_missing_tool_skips_locally_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=ABSENT):
        require_tool("sh", ABSENT)
    with pytest.raises(pytest.skip.Exception, match="no_such_module_4f1c2a cannot be imported"):
        require_module("no_such_module_4f1c2a")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=f"{ABSENT} is not installed.*CI is set"):
        require_tool("sh", ABSENT)
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        require_tool(f"/usr/bin/{ABSENT}")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        require_module("no_such_module_4f1c2a")
    with pytest.raises(pytest.fail.Exception, match="cannot mount"):
        missing("cannot mount")


def test_present_tools_and_modules_are_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    sh, python = require_tool("sh", sys.executable)
    assert os.access(sh, os.X_OK) and python == sys.executable
    assert require_module("json").dumps([]) == "[]"


def test_the_requires_tool_marker_goes_through_require_tool(request: pytest.FixtureRequest,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import conftest

    request.node.add_marker(pytest.mark.requires_tool(ABSENT, hint="for this test"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=f"{ABSENT} is not installed: for this test"):
        conftest.pytest_runtest_setup(request.node)
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match=ABSENT):
        conftest.pytest_runtest_setup(request.node)


def test_the_sampler_measures_a_live_process() -> None:
    # A fresh anonymous mapping, not a bytearray: malloc may hand back a large free chunk that an
    # earlier test left resident in this worker, and touching it would not raise the RSS at all.
    with RssSampler(os.getpid(), 0.005) as rss, mmap.mmap(-1, 64 << 20) as block:
        for offset in range(0, len(block), mmap.PAGESIZE):
            block[offset] = 1  # touched, so resident
        time.sleep(0.2)
    assert rss.samples >= 3 and rss.peak - rss.baseline >= 32 << 20


def test_the_sampler_fails_when_the_process_goes_away() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    with pytest.raises(AssertionError, match="sampling the memory of process .* failed"):
        with RssSampler(proc.pid, 0.01):
            proc.wait(10)  # reaped: the next sample finds no process
            time.sleep(0.1)


def test_the_sampler_fails_when_it_took_too_few_samples() -> None:
    with pytest.raises(AssertionError, match="memory samples"):
        with RssSampler(os.getpid(), 5.0):  # one sample, then it waits past the block
            time.sleep(0.05)


def test_a_failing_block_keeps_its_own_error() -> None:
    with pytest.raises(KeyError):
        with RssSampler(os.getpid(), 5.0):
            raise KeyError("the block's")
