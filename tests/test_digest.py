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


def test_default_algorithm_is_sha256() -> None:
    h = ResumableHash()
    h.update(b"abc")
    assert h.algorithm == "sha256" and h.digest() == "sha256:" + hashlib.sha256(b"abc").hexdigest()


@pytest.mark.parametrize(("algorithm", "length"), [("sha256", 32), ("sha512", 64)])
def test_context_struct_matches_openssl(algorithm: str, length: int) -> None:
    """The ctypes struct mirrors OpenSSL's SHA256_CTX/SHA512_CTX: the last field, which Init sets
    to the digest length, reads back right (a wrong layout would read other bytes there)."""
    h = ResumableHash(algorithm)
    assert h._ctx.md_len == length
    h.update(os.urandom(300))
    resumed = ResumableHash.restore(algorithm, h.state())
    assert resumed._ctx.md_len == length and resumed._ctx.num == 300 % (64 if algorithm == "sha256" else 128)


# ------------------------------------------------------------------------------------------------
# an independent SHA-2 (FIPS 180-4) in pure Python: the oracle for states no test can afford to
# reach with real data (lengths past 512 MiB, 2**61 bytes...). Constants are derived, not copied.


def _iroot(n: int, k: int) -> int:
    """floor(n ** (1/k)) for big integers."""
    x = 1 << -(-n.bit_length() // k)
    while True:
        y = ((k - 1) * x + n // x ** (k - 1)) // k
        if y >= x:
            return x
        x = y


def _primes(count: int) -> list[int]:
    out: list[int] = []
    n = 2
    while len(out) < count:
        if all(n % p for p in out):
            out.append(n)
        n += 1
    return out


class _Sha2:
    """Compression and padding of SHA-256 (bits=32) or SHA-512 (bits=64)."""

    def __init__(self, algorithm: str) -> None:
        self.w = 32 if algorithm == "sha256" else 64
        self.rounds = 64 if algorithm == "sha256" else 80
        self.block = 64 if algorithm == "sha256" else 128
        self.mask = (1 << self.w) - 1
        primes = _primes(self.rounds)
        self.k = [_iroot(p << (3 * self.w), 3) & self.mask for p in primes]
        self.iv = [_iroot(p << (2 * self.w), 2) & self.mask for p in primes[:8]]
        self.rot = ((2, 13, 22), (6, 11, 25), (7, 18, 3), (17, 19, 10)) if self.w == 32 else \
            ((28, 34, 39), (14, 18, 41), (1, 8, 7), (19, 61, 6))

    def _r(self, x: int, n: int) -> int:
        return ((x >> n) | (x << (self.w - n))) & self.mask

    def compress(self, h: list[int], block: bytes) -> list[int]:
        m, (a0, a1, s0, s1) = self.mask, self.rot
        w = [int.from_bytes(block[i:i + self.w // 8], "big") for i in range(0, self.block, self.w // 8)]
        for t in range(16, self.rounds):
            x, y = w[t - 15], w[t - 2]
            sig0 = self._r(x, s0[0]) ^ self._r(x, s0[1]) ^ (x >> s0[2])
            sig1 = self._r(y, s1[0]) ^ self._r(y, s1[1]) ^ (y >> s1[2])
            w.append((w[t - 16] + sig0 + w[t - 7] + sig1) & m)
        a, b, c, d, e, f, g, hh = h
        for t in range(self.rounds):
            t1 = (hh + (self._r(e, a1[0]) ^ self._r(e, a1[1]) ^ self._r(e, a1[2])) + ((e & f) ^ (~e & g))
                  + self.k[t] + w[t]) & m
            t2 = ((self._r(a, a0[0]) ^ self._r(a, a0[1]) ^ self._r(a, a0[2])) + ((a & b) ^ (a & c) ^ (b & c))) & m
            a, b, c, d, e, f, g, hh = (t1 + t2) & m, a, b, c, (d + t1) & m, e, f, g
        return [(x + y) & m for x, y in zip(h, (a, b, c, d, e, f, g, hh))]

    def finish(self, h: list[int], pending: bytes, total: int) -> str:
        """The digest of a message of ``total`` bytes whose state is ``h`` with ``pending`` unhashed."""
        length_bytes = 2 * self.w // 8
        tail = pending + b"\x80"
        tail += b"\x00" * (-(len(tail) + length_bytes) % self.block)
        tail += ((total * 8) % (1 << (8 * length_bytes))).to_bytes(length_bytes, "big")
        for i in range(0, len(tail), self.block):
            h = self.compress(h, tail[i:i + self.block])
        return b"".join(x.to_bytes(self.w // 8, "big") for x in h).hex()


ORACLE = {alg: _Sha2(alg) for alg in ("sha256", "sha512")}


def _words(algorithm: str, state: bytes) -> list[int]:
    size = 4 if algorithm == "sha256" else 8
    return [int.from_bytes(state[4 + i * size:4 + (i + 1) * size], "big") for i in range(8)]


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_the_oracle_is_sha2(algorithm: str) -> None:
    oracle = ORACLE[algorithm]
    for size in (0, 55, 56, 111, 112, 200):
        data = os.urandom(size)
        h = oracle.iv
        full = size - size % oracle.block
        for i in range(0, full, oracle.block):
            h = oracle.compress(h, data[i:i + oracle.block])
        assert oracle.finish(h, data[full:], size) == hashlib.new(algorithm, data).hexdigest()


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_state_layout_is_exact(algorithm: str) -> None:
    """magic, the eight chaining words big-endian, the pending bytes zero padded, the length."""
    oracle = ORACLE[algorithm]
    block = oracle.block
    data = os.urandom(block + 5)
    h = ResumableHash(algorithm)
    h.update(data)
    state = h.state()
    word = oracle.w // 8
    assert state is not None and len(state) == 4 + 8 * word + block + 8
    assert state[:4] == {"sha256": b"sha\x03", "sha512": b"sha\x07"}[algorithm]
    assert _words(algorithm, state) == oracle.compress(oracle.iv, data[:block])
    assert state[4 + 8 * word:4 + 8 * word + block] == data[block:] + bytes(block - 5)
    assert state[-8:] == (block + 5).to_bytes(8, "big")
    assert ResumableHash.restore(algorithm, state).state() == state


# lengths around the module's boundaries: the 64-bit length in bytes becomes a bit count split into
# two C words (sha256: 32-bit Nl/Nh, so 2**29 bytes = 512 MiB carries into Nh; 2**25 bytes = 32 MiB
# is 2**28 bits); sha512's words are 64-bit; a sha256 bit count wraps at 2**61 bytes
BOUNDARY_SIZES = [2**25 - 1, 2**25, 2**25 + 1, 2**28 + 3, 2**29 - 1, 2**29, 2**29 + 1, 2**32 + 7,
                  2**53 + 1, 2**56 + 9, 2**61 - 1, 2**61, 2**61 + 1, 2**64 - 2**20]


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
@pytest.mark.parametrize("total", BOUNDARY_SIZES)
def test_restored_state_of_any_length_finishes_as_sha2(algorithm: str, total: int) -> None:
    """A state claiming ``total`` bytes (the chaining words of real data with the same pending part)
    resumes, takes more data and finishes exactly as SHA-2 of a message of that length."""
    oracle = ORACLE[algorithm]
    block = oracle.block
    pending = total % block
    data = os.urandom(block + pending)
    h = ResumableHash(algorithm)
    h.update(data)
    state = h.state()
    assert state is not None
    forged = state[:-8] + total.to_bytes(8, "big")
    resumed = ResumableHash.restore(algorithm, forged)
    assert resumed.size == total and resumed.state() == forged
    words = _words(algorithm, state)
    assert resumed.hexdigest() == oracle.finish(words, data[block:], total)
    more = os.urandom(block + 3)
    resumed.update(more)
    tail = data[block:] + more
    cut = len(tail) - len(tail) % block
    for i in range(0, cut, block):
        words = oracle.compress(words, tail[i:i + block])
    assert resumed.hexdigest() == oracle.finish(words, tail[cut:], total + len(more))
    assert int.from_bytes(resumed.state()[-8:], "big") == total + len(more)


def _stream(total: int, chunk: int = 1 << 20):
    """Deterministic, varying chunks (never the whole stream in memory)."""
    base = os.urandom(chunk)
    sent, i = 0, 0
    while sent < total:
        n = min(chunk, total - sent)
        rot = (i * 7919) % chunk
        piece = (base[rot:] + base[:rot])[:n]
        yield piece
        sent += n
        i += 1


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_real_state_saved_past_32_mib_resumes(algorithm: str) -> None:
    """Real data past 2**25 bytes (2**28 bits). 512 MiB of real data would take seconds; the states
    past 512 MiB, where sha256's bit count carries into its high word, are pinned by
    test_restored_state_of_any_length_finishes_as_sha2 against the oracle instead."""
    saved_at = 2**25 + 1
    ours, reference = ResumableHash(algorithm), hashlib.new(algorithm)
    for piece in _stream(saved_at):
        ours.update(piece)
        reference.update(piece)
    state = ours.state()
    assert ours.hexdigest() == reference.hexdigest()
    resumed = ResumableHash.restore(algorithm, state)
    assert resumed.size == saved_at
    assert resumed.hexdigest() == reference.hexdigest()
    tail = os.urandom(1000)
    resumed.update(tail)
    reference.update(tail)
    assert resumed.digest() == f"{algorithm}:{reference.hexdigest()}"


# ------------------------------------------------------------------------------------------------
# every kind of buffer, empty and many updates


def _buffers(data: bytes) -> dict[str, object]:
    return {
        "bytes": data,
        "bytearray": bytearray(data),
        "memoryview-readonly": memoryview(data),
        "memoryview-readonly-slice": memoryview(b"xx" + data + b"yy")[2:2 + len(data)],
        "memoryview-writable": memoryview(bytearray(data)),
        "memoryview-writable-slice": memoryview(bytearray(b"x" + data + b"y"))[1:1 + len(data)],
        # multi-byte items: the size counted must be bytes, not items
        "memoryview-readonly-cast": memoryview(data).cast("I"),
        "memoryview-writable-cast": memoryview(bytearray(data)).cast("Q"),
    }


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
@pytest.mark.parametrize("kind", list(_buffers(b"")))
def test_update_takes_every_buffer_kind(algorithm: str, kind: str) -> None:
    data = os.urandom(8 * 37)
    prefix = os.urandom(3)
    h = ResumableHash(algorithm)
    h.update(prefix)
    h.update(_buffers(data)[kind])
    assert h.size == len(prefix) + len(data)
    assert h.hexdigest() == hashlib.new(algorithm, prefix + data).hexdigest()
    resumed = ResumableHash.restore(algorithm, h.state())
    assert resumed.hexdigest() == h.hexdigest()


def test_readonly_memoryview_is_not_written_and_stays_usable() -> None:
    data = bytes(range(256))
    view = memoryview(data)
    h = ResumableHash("sha256")
    h.update(view)
    assert view.readonly and view.tobytes() == bytes(range(256))
    h.update(view[:10])
    assert h.hexdigest() == hashlib.sha256(data + data[:10]).hexdigest()


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_empty_updates_change_nothing(algorithm: str) -> None:
    h = ResumableHash(algorithm)
    h.update(b"abc")
    before = h.state()
    for empty in (b"", bytearray(), memoryview(b""), memoryview(bytearray()), memoryview(b"abc")[3:]):
        h.update(empty)
    assert h.size == 3 and h.state() == before
    assert h.hexdigest() == hashlib.new(algorithm, b"abc").hexdigest()
    fresh = ResumableHash(algorithm)
    fresh.update(b"")
    assert fresh.size == 0 and fresh.hexdigest() == hashlib.new(algorithm).hexdigest()


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_many_small_updates_equal_one(algorithm: str) -> None:
    data = os.urandom(5000)
    one = ResumableHash(algorithm)
    one.update(data)
    singles = ResumableHash(algorithm)
    for i in range(600):
        singles.update(data[i:i + 1])
    sizes = [1, 2, 63, 64, 65, 127, 128, 129, 7, 0]
    pos = 600
    uneven = ResumableHash.restore(algorithm, singles.state())  # resumed after 600 single bytes
    i = 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        uneven.update(memoryview(data)[pos:pos + n] if i % 2 else data[pos:pos + n])
        pos += n
        i += 1
    assert singles.size == 600 and uneven.size == one.size == len(data)
    assert uneven.state() == one.state()
    assert uneven.hexdigest() == one.hexdigest() == hashlib.new(algorithm, data).hexdigest()


def test_hexdigest_does_not_end_the_hash() -> None:
    h = ResumableHash("sha512")
    h.update(b"a" * 200)
    first = h.hexdigest()
    assert h.hexdigest() == first
    h.update(b"b")
    assert h.hexdigest() == hashlib.sha512(b"a" * 200 + b"b").hexdigest()
    assert len(ResumableHash("sha256").hexdigest()) == 64 and len(first) == 128


# ------------------------------------------------------------------------------------------------
# the fallback when libcrypto cannot be loaded


@pytest.fixture
def no_libcrypto(monkeypatch: pytest.MonkeyPatch) -> None:
    """The module's own switch: ``_lib`` is None exactly when _load_libcrypto found nothing."""
    import drivers.digest as digest

    monkeypatch.setattr(digest, "_lib", None)


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_fallback_gives_the_same_digests(no_libcrypto: None, algorithm: str) -> None:
    data = os.urandom(1000)
    for kind, buf in _buffers(data).items():
        h = ResumableHash(algorithm)
        h.update(b"")
        h.update(buf)
        h.update(data[:1])
        assert h.size == len(data) + 1, kind
        assert h.hexdigest() == hashlib.new(algorithm, data + data[:1]).hexdigest(), kind
        assert h.digest() == f"{algorithm}:{h.hexdigest()}"
    assert h.state() is None  # nothing to save: callers re-read the data to resume


def test_fallback_cannot_restore(no_libcrypto: None) -> None:
    with pytest.raises(ValueError, match="unavailable"):
        ResumableHash.restore("sha256", b"sha\x03" + bytes(104))
    with pytest.raises(ValueError):
        ResumableHash("md5")


def test_loader_gives_none_without_a_usable_libcrypto(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes
    import ctypes.util

    import drivers.digest as digest

    assert digest._load_libcrypto() is not None  # this machine has one: the fast path is tested above

    class NoSha:  # a library without the low-level SHA API (e.g. a FIPS-only build)
        def __init__(self, name: str) -> None:
            pass

    monkeypatch.setattr(ctypes, "CDLL", NoSha)
    assert digest._load_libcrypto() is None

    def missing(name: str) -> None:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", missing)
    assert digest._load_libcrypto() is None


def _libcrypto_path() -> str:
    """The libcrypto this interpreter has mapped (hashlib links against it)."""
    with open("/proc/self/maps") as maps:
        return next(line.split()[-1] for line in maps if "libcrypto" in line.split()[-1])


def test_loader_takes_the_libcrypto_python_links_against(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ldconfig/gcc, find_library finds nothing: the soname Python's _hashlib uses still loads."""
    import ctypes.util

    import drivers.digest as digest

    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    assert digest._load_libcrypto() is not None


def test_loader_falls_back_to_find_library(monkeypatch: pytest.MonkeyPatch) -> None:
    """The soname refused (another OpenSSL), the library find_library("crypto") names loads."""
    import ctypes
    import ctypes.util

    import drivers.digest as digest

    real, path, opened = ctypes.CDLL, _libcrypto_path(), []

    def cdll(name: str, *args, **kwargs):
        opened.append(name)
        if name != path:
            raise OSError(f"{name}: refused by the test")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(ctypes, "CDLL", cdll)
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: path if name == "crypto" else None)
    assert digest._load_libcrypto() is not None
    assert opened == ["libcrypto.so.3", path]


def test_calls_declare_their_c_types() -> None:
    """size_t lengths and pointer arguments: without argtypes ctypes passes a C int, and an update
    of 2 GiB or more would fail (too big to build in a test, so the declaration is pinned)."""
    import ctypes

    import drivers.digest as digest

    assert digest._lib is not None
    for alg in ("SHA256", "SHA512"):
        assert getattr(digest._lib, f"{alg}_Init").argtypes == [ctypes.c_void_p]
        assert getattr(digest._lib, f"{alg}_Update").argtypes == [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        assert getattr(digest._lib, f"{alg}_Final").argtypes == [ctypes.c_char_p, ctypes.c_void_p]


def test_module_without_libcrypto_in_a_fresh_process() -> None:
    """The library hidden from a new interpreter: the module loads, digests agree, no state."""
    import json
    import subprocess
    import sys

    script = r"""
import ctypes, hashlib, json, os
real = ctypes.CDLL
def hidden(name, *a, **kw):
    if "crypto" in str(name):
        raise OSError(f"{name}: hidden by the test")
    return real(name, *a, **kw)
ctypes.CDLL = hidden
import drivers.digest as d
data = bytes(range(256)) * 41
out = {"lib": d._lib is not None}
for alg in ("sha256", "sha512"):
    h = d.ResumableHash(alg)
    h.update(data[:100]); h.update(memoryview(data)[100:]); h.update(bytearray(b"z"))
    out[alg] = [h.hexdigest() == hashlib.new(alg, data + b"z").hexdigest(), h.state(), h.size]
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out == {"lib": False, "sha256": [True, None, 10497], "sha512": [True, None, 10497]}


# ------------------------------------------------------------------------------------------------
# damaged and foreign states


def _state(algorithm: str, data: bytes = b"abc") -> bytes:
    h = ResumableHash(algorithm)
    h.update(data)
    state = h.state()
    assert state is not None
    return state


@pytest.mark.parametrize(
    ("algorithm", "damage"),
    [
        ("sha256", lambda s: s[:-1]),  # cut short (a power cut)
        ("sha256", lambda s: s + b"\x00"),
        ("sha256", lambda s: s[:4]),
        ("sha256", lambda s: b"sha\x02" + s[4:]),  # Go's sha224 state: same size, other algorithm
        ("sha256", lambda s: b"SHA\x03" + s[4:]),
        ("sha512", lambda s: b"sha\x04" + s[4:]),  # sha384
        ("sha512", lambda s: b"sha\x06" + s[4:]),  # sha512/256
        ("sha512", lambda s: s[:-1]),
        ("sha512", lambda s: s[1:]),
    ],
    ids=["sha256-short", "sha256-long", "sha256-magic-only", "sha224", "sha256-magic-case", "sha384",
         "sha512-256", "sha512-short", "sha512-shifted"],
)
def test_damaged_state_is_refused(algorithm: str, damage) -> None:
    with pytest.raises(ValueError, match="not a hash state"):
        ResumableHash.restore(algorithm, damage(_state(algorithm)))


def test_state_of_the_other_algorithm_is_refused() -> None:
    with pytest.raises(ValueError, match="not a hash state"):
        ResumableHash.restore("sha256", _state("sha512"))
    with pytest.raises(ValueError, match="not a hash state"):
        ResumableHash.restore("sha512", _state("sha256"))
    with pytest.raises(ValueError, match="unsupported digest algorithm"):
        ResumableHash.restore("sha384", _state("sha512"))
