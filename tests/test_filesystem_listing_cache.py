"""The filesystem driver's listing cache (drivers/filesystem.py): a remembered listing is used
only while the directory is unchanged, whoever changes it (this process or another)."""

from __future__ import annotations

import os
import time

from drivers.filesystem import FilesystemDriver


def _age(path: str, seconds: float = 60.0) -> None:
    """Make a directory's mtime old enough for its listing to be remembered."""
    past = time.time() - seconds
    os.utime(path, (past, past))


async def test_listing_follows_changes_made_behind_the_drivers_back(tmp_path) -> None:
    driver = FilesystemDriver(str(tmp_path))
    tags = tmp_path / "r" / "tags"
    for name in ("a", "b"):
        (tags / name).mkdir(parents=True)
        (tags / name / "link").write_text("x")
    _age(str(tags))
    assert await driver.list("/r/tags") == ["/r/tags/a", "/r/tags/b"]
    assert await driver.list("/r/tags") == ["/r/tags/a", "/r/tags/b"]  # now from the cache
    (tags / "c").mkdir()  # another process adds an entry: the directory's mtime moves on
    (tags / "c" / "link").write_text("x")
    assert await driver.list("/r/tags") == ["/r/tags/a", "/r/tags/b", "/r/tags/c"]
    _age(str(tags))
    assert await driver.list("/r/tags") == ["/r/tags/a", "/r/tags/b", "/r/tags/c"]
    await driver.delete("/r/tags/a")
    assert await driver.list("/r/tags") == ["/r/tags/b", "/r/tags/c"]
    await driver.close()


async def test_a_fresh_directory_is_not_remembered(tmp_path) -> None:
    """Within the same mtime tick a second change could keep the mtime: such listings are re-read."""
    driver = FilesystemDriver(str(tmp_path))
    (tmp_path / "d" / "x").mkdir(parents=True)
    (tmp_path / "d" / "x" / "f").write_text("1")
    assert await driver.list("/d") == ["/d/x"]
    assert driver._listings == {}
    mtime = os.stat(tmp_path / "d").st_mtime_ns
    (tmp_path / "d" / "y").mkdir()
    (tmp_path / "d" / "y" / "f").write_text("1")
    os.utime(tmp_path / "d", ns=(mtime, mtime))  # the worst case: same timestamp after the change
    assert await driver.list("/d") == ["/d/x", "/d/y"]
    await driver.close()


async def test_the_returned_list_is_the_callers_own(tmp_path) -> None:
    driver = FilesystemDriver(str(tmp_path))
    (tmp_path / "d" / "x").mkdir(parents=True)
    (tmp_path / "d" / "x" / "f").write_text("1")
    _age(str(tmp_path / "d"))
    first = await driver.list("/d")
    first.append("/d/zzz")
    assert await driver.list("/d") == ["/d/x"]
    await driver.close()
