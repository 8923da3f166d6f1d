"""tools/mutation.py on a tiny module of its own: mutants found, killed and surviving ones told apart."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tools import mutation

MODULE = '''\
"""A docstring is never mutated."""
import logging
import re

log = logging.getLogger(__name__)
WORD = re.compile(r"^[a-z]+$")


def is_small(n: int) -> bool:
    log.info("checking %s", n)
    return n < 10


def shout(text):
    if not WORD.match(text):
        raise ValueError("not a word")
    return text.upper()
'''

TESTS = '''\
from tinymod import is_small, shout


def test_is_small():
    assert is_small(3) and not is_small(10)


def test_shout():
    assert shout("abc") == "ABC"
'''

PYPROJECT = '''\
[tool.mutation.targets.tiny]
sources = ["tinymod.py"]
tests = ["test_tiny.py"]
equivalent = [
    {at = "tinymod.py:17", mutation = "return text.upper() -> return None", reason = "test of the tool"},
]
'''


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "tinymod.py").write_text(MODULE)
    (tmp_path / "test_tiny.py").write_text(TESTS)
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    return tmp_path


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*")
            if p.is_file()} | {str(p.relative_to(root)): (b"dir", 0) for p in root.rglob("*") if p.is_dir()}


def test_mutants_are_located_and_noise_is_skipped(tree: Path) -> None:
    mutants = mutation.mutants_of(tree / "tinymod.py", "tinymod.py")
    changes = {(m.line, m.col, m.change) for m in mutants}
    assert (11, 12, "n < 10 -> n <= 10") in changes
    assert (11, 16, "10 -> 11") in changes
    assert (16, 9, "raise ValueError('not a word') -> pass") in changes
    assert (15, 8, "not WORD.match(text) -> WORD.match(text)") in changes
    assert (6, 19, "'^[a-z]+$' -> '[a-z]+$'") in changes
    assert (6, 19, "'^[a-z]+$' -> '^[a-z]+'") in changes
    assert (17, 5, "return text.upper() -> return None") in changes
    texts = " ".join(m.change for m in mutants)
    # the docstring, the log call, the exception's message and the annotations are left alone
    assert "docstring" not in texts and "checking" not in texts and "not a word'XX" not in texts
    assert "int" not in texts and "bool" not in texts
    # a `not` condition is not negated twice (removing the `not` is that mutant)
    assert not any(m.kind == "if" and m.line == 15 for m in mutants)


def test_arithmetic_operators_are_swapped(tmp_path: Path) -> None:
    (tmp_path / "arith.py").write_text("def span(start, end, total):\n"
                                       "    total += end - start + 1\n"
                                       "    return -total * 2 // 3 % 5 ** 2 << 1\n")
    changes = {(m.line, m.change) for m in mutation.mutants_of(tmp_path / "arith.py", "arith.py")
               if m.kind == "arithmetic"}
    assert (2, "total += end - start + 1 -> total -= end - start + 1") in changes
    assert (2, "end - start + 1 -> end - start - 1") in changes
    assert (2, "end - start -> end + start") in changes
    assert (3, "-total -> total") in changes
    assert (3, "-total * 2 -> -total / 2") in changes
    assert (3, "-total * 2 // 3 -> -total * 2 / 3") in changes
    assert (3, "-total * 2 // 3 % 5 ** 2 -> -total * 2 // 3 / 5 ** 2") in changes
    assert (3, "5 ** 2 -> 5 * 2") in changes
    assert (3, "-total * 2 // 3 % 5 ** 2 << 1 -> -total * 2 // 3 % 5 ** 2 >> 1") in changes


def test_a_mutated_code_object_changes_behaviour_without_touching_the_file(tree: Path) -> None:
    mutants = mutation.mutants_of(tree / "tinymod.py", "tinymod.py")
    flip = next(m for m in mutants if m.change == "n < 10 -> n <= 10")
    before = _snapshot(tree)
    namespace: dict = {}
    exec(mutation.mutated_code(tree / "tinymod.py", flip.index), namespace)
    assert namespace["is_small"](10) is True
    assert _snapshot(tree) == before


def test_killed_and_surviving_mutants_are_counted_and_the_tree_is_untouched(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tree / "test_tiny.py").write_text(TESTS.replace(" and not is_small(10)", ""))
    before = _snapshot(tree)
    # line 11: `n < 10` flipped and 10 -> 11 survive (nothing tests 10), return None is killed;
    # line 17: return None is named equivalent in the config, though it is killed (the report says so)
    status = mutation.main(["--root", str(tree), "--file", "tinymod.py:11", "--file", "tinymod.py:17",
                            "--jobs", "2"])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("tiny "))
    # killed, timeout, survived, error, equivalent, total
    assert row.split()[1:7] == ["1", "0", "2", "0", "1", "3"], out
    survivors = out.split("survivors of tiny:")[1].split("\n\n")[0].split("\n")[1:]
    assert [s.strip() for s in survivors] == ["tinymod.py:11:12: n < 10 -> n <= 10", "tinymod.py:11:16: 10 -> 11"]
    assert "tinymod.py:17:5: return text.upper() -> return None  -- test of the tool  [but killed" in out
    assert status == 1 and "below --min-score 90%: tiny" in out  # 1 of 3 killed
    assert _snapshot(tree) == before  # no __pycache__, .pytest_cache, .hypothesis or edits


def test_module_level_code_of_a_lazily_imported_module_is_run_by_every_test(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first test imports the module (and runs its module-level line); only the second test
    tells its constant's mutant apart: the mutant must run both, or it survives unseen."""
    (tmp_path / "lazymod.py").write_text("LIMIT = 10\n\n\ndef under(n):\n    return n < LIMIT\n")
    (tmp_path / "test_lazy.py").write_text(textwrap.dedent('''\
        def test_first_importer():
            from lazymod import under
            assert under(3)


        def test_later_user():
            from lazymod import under
            assert not under(10)
        '''))
    (tmp_path / "pyproject.toml").write_text(
        '[tool.mutation.targets.lazy]\nsources = ["lazymod.py"]\ntests = ["test_lazy.py"]\n')
    mutation.main(["--root", str(tmp_path), "--file", "lazymod.py:1", "--jobs", "1"])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("lazy "))
    assert row.split()[1:7] == ["1", "0", "0", "0", "0", "1"], out  # 10 -> 11 killed by the later test


def test_a_failing_baseline_aborts(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tree / "test_tiny.py").write_text(TESTS + "\n\ndef test_broken():\n    assert False\n")
    assert mutation.main(["--root", str(tree), "--file", "tinymod.py:11"]) == 2
    assert "baseline failed for target tiny" in capsys.readouterr().err


def test_the_project_targets_load_and_list() -> None:
    targets = mutation.load_targets(mutation.ROOT / "pyproject.toml")
    assert {"grammar", "manifests", "digest", "auth"} <= set(targets)
    for target in targets.values():
        assert mutation.target_mutants(target, mutation.ROOT)
        for test in target.tests:
            assert (mutation.ROOT / test.split("::")[0]).is_file(), test
