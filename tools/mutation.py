"""Mutation testing of our parsers and validators: does each target's fast test set notice a change?

Usage::

    python -m tools.mutation [TARGET ...] [--jobs N] [--min-score 90] [--list] [--file PATH[:LINE]]
    make mutation MUTATION_ARGS='auth --jobs 2'

Targets live in ``pyproject.toml`` under ``[tool.mutation.targets.NAME]``: ``sources`` (files to mutate;
``file.py::Qual.name`` limits a file to the mutants inside that class or function, or of that
module constant), ``tests`` (the fast
unit-level test files or node ids that should kill them) and an optional ``equivalent`` list of
``{at = "file:line", mutation = "original -> mutant", reason = "..."}`` entries.

Mutants come from the AST (each one located by file:line:col), close to mutmut's set:

- comparison operators flipped: ``<``/``<=``, ``>``/``>=``, ``==``/``!=``, ``in``/``not in``, ``is``/``is not``
- int constants moved by one (``0 -> 1``, ``1 -> 0``, ``n -> n+1``); ``True``/``False`` swapped
- ``and``/``or`` swapped; a ``not`` removed; an ``if`` condition negated (unless it is a ``not``)
- a ``raise`` statement replaced by ``pass``; ``return X`` replaced by ``return None``
- ``break``/``continue`` swapped
- arithmetic operators swapped (also in ``+=`` and the like): ``+``/``-``, ``*``/``/``, ``//`` -> ``/``,
  ``%`` -> ``/``, ``**`` -> ``*``, ``<<``/``>>``; a unary minus removed
- regular-expression anchors removed: a leading ``^`` or a trailing ``$`` of a pattern passed to ``re.*``
  or ``\\Z`` (also in f-string patterns); other string constants changed to ``"XX" + s + "XX"``

Not mutated (noise, not behaviour): docstrings and other bare string statements, logging calls
(``log.*``, ``logger.*``, ``logging.*``, ``warnings.warn``), the arguments of a raised exception
(its message text; the ``raise`` itself is mutated), type annotations, ``__repr__``, assert
messages and f-string text outside regex patterns. Arithmetic operators are not mutated.

Nothing in the working tree is modified, so runs may happen concurrently in several trees: each
target's mutants run in processes forked by one :mod:`tools.mutant_runner` server (third-party
modules preloaded); a child's import hook serves the mutated code for that one module, then it runs
``pytest -x -q -p no:cacheprovider`` on the target's tests from a temporary directory (PYTHONPATH:
the tree first; no bytecode written). A baseline run comes first and must pass; it records which
tests run each line of the sources (a trace function), and each mutant then runs only the tests
that run its statement (all of them for module-level code; none, and it survives "not covered",
when no test runs it). A mutant whose run exceeds ``--timeout-factor`` times the baseline (plus
10 s) is counted killed (timeout), and the report says so. The score is killed / (total - named equivalents).
"""

from __future__ import annotations

import argparse
import ast
import copy
import dataclasses
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

_LOG_OBJECTS = {"log", "logger", "logging", "_log", "LOG", "warnings"}
_LOG_METHODS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}
_RE_FUNCS = {"compile", "match", "fullmatch", "search", "sub", "subn", "split", "findall", "finditer"}
_COMPARE_SWAP: dict[type, type] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In,
    ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}
_ARITHMETIC_SWAP: dict[type, type] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div,
    ast.Mod: ast.Div, ast.Pow: ast.Mult, ast.LShift: ast.RShift, ast.RShift: ast.LShift,
}
_TEXT_LIMIT = 80


# --------------------------------------------------------------------------- mutants


@dataclasses.dataclass(frozen=True)
class Mutant:
    """One mutation of one file; ``index`` is its place in :func:`mutants_of` (the runner's key)."""

    file: str
    index: int
    line: int
    col: int
    kind: str
    original: str
    mutated: str
    scope: str
    #: the lines of the enclosing statement (its header for a compound one): tests covering any run it
    lines: tuple[int, int] = (0, 0)

    @property
    def at(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def change(self) -> str:
        return f"{self.original} -> {self.mutated}"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.change}"


@dataclasses.dataclass
class _Point:
    node: ast.AST
    parent: ast.AST
    field: str
    position: int | None  # index in a list field, else None
    kind: str
    apply: Callable[[ast.AST], ast.AST]
    scope: str
    describe: Callable[[ast.AST, ast.AST], tuple[str, str]] | None = None
    lines: tuple[int, int] = (0, 0)


def _text(node: ast.AST) -> str:
    text = " ".join(ast.unparse(node).split())
    return text if len(text) <= _TEXT_LIMIT else text[: _TEXT_LIMIT - 3] + "..."


def _is_log_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return False
    value = node.func.value
    return isinstance(value, ast.Name) and value.id in _LOG_OBJECTS and node.func.attr in _LOG_METHODS


def _is_re_call(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "re"
        and node.func.attr in _RE_FUNCS
        and bool(node.args)
    )


def _set_value(value: Any) -> Callable[[ast.AST], ast.AST]:
    def apply(node: ast.AST) -> ast.AST:
        node.value = value  # type: ignore[attr-defined]
        return node

    return apply


class _Collector:
    """Walks a module in a fixed order and records every mutation point (same order every time)."""

    def __init__(self) -> None:
        self.points: list[_Point] = []
        self.lines = (0, 0)

    def add(self, node: ast.AST, parent: ast.AST, field: str, position: int | None, kind: str,
            apply: Callable[[ast.AST], ast.AST], scope: str, describe: Any = None) -> None:
        self.points.append(_Point(node, parent, field, position, kind, apply, scope, describe, self.lines))

    def visit(self, node: ast.AST, parent: ast.AST | None, field: str, position: int | None, scope: str) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name == "__repr__":
                return
            scope = f"{scope}.{node.name}" if scope else node.name
        elif isinstance(parent, ast.Module) and isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if len(targets) == 1 and isinstance(targets[0], ast.Name):
                scope = targets[0].id  # a module constant: selectable as file.py::NAME
        if _is_log_call(node):
            return
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return  # docstrings and other bare strings
        outer = self.lines
        if isinstance(node, ast.stmt):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                self.lines = (node.lineno, max(node.lineno, body[0].lineno - 1))
            else:
                self.lines = (node.lineno, node.end_lineno or node.lineno)
        try:
            self._visit(node, parent, field, position, scope)
        finally:
            self.lines = outer

    def _visit(self, node: ast.AST, parent: ast.AST | None, field: str, position: int | None, scope: str) -> None:
        if parent is not None:
            self._points_of(node, parent, field, position, scope)
        for name, value in ast.iter_fields(node):
            if name in ("annotation", "returns", "type_comment", "decorator_list"):
                continue  # type annotations and decorators
            if isinstance(node, ast.Raise) and name in ("exc", "cause"):
                continue  # the exception's message and arguments are not behaviour worth a mutant
            if isinstance(node, ast.Assert) and name == "msg":
                continue
            if isinstance(node, ast.JoinedStr):
                continue  # f-string text (regex anchors in f-strings are handled at the re.* call)
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, ast.AST):
                        self.visit(item, node, name, i, scope)
            elif isinstance(value, ast.AST):
                self.visit(value, node, name, None, scope)

    def _points_of(self, node: ast.AST, parent: ast.AST, field: str, position: int | None, scope: str) -> None:
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                new = _COMPARE_SWAP.get(type(op))
                if new is not None:
                    def apply(n: ast.AST, i: int = i, new: type = new) -> ast.AST:
                        n.ops[i] = new()  # type: ignore[attr-defined]
                        return n
                    self.add(node, parent, field, position, "compare", apply, scope)
        elif isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool):
                self.add(node, parent, field, position, "bool", _set_value(not value), scope)
            elif isinstance(value, int):
                self.add(node, parent, field, position, "int", _set_value(0 if value == 1 else value + 1), scope)
            elif isinstance(value, str):
                if _is_re_call(parent) and field == "args" and position == 0:
                    self._anchors(node, parent, field, position, scope)
                else:
                    self.add(node, parent, field, position, "string", _set_value(f"XX{value}XX"), scope)
        elif isinstance(node, ast.JoinedStr):
            if _is_re_call(parent) and field == "args" and position == 0:
                self._anchors(node, parent, field, position, scope)
        elif isinstance(node, ast.BoolOp):
            other = ast.Or if isinstance(node.op, ast.And) else ast.And

            def swap(n: ast.AST, other: type = other) -> ast.AST:
                n.op = other()  # type: ignore[attr-defined]
                return n
            self.add(node, parent, field, position, "boolop", swap, scope)
        elif isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in _ARITHMETIC_SWAP:
            def arithmetic(n: ast.AST, new: type = _ARITHMETIC_SWAP[type(node.op)]) -> ast.AST:
                n.op = new()  # type: ignore[attr-defined]
                return n
            self.add(node, parent, field, position, "arithmetic", arithmetic, scope)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            self.add(node, parent, field, position, "arithmetic", lambda n: n.operand, scope)  # type: ignore[attr-defined]
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            self.add(node, parent, field, position, "not", lambda n: n.operand, scope)  # type: ignore[attr-defined]
        elif isinstance(node, ast.Raise):
            self.add(node, parent, field, position, "raise", lambda n: ast.copy_location(ast.Pass(), n), scope)
        elif isinstance(node, ast.Return) and node.value is not None and not (
            isinstance(node.value, ast.Constant) and node.value.value is None
        ):
            def none(n: ast.AST) -> ast.AST:
                n.value = ast.copy_location(ast.Constant(None), n.value)  # type: ignore[attr-defined]
                return n
            self.add(node, parent, field, position, "return", none, scope)
        elif isinstance(node, ast.Break):
            self.add(node, parent, field, position, "loop", lambda n: ast.copy_location(ast.Continue(), n), scope)
        elif isinstance(node, ast.Continue):
            self.add(node, parent, field, position, "loop", lambda n: ast.copy_location(ast.Break(), n), scope)
        if isinstance(parent, ast.If) and field == "test" and not (
            isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)
        ):
            def negate(n: ast.AST) -> ast.AST:
                return ast.copy_location(ast.UnaryOp(ast.Not(), n), n)
            self.add(node, parent, field, position, "if", negate, scope,
                     lambda old, new: (f"if {_text(old)}", f"if {_text(new)}"))

    def _anchors(self, node: ast.AST, parent: ast.AST, field: str, position: int | None, scope: str) -> None:
        """Removal of a leading ``^`` / trailing ``$`` of a regex (a plain or an f-string pattern)."""
        parts = [node] if isinstance(node, ast.Constant) else list(node.values)  # type: ignore[attr-defined]
        first, last = parts[0], parts[-1]
        if isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value.startswith("^"):
            self.add(node, parent, field, position, "anchor", _strip_anchor(0, "^"), scope)
        if isinstance(last, ast.Constant) and isinstance(last.value, str):
            if last.value.endswith("$") and not last.value.endswith("\\$"):
                self.add(node, parent, field, position, "anchor", _strip_anchor(-1, "$"), scope)
            elif last.value.endswith("\\Z") and not last.value.endswith("\\\\Z"):
                self.add(node, parent, field, position, "anchor", _strip_anchor(-1, "\\Z"), scope)


def _strip_anchor(which: int, anchor: str) -> Callable[[ast.AST], ast.AST]:
    def apply(node: ast.AST) -> ast.AST:
        part = node if isinstance(node, ast.Constant) else node.values[which]  # type: ignore[attr-defined]
        part.value = part.value[1:] if anchor == "^" else part.value[: -len(anchor)]
        return node

    return apply


def _points(source: str, filename: str) -> tuple[ast.Module, list[_Point]]:
    tree = ast.parse(source, filename)
    collector = _Collector()
    collector.visit(tree, None, "", None, "")
    return tree, collector.points


def _replace(point: _Point, new: ast.AST) -> None:
    if point.position is None:
        setattr(point.parent, point.field, new)
    else:
        getattr(point.parent, point.field)[point.position] = new


def mutants_of(path: Path, relative: str) -> list[Mutant]:
    """Every mutant of one source file, in a stable order."""
    source = path.read_text()
    _, points = _points(source, str(path))
    out = []
    for index, point in enumerate(points):
        old = copy.deepcopy(point.node)
        new = point.apply(copy.deepcopy(point.node))
        if point.describe is not None:
            original, mutated = point.describe(old, new)
        elif point.kind == "raise":
            original, mutated = _text(old), "pass"
        else:
            original, mutated = _text(old), _text(new)
        line = getattr(point.node, "lineno", 0)
        col = getattr(point.node, "col_offset", -1) + 1
        out.append(Mutant(relative, index, line, col, point.kind, original, mutated, point.scope, point.lines))
    return out


def mutated_code(path: Path, index: int) -> Any:
    """The code object of ``path`` with mutant ``index`` applied (line numbers kept)."""
    source = path.read_text()
    tree, points = _points(source, str(path))
    point = points[index]
    new = point.apply(point.node)
    if new is not point.node:
        _replace(point, new)
    ast.fix_missing_locations(tree)
    return compile(tree, str(path), "exec", dont_inherit=True)


def module_name(relative: str) -> str:
    parts = list(Path(relative).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


# --------------------------------------------------------------------------- configuration


@dataclasses.dataclass
class Equivalent:
    at: str
    mutation: str
    reason: str


@dataclasses.dataclass
class Target:
    name: str
    sources: dict[str, list[str]]  # file -> qualnames ([] = the whole file)
    tests: list[str]
    equivalent: list[Equivalent]


class MutationError(Exception):
    """A configuration or baseline problem (exit status 2)."""


def load_targets(pyproject: Path) -> dict[str, Target]:
    with pyproject.open("rb") as f:
        config = tomllib.load(f)
    tables = config.get("tool", {}).get("mutation", {}).get("targets", {})
    if not tables:
        raise MutationError(f"{pyproject}: no [tool.mutation.targets.NAME] tables")
    targets = {}
    for name, table in tables.items():
        unknown = set(table) - {"sources", "tests", "equivalent"}
        if unknown:
            raise MutationError(f"target {name}: unknown keys {sorted(unknown)}")
        sources: dict[str, list[str]] = {}
        for entry in table.get("sources", []):
            file, _, qualname = entry.partition("::")
            sources.setdefault(file, [])
            if qualname:
                sources[file].append(qualname)
            elif sources[file]:
                raise MutationError(f"target {name}: {file} listed whole and by function")
        if not sources or not table.get("tests"):
            raise MutationError(f"target {name}: needs sources and tests")
        equivalent = []
        for e in table.get("equivalent", []):
            if set(e) != {"at", "mutation", "reason"} or not all(isinstance(v, str) and v for v in e.values()):
                raise MutationError(f"target {name}: each equivalent entry needs at, mutation and reason")
            equivalent.append(Equivalent(e["at"], e["mutation"], e["reason"]))
        targets[name] = Target(name, sources, list(table["tests"]), equivalent)
    return targets


def target_mutants(target: Target, root: Path) -> list[Mutant]:
    out = []
    for file, qualnames in target.sources.items():
        path = root / file
        if not path.is_file():
            raise MutationError(f"target {target.name}: no source file {file}")
        for m in mutants_of(path, file):
            if not qualnames or any(m.scope == q or m.scope.startswith(q + ".") for q in qualnames):
                out.append(m)
    return out


# --------------------------------------------------------------------------- running


@dataclasses.dataclass
class Outcome:
    mutant: Mutant | None
    status: str  # killed, timeout, survived, uncovered (survived: no test runs its line), error
    seconds: float
    output: str = ""


def _environment(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    # the tree first; this checkout next, for tools.mutant_runner when --root is another tree
    paths = [str(root), str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTEST_ADDOPTS", None)
    return env


def _server(root: Path, target: Target, jobs: int, timeout_factor: float) -> subprocess.Popen[str]:
    tests = [str(root / t) if not t.startswith("/") else t for t in target.tests]
    args = [sys.executable, "-m", "tools.mutant_runner", "--root", str(root), "--jobs", str(jobs),
            "--timeout-factor", str(timeout_factor), "--", *tests]
    return subprocess.Popen(args, cwd=tempfile.gettempdir(), env=_environment(root), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, start_new_session=True)


def run_target(target: Target, mutants: list[Mutant], root: Path, jobs: int, timeout_factor: float,
               progress: Callable[[str], None]) -> "Report":
    """The target's baseline, then every mutant, through one :mod:`tools.mutant_runner` server."""
    proc = _server(root, target, jobs, timeout_factor)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write("".join(f"{m.file} {m.index} {m.lines[0]} {m.lines[1]}\n" for m in mutants))
        proc.stdin.close()
        first = proc.stdout.readline().split()
        if len(first) != 4 or first[0] != "baseline":
            raise MutationError(f"target {target.name}: the runner failed to start ({' '.join(first)})")
        _, status, seconds, output = first
        text = Path(output).read_text(errors="replace")
        Path(output).unlink()
        if status != "survived":
            tail = "\n".join(text.strip().splitlines()[-15:])
            raise MutationError(
                f"baseline failed for target {target.name}: its tests do not pass unmutated "
                f"(pytest {' '.join(target.tests)}):\n{tail}"
            )
        baseline = float(seconds)
        progress(f"{target.name}: baseline {baseline:.1f} s, {len(mutants)} mutants, "
                 f"timeout {baseline * timeout_factor + 10:.0f} s each, {jobs} jobs")
        outcomes = []
        for line in proc.stdout:
            n, status, seconds = line.split()
            outcome = Outcome(mutants[int(n)], status, float(seconds))
            outcomes.append(outcome)
            if status in ("survived", "uncovered", "error"):
                progress(f"  [{len(outcomes)}/{len(mutants)}] {status}: {outcome.mutant}")
            elif len(outcomes) % 20 == 0:
                progress(f"  [{len(outcomes)}/{len(mutants)}]")
        if proc.wait() != 0 or len(outcomes) != len(mutants):
            raise MutationError(f"target {target.name}: the runner stopped after {len(outcomes)} mutants")
    finally:
        if proc.poll() is None:
            proc.terminate()  # the server kills its running children
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    outcomes.sort(key=lambda o: (o.mutant.file, o.mutant.index))  # type: ignore[union-attr]
    return Report(target, outcomes, baseline)


@dataclasses.dataclass
class Report:
    target: Target
    outcomes: list[Outcome]
    baseline: float

    def _named(self, m: Mutant) -> Equivalent | None:
        for e in self.target.equivalent:
            if e.at == m.at and e.mutation == m.change:
                return e
        return None

    @property
    def equivalent(self) -> list[tuple[Outcome, Equivalent]]:
        return [(o, e) for o in self.outcomes if (e := self._named(o.mutant)) is not None]  # type: ignore[arg-type]

    @property
    def counted(self) -> list[Outcome]:
        return [o for o in self.outcomes if self._named(o.mutant) is None]  # type: ignore[arg-type]

    def count(self, *statuses: str) -> int:
        return sum(1 for o in self.counted if o.status in statuses)

    @property
    def score(self) -> float:
        total = len(self.counted)
        return 100.0 * self.count("killed", "timeout") / total if total else 100.0

    def stale(self) -> list[Equivalent]:
        seen = {(o.mutant.at, o.mutant.change) for o in self.outcomes}  # type: ignore[union-attr]
        return [e for e in self.target.equivalent if (e.at, e.mutation) not in seen]


def format_reports(reports: list[Report], filtered: bool = False) -> str:
    lines = [f"{'target':<12} {'killed':>7} {'timeout':>8} {'survived':>9} {'error':>6} {'equiv':>6} "
             f"{'total':>6} {'score':>7}"]
    for r in reports:
        lines.append(
            f"{r.target.name:<12} {r.count('killed', 'timeout'):>7} {r.count('timeout'):>8} "
            f"{r.count('survived', 'uncovered'):>9} {r.count('error'):>6} {len(r.equivalent):>6} {len(r.counted):>6} "
            f"{r.score:>6.1f}%"
        )
    lines.append("(killed includes timeouts: a mutant running past the timeout counts as killed;"
                 " total excludes named equivalents)")
    for r in reports:
        survivors = [o for o in r.counted if o.status in ("survived", "uncovered", "error")]
        notes = {"error": "  [error: mutant did not build]", "uncovered": "  [no test runs this line]"}
        if survivors:
            lines.append(f"\nsurvivors of {r.target.name}:")
            lines += [f"  {o.mutant}{notes.get(o.status, '')}" for o in survivors]
        timeouts = [o for o in r.counted if o.status == "timeout"]
        if timeouts:
            lines.append(f"\ntimeouts of {r.target.name} (counted killed):")
            lines += [f"  {o.mutant}" for o in timeouts]
        if r.equivalent:
            lines.append(f"\nequivalent (named) of {r.target.name}:")
            for o, e in r.equivalent:
                flag = "" if o.status in ("survived", "uncovered") else f"  [but {o.status}: drop this entry]"
                lines.append(f"  {o.mutant}  -- {e.reason}{flag}")
        for e in ([] if filtered else r.stale()):  # with --file, most entries are out of the run
            lines.append(f"\nwarning: {r.target.name}: equivalent entry matches no mutant: {e.at} {e.mutation}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.mutation", description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="*", help="targets to run (default: all of pyproject.toml)")
    parser.add_argument("--jobs", "-j", type=int, default=2, help="parallel test subprocesses (default 2)")
    parser.add_argument("--min-score", type=float, default=90.0,
                        help="exit 1 when a target scores below this percentage (default 90)")
    parser.add_argument("--list", action="store_true", help="print the mutants without running them")
    parser.add_argument("--file", action="append", default=[], metavar="PATH[:LINE]",
                        help="only the mutants of this source file (and line); repeatable")
    parser.add_argument("--timeout-factor", type=float, default=3.0,
                        help="a mutant is killed (timeout) after this many baselines + 10 s (default 3)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the tree to test (default: this checkout)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    try:
        targets = load_targets(root / "pyproject.toml")
        unknown = [t for t in args.targets if t not in targets]
        if unknown:
            raise MutationError(f"unknown targets {unknown}; known: {sorted(targets)}")
        chosen = [targets[t] for t in (args.targets or targets)]
        filters = []
        for f in args.file:
            path, _, line = f.partition(":")
            filters.append((str(Path(path)), int(line) if line else None))
        selected: dict[str, list[Mutant]] = {}
        for target in chosen:
            mutants = target_mutants(target, root)
            if filters:
                mutants = [m for m in mutants if any(m.file == p and (ln is None or m.line == ln) for p, ln in filters)]
            selected[target.name] = mutants
        if filters:
            chosen = [t for t in chosen if selected[t.name]]
            if not chosen:
                raise MutationError(f"no mutants in {args.file} within the chosen targets")
        if args.list:
            for target in chosen:
                print(f"{target.name}: {len(selected[target.name])} mutants")
                for m in selected[target.name]:
                    print(f"  {m}  [{m.kind}]")
            return 0
        started = time.monotonic()
        reports = [run_target(t, selected[t.name], root, args.jobs, args.timeout_factor,
                              lambda s: print(s, file=sys.stderr, flush=True)) for t in chosen]
    except MutationError as exc:
        print(f"mutation: {exc}", file=sys.stderr)
        return 2
    print(format_reports(reports, filtered=bool(filters)))
    print(f"\n{sum(len(r.outcomes) for r in reports)} mutants in {time.monotonic() - started:.0f} s")
    low = [r.target.name for r in reports if r.score < args.min_score]
    if low:
        print(f"below --min-score {args.min_score:g}%: {', '.join(low)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
