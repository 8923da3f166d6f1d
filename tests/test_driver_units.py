"""Driver pieces outside the conformance suite: path rules, walk order, factory and params,
and what only the filesystem driver promises (OS paths for sendfile, in-place uploads)."""

from __future__ import annotations

import logging
import os
import time

import pytest

from drivers.base import DriverConfigError, InvalidPath, check_dir, check_path, is_valid_path, walk_key
from drivers.factory import DRIVERS, create_driver
from drivers.filesystem import FilesystemDriver
from drivers.inmemory import InMemoryDriver


@pytest.mark.parametrize("path", ["/a", "/a/b", "/A-Z.0_9", "/...", "/.a", "/a../b"])
def test_valid_paths(path: str) -> None:
    assert check_path("x", path) == path and is_valid_path(path)


@pytest.mark.parametrize("path", ["", "/", "a", "//a", "/a/", "/a/../b", "/a b", "/a/./b", "/a\n", "/a\x00", "/é", None])
def test_invalid_paths(path: object) -> None:
    with pytest.raises(InvalidPath, match="^x: invalid path"):
        check_path("x", path)  # type: ignore[arg-type]
    assert not is_valid_path(path)


def test_check_dir_accepts_root_only_extra() -> None:
    assert check_dir("x", "/") == "/"
    with pytest.raises(InvalidPath):
        check_dir("x", "//")


def test_walk_key_keeps_subtrees_together() -> None:
    paths = ["/a-x", "/a/b", "/a", "/a/b/c", "/b", "/a.b"]
    assert sorted(paths, key=walk_key) == ["/a", "/a/b", "/a/b/c", "/a-x", "/a.b", "/b"]


def test_factory_builds_each_driver(tmp_path) -> None:
    fs = create_driver("filesystem", {"rootdirectory": str(tmp_path), "maxthreads": "25"})
    assert isinstance(fs, FilesystemDriver) and fs.root == str(tmp_path)
    assert isinstance(create_driver("inmemory", None), InMemoryDriver)
    assert set(DRIVERS) >= {"filesystem", "inmemory"}


def test_filesystem_default_root() -> None:
    assert FilesystemDriver().root == "/var/lib/registry"  # distribution's default


def test_each_inmemory_instance_is_separate_unless_shared() -> None:
    a, b = InMemoryDriver(), InMemoryDriver()
    assert a.root != b.root
    assert InMemoryDriver("/shared").root == create_driver("inmemory", {"rootdirectory": "/shared"}).root


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("nosuch", {}, "unknown storage driver 'nosuch'"),
        ("filesystem", {"rootdirectory": 5}, "storage.filesystem.rootdirectory: expected a string"),
        ("filesystem", {"rootdirectory": "/etc/hostname/root"}, "/etc/hostname is not a directory"),
        ("filesystem", {"maxthreads": "many"}, "storage.filesystem.maxthreads: expected an integer"),
        ("filesystem", {"maxthreads": 0}, "must be at least 1"),
        ("filesystem", ["rootdirectory"], "expected a mapping"),
        ("inmemory", {"rootdirectory": "no/slash"}, "storage.inmemory.rootdirectory"),
    ],
)
def test_factory_rejects_bad_config(name: str, params: object, message: str) -> None:
    with pytest.raises(DriverConfigError, match=message) as info:
        create_driver(name, params)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


def test_factory_warns_about_unknown_keys(tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="registry.config"):
        create_driver("filesystem", {"rootdirectory": str(tmp_path), "colour": "blue", "maxthread": 4})
    assert "unknown key storage.filesystem.colour ignored" in caplog.text
    assert "unknown key storage.filesystem.maxthread ignored (did you mean storage.filesystem.maxthreads?)" in caplog.text


async def test_filesystem_local_path_and_in_place_upload(tmp_path) -> None:
    driver = FilesystemDriver(str(tmp_path))
    writer = await driver.writer("/repo/_uploads/u1/data")
    await writer.write(b"x" * 10)
    await writer.close()  # uncommitted: the bytes are in the upload's data file already
    local = driver.local_path("/repo/_uploads/u1/data")
    assert local == os.path.join(str(tmp_path), "repo/_uploads/u1/data")
    with open(local, "rb") as f:
        assert f.read() == b"x" * 10
    await driver.put_content("/repo/link", b"sha256:abc")
    assert sorted(os.listdir(tmp_path / "repo")) == ["_uploads", "link"]  # no temporary files left
    await driver.delete("/repo")
    assert os.listdir(tmp_path) == []
    await driver.close()


async def test_filesystem_lists_hide_foreign_names(tmp_path) -> None:
    driver = FilesystemDriver(str(tmp_path))
    (tmp_path / "lost+found").mkdir()
    (tmp_path / "f~tmp").write_bytes(b"")
    await driver.put_content("/ok", b"1")
    assert await driver.list("/") == ["/ok"]
    await driver.close()


async def test_filesystem_prune_is_not_held_by_a_crashs_temporary_file(tmp_path) -> None:
    """A small write killed before its rename leaves ``<name>~<hex>~tmp`` beside its target; a
    directory holding only such files is empty for readers, so deleting its last real file
    removes it (and its emptied parents), as it would without the leftover. A temporary
    directory (a directory tree being built) keeps its parent."""
    driver = FilesystemDriver(str(tmp_path))
    await driver.put_content("/r/tags/t/current/link", b"old")
    await driver.put_content("/r/tags/u/current/link", b"other")
    current = tmp_path / "r/tags/t/current"
    leftover = current / f"link~{'a' * 32}~tmp"
    leftover.write_bytes(b"new")  # what a kill -9 leaves
    fresh = current / f"link~{'c' * 32}~tmp"
    fresh.write_bytes(b"in flight")  # what a live writer holds for a moment: it keeps the directory
    await driver.delete("/r/tags/t/current/link")
    assert leftover.exists() and fresh.exists() and await driver.list("/r/tags") == ["/r/tags/t", "/r/tags/u"]
    await driver.put_content("/r/tags/t/current/link", b"old")
    fresh.unlink()
    os.utime(leftover, (time.time() - 60, time.time() - 60))  # the crash was a minute ago
    await driver.delete("/r/tags/t/current/link")
    assert not (tmp_path / "r/tags/t").exists()
    assert await driver.list("/r/tags") == ["/r/tags/u"]
    building = tmp_path / f"r/tags/u/current~{'b' * 32}~tmp"
    building.mkdir()
    await driver.delete("/r/tags/u/current/link")
    assert building.exists() and await driver.list("/r/tags") == ["/r/tags/u"]  # left alone: not a file
    await driver.close()


# --- the filesystem's put_contents: one pass, fsyncs together, renames in stage order ---------


def _leftovers(root) -> list[str]:
    return [str(p) for p in root.rglob("*~*")]


async def test_filesystem_put_contents_fsyncs_durable_files_and_their_directories(tmp_path, monkeypatch) -> None:
    """The durable files and the directories they were renamed into are fsynced (before the call
    returns); a non-durable file is not; a new directory holding two files of one stage is
    renamed into place once, with both."""
    from drivers import filesystem
    from drivers.base import ContentWrite

    driver = FilesystemDriver(str(tmp_path))
    await driver.put_content("/repo/tags/keep", b"k")
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    renamed: list[str] = []
    real_rename = os.rename

    def rename(src: str, dst: str) -> None:
        renamed.append(dst)
        real_rename(src, dst)

    monkeypatch.setattr(filesystem.os, "fsync", fsync)
    monkeypatch.setattr(filesystem.os, "rename", rename)
    await driver.put_contents([
        [ContentWrite("/repo/index/entry", b"e", durable=False), ContentWrite("/blobs/ab/data", b"d")],
        [ContentWrite("/repo/rev/link", b"r")],
        [ContentWrite("/repo/tags/t/current/link", b"c"), ContentWrite("/repo/tags/t/index/x/link", b"i")],
    ])
    monkeypatch.undo()
    root = str(tmp_path)
    # the order of visibility: the stages, in order; the new tag directory once, with both links
    assert renamed == [f"{root}/repo/index", f"{root}/blobs", f"{root}/repo/rev", f"{root}/repo/tags/t"]
    files = [p for p in synced if "~" in p]
    assert not any("entry" in p for p in files)  # not durable: no fsync
    assert sorted(p.rsplit("/", 1)[-1] for p in files) == ["data", "link", "link", "link"]
    directories = {p for p in synced if "~" not in p}
    assert directories == {root, f"{root}/repo", f"{root}/repo/tags"}  # where the durable ones went
    assert await driver.get_content("/repo/tags/t/index/x/link") == b"i"
    assert await driver.get_content("/repo/index/entry") == b"e"
    assert _leftovers(tmp_path) == []


async def test_filesystem_put_contents_reports_what_was_written_when_a_rename_fails(tmp_path, monkeypatch) -> None:
    """A failure among the renames raises the driver's error with ``visible`` naming the files
    already in place (the store puts tags back from it), and leaves no temporary entry."""
    import errno

    from drivers import filesystem
    from drivers.base import ContentWrite, StorageError

    driver = FilesystemDriver(str(tmp_path))
    await driver.put_content("/r/tags/b/current/link", b"old")
    real_rename = os.rename

    def rename(src: str, dst: str) -> None:
        if dst.endswith("/tags/c"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_rename(src, dst)

    monkeypatch.setattr(filesystem.os, "rename", rename)
    with pytest.raises(StorageError) as caught:
        await driver.put_contents([
            [ContentWrite("/r/rev/link", b"r")],
            [ContentWrite("/r/tags/b/current/link", b"new"), ContentWrite("/r/tags/c/current/link", b"new"),
             ContentWrite("/r/tags/d/current/link", b"new")],
        ])
    monkeypatch.undo()
    assert "No space left" in str(caught.value)
    assert caught.value.visible == frozenset({"/r/rev/link", "/r/tags/b/current/link"})
    assert await driver.list("/r/tags") == ["/r/tags/b"]
    assert _leftovers(tmp_path) == []


async def test_filesystem_put_contents_into_a_directory_of_an_earlier_stage(tmp_path, monkeypatch) -> None:
    """A file whose new directory an earlier stage of the same call creates (a new repository's
    revision link, then its tag) waits for that stage's rename: still in stage order."""
    from drivers import filesystem
    from drivers.base import ContentWrite

    driver = FilesystemDriver(str(tmp_path))
    renamed: list[str] = []
    real_rename = os.rename

    def rename(src: str, dst: str) -> None:
        renamed.append(dst.removeprefix(str(tmp_path)))
        real_rename(src, dst)

    monkeypatch.setattr(filesystem.os, "rename", rename)
    await driver.put_contents([[ContentWrite("/new/_manifests/revisions/x/link", b"r")],
                               [ContentWrite("/new/_manifests/tags/t/current/link", b"c")]])
    monkeypatch.undo()
    assert renamed == ["/new", "/new/_manifests/tags"]
    assert await driver.get_content("/new/_manifests/tags/t/current/link") == b"c"
    assert _leftovers(tmp_path) == []


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def test_filesystem_put_contents_failure_while_writing_publishes_nothing(tmp_path) -> None:
    """A file that cannot be written (its parent is a file) in a later stage fails the whole call
    before any rename: nothing of any stage is visible (an overwrite keeps the old content, a new
    directory holding two files of a stage does not appear), ``visible`` is empty, no temporary
    entry is left and no descriptor stays open."""
    from drivers.base import ContentWrite, StorageError

    driver = FilesystemDriver(str(tmp_path))
    await driver.put_content("/r/tags/t/current/link", b"old")
    await driver.put_content("/r/plain", b"a file")
    before = _open_fds()
    with pytest.raises(StorageError, match="a parent is a file") as caught:
        await driver.put_contents([
            [ContentWrite("/blobs/ab/data", b"d"), ContentWrite("/r/new/one", b"1"),
             ContentWrite("/r/new/two", b"2", durable=False)],
            [ContentWrite("/r/tags/t/current/link", b"new"), ContentWrite("/r/plain/child", b"x")],
        ])
    assert caught.value.visible == frozenset()
    assert await driver.get_content("/r/tags/t/current/link") == b"old"
    assert await driver.list("/") == ["/r"]
    assert await driver.list("/r") == ["/r/plain", "/r/tags"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # not even a hidden entry
    assert _leftovers(tmp_path) == []
    assert _open_fds() == before
    await driver.close()


async def test_filesystem_put_contents_failed_fsync_publishes_nothing(tmp_path, monkeypatch) -> None:
    """An fsync that fails (EIO: the disk lost the data) means no file of the call is renamed into
    place: nothing was answered durable, nothing is visible, every temporary file is removed and
    every descriptor closed, though the other fsyncs of the batch ran."""
    import errno

    from drivers import filesystem
    from drivers.base import ContentWrite, StorageError

    driver = FilesystemDriver(str(tmp_path))
    await driver.put_content("/r/tags/t/current/link", b"old")
    real_fsync = os.fsync
    calls: list[int] = []

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    renamed: list[str] = []
    real_rename = os.rename

    def rename(src: str, dst: str) -> None:
        renamed.append(dst)
        real_rename(src, dst)

    before = _open_fds()
    monkeypatch.setattr(filesystem.os, "fsync", fsync)
    monkeypatch.setattr(filesystem.os, "rename", rename)
    with pytest.raises(StorageError) as caught:
        await driver.put_contents([
            [ContentWrite("/blobs/ab/data", b"d"), ContentWrite("/r/rev/link", b"r")],
            [ContentWrite("/r/tags/t/current/link", b"new"), ContentWrite("/r/tags/u/current/link", b"new")],
        ])
    monkeypatch.undo()
    assert "Input/output error" in str(caught.value)
    assert len(calls) == 4  # every durable file's fsync was tried: none is left running
    assert renamed == [] and caught.value.visible == frozenset()
    assert await driver.get_content("/r/tags/t/current/link") == b"old"
    assert await driver.list("/r/tags") == ["/r/tags/t"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
    assert _leftovers(tmp_path) == []
    assert _open_fds() == before
    await driver.close()


async def test_filesystem_put_contents_failure_after_an_earlier_stage_was_published(tmp_path) -> None:
    """When a stage writes into a directory an earlier stage creates, the earlier stages are
    renamed first; a failure after that names exactly those files in ``visible`` (they are whole
    and readable) and nothing of the failing stage appears."""
    from drivers.base import ContentWrite, StorageError

    driver = FilesystemDriver(str(tmp_path))
    await driver.put_content("/plain", b"a file")
    with pytest.raises(StorageError, match="a parent is a file") as caught:
        await driver.put_contents([
            [ContentWrite("/new/_manifests/revisions/x/link", b"r"), ContentWrite("/blobs/ab/data", b"d")],
            [ContentWrite("/new/_manifests/tags/t/current/link", b"c"), ContentWrite("/plain/child", b"x")],
        ])
    assert caught.value.visible == frozenset({"/new/_manifests/revisions/x/link", "/blobs/ab/data"})
    assert await driver.get_content("/new/_manifests/revisions/x/link") == b"r"
    assert await driver.get_content("/blobs/ab/data") == b"d"
    assert await driver.list("/new/_manifests") == ["/new/_manifests/revisions"]
    assert _leftovers(tmp_path) == []
    await driver.close()


_CRASHING_BATCH = """
import asyncio, sys
from drivers.base import ContentWrite
from drivers.filesystem import FilesystemDriver

async def main() -> None:
    driver = FilesystemDriver(sys.argv[1])
    await driver.put_contents([
        [ContentWrite("/r/_layers/ab/link", b"l"), ContentWrite("/r/_index/e", b"e", durable=False)],
        [ContentWrite("/r/_manifests/revisions/x/link", b"r")],
        [ContentWrite("/r/_manifests/tags/t/current/link", b"c"), ContentWrite("/r/_manifests/tags/u/current/link", b"c")],
    ])

asyncio.run(main())
"""


async def test_filesystem_put_contents_killed_between_renames(tmp_path) -> None:
    """kill -9 in the middle of the renames (before the first tag's): the stages before it are in
    place and whole, nothing of its stage is visible to listings or reads, and the temporary
    entries the crash left are hidden (a later listing removes them once they are old)."""
    import subprocess
    import sys

    from drivers import crashpoints

    root = tmp_path / "root"
    root.mkdir()
    env = {**os.environ, crashpoints.ENV: "fs.put.before_rename@/tags/t/"}
    done = subprocess.run([sys.executable, "-c", _CRASHING_BATCH, str(root)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == -9, done.stderr
    driver = FilesystemDriver(str(root))
    assert await driver.get_content("/r/_layers/ab/link") == b"l"
    assert await driver.get_content("/r/_index/e") == b"e"
    assert await driver.get_content("/r/_manifests/revisions/x/link") == b"r"
    assert await driver.list("/r/_manifests") == ["/r/_manifests/revisions"]
    assert await driver.list("/r") == ["/r/_index", "/r/_layers", "/r/_manifests"]
    left = _leftovers(root)
    assert left and all(p.endswith("~tmp") for p in left)  # the unrenamed stage, hidden
    await driver.close()
