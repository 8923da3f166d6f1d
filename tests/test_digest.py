"""Resumable digests: state exported mid-stream and restored elsewhere gives hashlib's digest."""

from __future__ import annotations

import hashlib
import os

import pytest

from drivers.digest import ResumableHash

SIZES = [0, 1, 63, 64, 65, 127, 128, 129, 1000, 100_003]


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
@pytest.mark.parametrize("size", SIZES)
def test_state_round_trip_at_any_split(algorithm: str, size: int) -> None:
    data = os.urandom(size)
    for cut in sorted({0, size // 3, size}):
        first = ResumableHash(algorithm)
        first.update(data[:cut])
        assert first.hexdigest() == hashlib.new(algorithm, data[:cut]).hexdigest()
        resumed = ResumableHash.restore(algorithm, first.state())
        assert resumed.size == cut
        resumed.update(memoryview(bytearray(data[cut:])))  # writable buffers take the no-copy path
        assert resumed.digest() == f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def test_state_is_gos_binary_marshal_format() -> None:
    h = ResumableHash("sha256")
    h.update(b"abc")
    state = h.state()
    assert state is not None and len(state) == 108 and state[:4] == b"sha\x03"
    assert int.from_bytes(state[-8:], "big") == 3  # total length in bytes, as Go writes it
    assert state[36:39] == b"abc" and state[39:100] == bytes(61)  # pending block, zero padded
    assert len(ResumableHash("sha512").state()) == 204


@pytest.mark.parametrize(
    ("algorithm", "state"),
    [("sha256", b""), ("sha256", b"sha\x07" + bytes(104)), ("sha512", b"sha\x03" + bytes(200)),
     ("sha256", b"xxx\x03" + bytes(104))],
)
def test_foreign_or_damaged_state_is_refused(algorithm: str, state: bytes) -> None:
    with pytest.raises(ValueError):
        ResumableHash.restore(algorithm, state)


def test_unsupported_algorithm() -> None:
    with pytest.raises(ValueError):
        ResumableHash("md5")
