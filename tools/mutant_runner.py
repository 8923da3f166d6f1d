"""The test side of :mod:`tools.mutation`: a server that forks one pytest run per mutant.

Started once per target, it imports pytest and its plugins (hypothesis, aiohttp...) so each
mutant's run skips that start-up cost; nothing of the tree under test is imported in the server. Then it runs a baseline and, for each ``FILE INDEX`` line read from stdin, forks a child
that puts an import hook first on ``sys.meta_path`` (serving the mutated code object for exactly
that module name: the file on disk is never touched), changes to a fresh temporary directory and
runs ``pytest -x -q -p no:cacheprovider`` on the tests. A child running past the timeout is killed
(its process group). Results are written to stdout, one line each:
``N STATUS SECONDS`` (N: the request's line number from 0) after ``baseline STATUS SECONDS OUTPUT_FILE`` with STATUS killed, survived, timeout or error.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any


class _MutantLoader(importlib.machinery.SourceFileLoader):
    def __init__(self, fullname: str, path: str, code: CodeType) -> None:
        super().__init__(fullname, path)
        self._code = code

    def get_code(self, fullname: str) -> CodeType:  # type: ignore[override]
        return self._code


class MutantFinder(importlib.abc.MetaPathFinder):
    """Serves ``code`` for the module ``module`` (its spec otherwise as for the real file)."""

    def __init__(self, module: str, path: Path, code: CodeType) -> None:
        self.module, self.path, self.code = module, path, code

    def find_spec(self, fullname: str, path: Any = None, target: ModuleType | None = None) -> Any:
        if fullname != self.module:
            return None
        package = [str(self.path.parent)] if self.path.name == "__init__.py" else None
        loader = _MutantLoader(fullname, str(self.path), self.code)
        return importlib.util.spec_from_file_location(
            fullname, str(self.path), loader=loader, submodule_search_locations=package
        )


def _pytest_args(root: Path, tests: list[str], extra: list[str] = ()) -> list[str]:  # type: ignore[assignment]
    return ["-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "--rootdir", str(root),
            "-c", str(root / "pyproject.toml"), *extra, *tests]


def _preload() -> None:
    """Import pytest and its installed plugins (hypothesis, aiohttp, asyncio, timeout...) once, here."""
    import importlib.metadata

    import pytest  # noqa: F401

    for entry in importlib.metadata.entry_points(group="pytest11"):
        try:
            entry.load()
        except Exception:  # noqa: BLE001 - pytest will report a broken plugin in the child
            pass


def _quiet(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _child(root: Path, tests: list[str], file: str | None, index: int | None, output: str, work: str) -> None:
    """Runs in the forked child: never returns."""
    rc = 3
    try:
        os.setpgid(0, 0)
        _quiet(output)
        os.chdir(work)
        sys.dont_write_bytecode = True
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if file is not None:
            from tools.mutation import module_name, mutated_code

            path = (root / file).resolve()
            try:
                code = mutated_code(path, index)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - reported as an error, never counted
                print(f"cannot build mutant {file}#{index}: {exc!r}", file=sys.stderr)
                os._exit(99)
            sys.meta_path.insert(0, MutantFinder(module_name(file), path, code))
        import pytest

        rc = int(pytest.main(_pytest_args(root, tests)))
    except BaseException:  # noqa: BLE001
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)


def serve(root: Path, tests: list[str], jobs: int, factor: float, requests: list[tuple[str, int]]) -> int:
    import tools.mutation  # noqa: F401 - now, so that every child builds its mutant with this version

    _preload()
    scratch = tempfile.mkdtemp(prefix="mutation-")
    try:
        return _serve(root, tests, jobs, factor, requests, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _start(root: Path, tests: list[str], file: str | None, index: int | None, scratch: str, n: int) -> tuple[int, str, str]:
    work = tempfile.mkdtemp(dir=scratch)
    output = os.path.join(scratch, f"out-{n}.txt")
    pid = os.fork()
    if pid == 0:
        _child(root, tests, file, index, output, work)
    return pid, output, work


def _emit(*fields: object) -> None:
    sys.stdout.write(" ".join(str(f) for f in fields) + "\n")
    sys.stdout.flush()


def _status(code: int) -> str:
    rc = os.waitstatus_to_exitcode(code)
    return "survived" if rc == 0 else "error" if rc == 99 else "killed"


def _serve(root: Path, tests: list[str], jobs: int, factor: float, requests: list[tuple[str, int]],
           scratch: str) -> int:
    started = time.monotonic()
    pid, output, _ = _start(root, tests, None, None, scratch, 0)
    _, code = os.waitpid(pid, 0)
    baseline = time.monotonic() - started
    status = _status(code)
    kept = os.path.join(tempfile.gettempdir(), f"mutation-baseline-{os.getpid()}.txt")
    shutil.copy(output, kept)
    _emit("baseline", status, f"{baseline:.2f}", kept)
    if status != "survived":
        return 1
    timeout = baseline * factor + 10
    queue = list(enumerate(requests))
    running: dict[int, tuple[int, float, str]] = {}

    def stop(signum: int, frame: Any) -> None:  # the orchestrator is gone: take the children along
        for pid in running:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os._exit(1)

    signal.signal(signal.SIGTERM, stop)
    while queue or running:
        while queue and len(running) < jobs:
            n, (file, index) = queue.pop(0)
            pid, _, work = _start(root, tests, file, index, scratch, n + 1)
            running[pid] = (n, time.monotonic(), work)
        time.sleep(0.02)
        for pid, (n, since, work) in list(running.items()):
            done, code = os.waitpid(pid, os.WNOHANG)
            elapsed = time.monotonic() - since
            if done:
                _emit(n, _status(code), f"{elapsed:.2f}")
            elif elapsed > timeout:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                os.waitpid(pid, 0)
                _emit(n, "timeout", f"{elapsed:.2f}")
            else:
                continue
            del running[pid]
            shutil.rmtree(work, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.mutant_runner")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout-factor", type=float, default=3.0)
    parser.add_argument("tests", nargs="+")
    args = parser.parse_args(argv)
    sys.dont_write_bytecode = True
    requests = []
    for line in sys.stdin.read().splitlines():
        if line.strip():
            file, index = line.rsplit(" ", 1)
            requests.append((file, int(index)))
    return serve(args.root.resolve(), args.tests, args.jobs, args.timeout_factor, requests)


if __name__ == "__main__":
    sys.exit(main())
