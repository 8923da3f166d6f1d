"""Streaming SHA-256/SHA-512 whose state can be saved and resumed in another process.

hashlib's objects cannot be serialized, so an upload that continues on another instance (or
after a restart) would have to re-read everything written so far. Here the hash runs on
OpenSSL's low-level SHA API through ctypes: the context is a plain C struct, and its state is
exported in Go's ``encoding.BinaryMarshaler`` format for ``crypto/sha256`` and
``crypto/sha512`` -- the very bytes the reference registry stores under
``_uploads/<id>/hashstates/<alg>/<offset>`` -- so either registry can resume the other's upload.

ctypes releases the GIL during the C call, so hashing in a worker thread overlaps with I/O.
When libcrypto cannot be loaded, :class:`ResumableHash` falls back to hashlib and
:meth:`ResumableHash.state` returns None (callers then re-read the data to resume).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import struct

ALGORITHMS = ("sha256", "sha512")

_GO_MAGIC = {"sha256": b"sha\x03", "sha512": b"sha\x07"}
_BLOCK = {"sha256": 64, "sha512": 128}
_WORD = {"sha256": 4, "sha512": 8}


class _Sha256Ctx(ctypes.Structure):
    _fields_ = [
        ("h", ctypes.c_uint32 * 8),
        ("Nl", ctypes.c_uint32),
        ("Nh", ctypes.c_uint32),
        ("data", ctypes.c_ubyte * 64),
        ("num", ctypes.c_uint),
        ("md_len", ctypes.c_uint),
    ]


class _Sha512Ctx(ctypes.Structure):
    _fields_ = [
        ("h", ctypes.c_uint64 * 8),
        ("Nl", ctypes.c_uint64),
        ("Nh", ctypes.c_uint64),
        ("data", ctypes.c_ubyte * 128),
        ("num", ctypes.c_uint),
        ("md_len", ctypes.c_uint),
    ]


def _load_libcrypto() -> ctypes.CDLL | None:
    candidates = []
    try:
        import _hashlib  # noqa: F401  (the libcrypto Python itself links against)

        candidates.append("libcrypto.so.3")
    except ImportError:  # pragma: no cover
        pass
    found = ctypes.util.find_library("crypto")
    if found:
        candidates.append(found)
    for name in candidates:
        try:
            lib = ctypes.CDLL(name)
            for alg in ("SHA256", "SHA512"):
                for op in ("Init", "Update", "Final"):
                    getattr(lib, f"{alg}_{op}")
            return lib
        except (OSError, AttributeError):
            continue
    return None


_lib = _load_libcrypto()
if _lib is not None:
    for _alg in ("SHA256", "SHA512"):
        getattr(_lib, f"{_alg}_Init").argtypes = [ctypes.c_void_p]
        getattr(_lib, f"{_alg}_Update").argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        getattr(_lib, f"{_alg}_Final").argtypes = [ctypes.c_char_p, ctypes.c_void_p]


class ResumableHash:
    """A SHA-256 or SHA-512 hash whose state round-trips through :meth:`state`/:meth:`restore`."""

    def __init__(self, algorithm: str = "sha256") -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unsupported digest algorithm {algorithm!r}")
        self.algorithm = algorithm
        self.size = 0
        self._fallback: "hashlib._Hash | None" = None
        if _lib is None:
            self._fallback = hashlib.new(algorithm)
            return
        self._ctx = _Sha256Ctx() if algorithm == "sha256" else _Sha512Ctx()
        self._update_fn = _lib.SHA256_Update if algorithm == "sha256" else _lib.SHA512_Update
        (_lib.SHA256_Init if algorithm == "sha256" else _lib.SHA512_Init)(ctypes.byref(self._ctx))

    def update(self, data: bytes | bytearray | memoryview) -> None:
        n = len(data) if not isinstance(data, memoryview) else data.nbytes
        if n == 0:
            return
        self.size += n
        if self._fallback is not None:
            self._fallback.update(data)
            return
        if isinstance(data, bytes):
            self._update_fn(ctypes.byref(self._ctx), data, n)
        elif isinstance(data, bytearray) or (isinstance(data, memoryview) and not data.readonly):
            buf = (ctypes.c_char * n).from_buffer(data)
            self._update_fn(ctypes.byref(self._ctx), ctypes.cast(buf, ctypes.c_char_p), n)
        else:
            self._update_fn(ctypes.byref(self._ctx), bytes(data), n)

    def hexdigest(self) -> str:
        if self._fallback is not None:
            return self._fallback.hexdigest()
        ctx_copy = type(self._ctx).from_buffer_copy(self._ctx)
        out = ctypes.create_string_buffer(32 if self.algorithm == "sha256" else 64)
        (_lib.SHA256_Final if self.algorithm == "sha256" else _lib.SHA512_Final)(  # type: ignore[union-attr]
            out, ctypes.byref(ctx_copy)
        )
        return out.raw.hex()

    def digest(self) -> str:
        """``algorithm:hex``, the OCI digest string."""
        return f"{self.algorithm}:{self.hexdigest()}"

    def state(self) -> bytes | None:
        """The state in Go's BinaryMarshaler format, or None when it cannot be exported."""
        if self._fallback is not None:
            return None
        ctx = self._ctx
        word = "I" if self.algorithm == "sha256" else "Q"
        block = _BLOCK[self.algorithm]
        pending = self.size % block
        buf = bytes(ctx.data)[:pending] + b"\x00" * (block - pending)
        return _GO_MAGIC[self.algorithm] + struct.pack(f">8{word}", *ctx.h) + buf + struct.pack(">Q", self.size)

    @classmethod
    def restore(cls, algorithm: str, state: bytes) -> "ResumableHash":
        """Rebuild a hash from :meth:`state` output (or the reference registry's hashstate file)."""
        h = cls(algorithm)
        if h._fallback is not None:
            raise ValueError("resumable hashing is unavailable (libcrypto not found)")
        word = _WORD[algorithm]
        block = _BLOCK[algorithm]
        expected = 4 + 8 * word + block + 8
        if len(state) != expected or state[:4] != _GO_MAGIC[algorithm]:
            raise ValueError("not a hash state of this algorithm")
        fmt = "I" if algorithm == "sha256" else "Q"
        hs = struct.unpack(f">8{fmt}", state[4 : 4 + 8 * word])
        (size,) = struct.unpack(">Q", state[-8:])
        ctx = h._ctx
        for i, v in enumerate(hs):
            ctx.h[i] = v
        # OpenSSL counts bits in two words (Nh:Nl); ctypes keeps the low 32/64 bits of each value
        bits = size * 8
        ctx.Nl = bits
        ctx.Nh = bits >> (8 * word)
        ctx.data[:] = state[4 + 8 * word : 4 + 8 * word + block]  # exactly one block, or ValueError
        ctx.num = size % block
        h.size = size
        return h
