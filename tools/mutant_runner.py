"""The test side of :mod:`tools.mutation`: a server that forks one pytest run per mutant.

Started once per target, it imports pytest, its plugins and the third-party modules the tests
import (learnt from a forked ``--collect-only``), so each mutant's run skips that start-up cost;
nothing of the tree under test stays imported in the server.
The baseline run records which tests run which lines of the mutated files (:class:`Coverage`), so
a mutant runs only the tests that run its statement. Then it runs a baseline and, for each ``FILE INDEX`` line read from stdin, forks a child
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


class Coverage:
    """A pytest plugin recording which lines of the target's files each test runs (the baseline)."""

    COLLECTION = "<collection>"  # lines run outside any test: imports, module constants

    def __init__(self, files: set[str]) -> None:
        self.files = files
        self.current = self.COLLECTION
        self.lines: dict[str, set[tuple[str, int]]] = {}
        self.order: list[str] = []

    def _global(self, frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename in self.files:
            return self._local
        return None

    def _local(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "line":
            # module-level code counts as collection's even when a test runs it: a module imported
            # lazily runs it in the first test that needs it, and every later test uses what it made
            who = self.COLLECTION if frame.f_code.co_name == "<module>" else self.current
            self.lines.setdefault(who, set()).add((frame.f_code.co_filename, frame.f_lineno))
        return self._local

    def start(self) -> None:
        import threading

        sys.settrace(self._global)
        threading.settrace(self._global)

    def pytest_runtest_protocol(self, item: Any, nextitem: Any) -> None:
        self.current = item.nodeid
        self.order.append(item.nodeid)

    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        self.current = self.COLLECTION

    def dump(self) -> dict[str, Any]:
        return {"order": self.order, "lines": {k: sorted(v) for k, v in self.lines.items()}}


def _pytest_args(root: Path, tests: list[str], extra: list[str] = ()) -> list[str]:  # type: ignore[assignment]
    return ["-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "--rootdir", str(root),
            "-c", str(root / "pyproject.toml"), *extra, *tests]


def _own(root: Path, name: str, module: ModuleType) -> bool:
    """True for modules of the tree under test (and this tool), which the server must not import."""
    top = name.split(".")[0]
    if top in ("__main__", "__mp_main__", "tools", "conftest") or (root / top).exists() \
            or (root / f"{top}.py").exists() or (root / "tests" / f"{top}.py").exists():
        return True
    file = getattr(module, "__file__", None) or ""
    try:
        # built-in modules (sys, builtins...) have no file and are never ours: dropping them from
        # sys.modules gave the tests a fresh, empty ``sys`` (no sys.executable)
        return bool(file) and Path(file).resolve().is_relative_to(root)
    except (OSError, ValueError):
        return True


def _preload(root: Path, tests: list[str]) -> None:
    """Import pytest, its plugins and the third-party modules a collection of ``tests`` imports
    (learnt in a forked child), never a module of the tree."""
    import importlib.metadata

    import pytest

    for entry in importlib.metadata.entry_points(group="pytest11"):
        try:
            entry.load()
        except Exception:  # noqa: BLE001 - pytest will report a broken plugin in the child
            pass
    read, write = os.pipe()
    work = tempfile.mkdtemp(prefix="mutation-preload-")
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(read)
            _quiet(os.devnull)
            os.chdir(work)
            pytest.main(_pytest_args(root, tests, ["--collect-only"]))
            names = [n for n, m in list(sys.modules.items()) if m is not None and not _own(root, n, m)]
            os.write(write, "\n".join(names).encode())
        finally:
            os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 1 << 16):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    shutil.rmtree(work, ignore_errors=True)
    for name in b"".join(chunks).decode().splitlines():
        if name not in sys.modules:
            try:
                importlib.import_module(name)
            except BaseException:  # noqa: BLE001 - a module that imports only in its context: skip it
                pass
    for name, module in list(sys.modules.items()):  # a third-party module may pull one of ours in
        if module is not None and _own(root, name, module) and name.split(".")[0] != "tools":
            del sys.modules[name]


def _quiet(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _child(root: Path, tests: list[str], file: str | None, index: int | None, output: str, work: str,
           coverage: tuple[set[str], str] | None = None) -> None:
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

        if coverage is None:
            rc = int(pytest.main(_pytest_args(root, tests)))
        else:
            import json

            recorder = Coverage(coverage[0])
            recorder.start()
            rc = int(pytest.main(_pytest_args(root, tests), plugins=[recorder]))
            sys.settrace(None)
            Path(coverage[1]).write_text(json.dumps(recorder.dump()))
    except BaseException:  # noqa: BLE001
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)


def serve(root: Path, tests: list[str], jobs: int, factor: float, requests: list[tuple[str, int, int, int]]) -> int:
    import tools.mutation  # noqa: F401 - now, so that every child builds its mutant with this version

    _preload(root, tests)
    scratch = tempfile.mkdtemp(prefix="mutation-")
    try:
        return _serve(root, tests, jobs, factor, requests, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _start(root: Path, tests: list[str], file: str | None, index: int | None, scratch: str, n: int,
           coverage: tuple[set[str], str] | None = None) -> tuple[int, str, str]:
    work = tempfile.mkdtemp(dir=scratch)
    output = os.path.join(scratch, f"out-{n}.txt")
    pid = os.fork()
    if pid == 0:
        _child(root, tests, file, index, output, work, coverage)
    return pid, output, work


class _Selection:
    """Which tests run each line (from the baseline's coverage), as node ids to hand to pytest."""

    def __init__(self, root: Path, data: dict[str, Any]) -> None:
        self.root = root
        self.order: list[str] = data["order"]
        self.collection = {tuple(x) for x in data["lines"].get(Coverage.COLLECTION, [])}
        self.by_line: dict[tuple[str, int], list[str]] = {}
        for nodeid in self.order:
            for f, line in data["lines"].get(nodeid, []):
                self.by_line.setdefault((f, line), []).append(nodeid)

    def tests(self, path: str, lines: tuple[int, int], everything: list[str]) -> list[str] | None:
        """The tests to run for a mutant of ``path`` in ``lines``: None when no test runs them."""
        span = range(lines[0], lines[1] + 1)
        if not lines[0] or any((path, n) in self.collection for n in span):
            return everything  # run at import time: every test may depend on it
        chosen = {t for n in span for t in self.by_line.get((path, n), ())}
        if not chosen:
            return None
        return [f"{self.root}/{t}" for t in self.order if t in chosen]


def _emit(*fields: object) -> None:
    sys.stdout.write(" ".join(str(f) for f in fields) + "\n")
    sys.stdout.flush()


def _status(rc: int) -> str:
    return "survived" if rc == 0 else "error" if rc == 99 else "killed"


def _serve(root: Path, tests: list[str], jobs: int, factor: float, requests: list[tuple[str, int, int, int]],
           scratch: str) -> int:
    import json

    files = {os.path.realpath(root / f) for f, *_ in requests} | {str(root / f) for f, *_ in requests}
    coverage_file = os.path.join(scratch, "coverage.json")
    started = time.monotonic()
    pid, output, _ = _start(root, tests, None, None, scratch, 0, (files, coverage_file))
    _, code = os.waitpid(pid, 0)
    baseline = time.monotonic() - started
    status = _status(os.waitstatus_to_exitcode(code))
    kept = os.path.join(tempfile.gettempdir(), f"mutation-baseline-{os.getpid()}.txt")
    shutil.copy(output, kept)
    _emit("baseline", status, f"{baseline:.2f}", kept)
    if status != "survived":
        return 1
    data = json.loads(Path(coverage_file).read_text())
    data["lines"] = {k: [(os.path.realpath(f), n) for f, n in v] for k, v in data["lines"].items()}
    selection = _Selection(root, data)
    timeout = baseline * factor + 10
    queue: list[tuple[int, str, int, list[str], bool]] = []
    for n, (file, index, first, last) in enumerate(requests):
        chosen = selection.tests(os.path.realpath(root / file), (first, last), tests)
        if chosen is None:
            _emit(n, "uncovered", "0")
        else:
            queue.append((n, file, index, chosen, chosen is tests))
    running: dict[int, tuple[int, float, str, tuple[int, str, int, list[str], bool]]] = {}

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
            job = queue.pop(0)
            n, file, index, chosen, _ = job
            pid, _, work = _start(root, chosen, file, index, scratch, n + 1)
            running[pid] = (n, time.monotonic(), work, job)
        time.sleep(0.02)
        for pid, (n, since, work, job) in list(running.items()):
            done, code = os.waitpid(pid, os.WNOHANG)
            elapsed = time.monotonic() - since
            if done:
                rc = os.waitstatus_to_exitcode(code)
                if rc in (4, 5) and not job[4]:
                    # pytest could not select those node ids (usage error, none collected): run them all
                    queue.insert(0, (n, job[1], job[2], tests, True))
                else:
                    _emit(n, _status(rc), f"{elapsed:.2f}")
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
            file, index, first, last = line.rsplit(" ", 3)
            requests.append((file, int(index), int(first), int(last)))
    return serve(args.root.resolve(), args.tests, args.jobs, args.timeout_factor, requests)


if __name__ == "__main__":
    sys.exit(main())
