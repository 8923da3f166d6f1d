"""Upload sessions: signed state tokens, streamed appends with a resumable digest, commit.

The digest is computed while the bytes stream in, in the session's algorithm: sha256 unless the
POST asked for another (``?digest-algorithm=sha512``, OCI distribution-spec main). After every
append the hash state is saved under ``_uploads/<id>/hashstates/<algorithm>/<offset>`` in Go's
format (what the reference writes for sha256), so the next request -- on any instance sharing
storage, even the reference registry for sha256 -- resumes it without reading the data back. Only
when no saved state matches (a crash between the data and the state write, a closing digest in
another algorithm than the session's, no libcrypto) does commit re-read the data, from the newest
saved state that precedes it.

The state token has the reference registry's format (base64url of HMAC-SHA256 then JSON
``{Name, UUID, Offset, StartedAt}``), so with a shared ``http.secret`` either registry accepts the
other's ``Location``. A session in another algorithm adds ``DigestAlgorithm`` (Go's decoder
ignores unknown keys) and keeps its initial hash state at offset 0, which tells the algorithm to a
request that comes without the token.

Commit is idempotent across a crash at any point (kill -9 included), so a client retrying its
``PUT ?digest=`` gets 201 for the right digest without sending the data again:

- before the data is final, the retry simply does the commit again; a closing chunk the earlier
  attempt already appended completely (the data ends exactly where the retried chunk would) is
  recognised and not appended twice (a partial one: 416 with the current ``Range``);
- before the move of the data to the blob, commit saves the final hash state (when the last request
  did not already), so after the move the session holds the proof that the blob at the digest's
  path is this session's data: the retry then only adds the link and removes the session;
- the move, the link and the session's removal are each one step; every state in between is one
  of the above.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from drivers import crashpoints
from drivers import digest as digests
from drivers.base import Conflict, ContentWrite, FileWriter, PathNotFound, StorageDriver

from ..errors import ErrorCode, RegistryError
from ..reference import Digest
from ..state import Lease, LeaseBusy, LeaseLost, State, StateUnavailable
from . import paths
from .blobs import BlobInfo, BlobStore
from .uses import blob_key, guarded

log = logging.getLogger(__name__)

#: the algorithm hashed while PATCHed data streams in unless the POST chose another
CANONICAL = "sha256"
#: what appends and commits consume: bytes, or a list of pieces as they came off the socket
Batch = bytes | list[bytes]


@dataclasses.dataclass
class UploadSession:
    repo: str
    id: str
    started_at: str
    #: bytes received so far (from the token until the writer is opened)
    size: int = 0
    #: what the PATCHed bytes are hashed with (``digest-algorithm`` of the POST)
    algorithm: str = CANONICAL
    #: the size the state token says the upload had when it was issued (None: no token)
    token_offset: int | None = None


def _upload_unknown(upload_id: str) -> RegistryError:
    return RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN, detail={"uuid": upload_id})


def _now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


#: times a writer re-reads the upload's state when its claim meets a concurrent close
CLAIM_ROUNDS = 4


class UploadStore:
    """Upload sessions. One request at a time per upload, across every worker and instance that
    shares :attr:`state` (a lease named ``upload:<repo>/<id>``), fenced in the storage:

    - the lease serialises: two PATCHes racing on one session (on two instances) run one after
      the other, and the second finds the size moved (416 with the current range);
    - on object stores with conditional writes (S3), the upload's state object (the writer's
      sidecar: parts, tail) is replaced only by a writer that read its current version, so even
      without a lease two writers can never both advance the upload from one state;
    - a holder whose lease was not released (it expired: the holder may be paused, not dead)
      first *claims* the state (writes it again conditionally): from then on the paused holder's
      close is refused by the storage, whenever it wakes. It also stops itself: before each write
      it checks its lease's local deadline (:meth:`registry.state.Lease.check`).

    See docs/scale-out.md for what this guarantees on each backend."""

    def __init__(self, driver: StorageDriver, blobs: BlobStore, secret: str, events: Any = None,
                 state: State | None = None) -> None:
        self.driver = driver
        self.blobs = blobs
        #: told of each completed push (registry.events.notifier.Notifier)
        self.events = events if events is not None else blobs.events
        self._key = secret.encode()
        if state is None:
            from ..state.config import StateConfig
            from ..state.local import LocalState

            state = LocalState(StateConfig())
        #: where the per-upload leases live (this process, this host's workers, or Redis)
        self.state = state

    @contextlib.asynccontextmanager
    async def _exclusive(self, s: UploadSession) -> AsyncIterator[Lease]:
        try:
            lease = await self.state.acquire(f"upload:{s.repo}/{s.id}")
        except StateUnavailable as exc:
            raise exc.to_registry_error("an upload") from None
        except LeaseBusy as exc:
            raise exc.to_registry_error("this upload") from None
        try:
            yield lease
        except LeaseLost as exc:
            raise exc.to_registry_error("the upload request") from None
        finally:
            await lease.release()

    # --- state tokens ------------------------------------------------------------------------------
    def token(self, s: UploadSession) -> str:
        state: dict[str, object] = {"Name": s.repo, "UUID": s.id, "Offset": s.size, "StartedAt": s.started_at}
        if s.algorithm != CANONICAL:
            state["DigestAlgorithm"] = s.algorithm
        payload = json.dumps(state, separators=(",", ":")).encode()
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac + payload).decode()

    def _unpack(self, token: str, repo: str, upload_id: str) -> UploadSession:
        invalid = RegistryError(ErrorCode.BLOB_UPLOAD_INVALID, "invalid upload state", detail={"uuid": upload_id})
        try:
            raw = base64.urlsafe_b64decode(token.encode("ascii") + b"=" * (-len(token) % 4))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise invalid from None
        mac, payload = raw[:32], raw[32:]
        if len(raw) <= 32 or not hmac.compare_digest(mac, hmac.new(self._key, payload, hashlib.sha256).digest()):
            raise invalid
        try:
            state = json.loads(payload)
            name, sid, offset, started = state["Name"], state["UUID"], state["Offset"], state["StartedAt"]
            algorithm = state.get("DigestAlgorithm", CANONICAL)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise invalid from None
        if name != repo or sid != upload_id or not isinstance(offset, int) or not isinstance(started, str):
            raise invalid
        if algorithm not in digests.ALGORITHMS:
            raise invalid
        return UploadSession(repo, upload_id, started, offset, algorithm, token_offset=offset)

    # --- lifecycle -----------------------------------------------------------------------------------
    async def start(self, repo: str, algorithm: str | None = None) -> UploadSession:
        """A new, empty session (``startedat`` and an empty uncommitted data file) whose PATCHed
        bytes are hashed with ``algorithm`` (sha256 when None); another one leaves its state at 0."""
        algorithm = algorithm or CANONICAL
        s = UploadSession(repo, str(uuid.uuid4()), _now_rfc3339(), algorithm=algorithm)
        try:
            # a session is answered 202, not 201: a power cut may take it (the client starts over)
            await self.driver.put_contents([[ContentWrite(paths.upload_started_at(repo, s.id),
                                                          s.started_at.encode(), durable=False)]])
            w = await self.driver.writer(paths.upload_data(repo, s.id))
            await w.close()
            if algorithm != CANONICAL:
                await self._save_hash(s, digests.ResumableHash(algorithm))
        except BaseException:
            await self._discard_quietly(s)  # no half-made session (a full disk, a storage fault)
            raise
        return s

    async def resume(self, repo: str, upload_id: str, token: str | None) -> UploadSession:
        """The session named by a Location; its ``size`` is read from storage, not trusted."""
        if token:
            s = self._unpack(token, repo, upload_id)
        else:
            s = UploadSession(repo, upload_id, "")
        try:
            started = await self.driver.get_content(paths.upload_started_at(repo, upload_id))
        except PathNotFound:
            raise _upload_unknown(upload_id) from None
        s.started_at = s.started_at or started.decode("utf-8", "replace")
        if not token:
            s.algorithm = await self._stored_algorithm(s)
        return s

    async def _stored_algorithm(self, s: UploadSession) -> str:
        """The session's algorithm without a token: a non-canonical one left its state at 0."""
        for algorithm in digests.ALGORITHMS:
            if algorithm == CANONICAL:
                continue
            try:
                await self.driver.stat(paths.upload_hashstate(s.repo, s.id, algorithm, 0))
                return algorithm
            except PathNotFound:
                continue
        return CANONICAL

    async def status(self, s: UploadSession) -> int:
        """The upload's size. Read without the lease: a status query writes nothing, and it must
        answer while another request (or a lost instance's lease) holds the upload."""
        return await self._status(s)

    async def _status(self, s: UploadSession) -> int:
        w = await self._open(s)
        s.size = w.size
        await w.close()
        return s.size

    async def cancel(self, s: UploadSession) -> None:
        async with self._exclusive(s):
            await self._cancel(s)

    async def _cancel(self, s: UploadSession) -> None:
        try:
            w = await self.driver.writer(paths.upload_data(s.repo, s.id), append=True)
            await w.cancel()
        except PathNotFound:
            pass
        try:
            await self.driver.delete(paths.upload_dir(s.repo, s.id))
        except PathNotFound:
            raise _upload_unknown(s.id) from None

    # --- data --------------------------------------------------------------------------------------
    async def append(self, s: UploadSession, chunks: AsyncIterator[Batch], start: int | None = None) -> int:
        """Stream ``chunks`` onto the upload; ``start`` (a Content-Range) must equal its size (the
        spec's MUST: a chunk sent again is out of order too, 416 with the current ``Range``).
        Requests on one upload are serialised in this process; across processes a client that
        races two PATCHes on one session gets what it asked for (see docs/api.md)."""
        async with self._exclusive(s) as lease:
            return await self._append(s, chunks, start, lease)

    async def _append(self, s: UploadSession, chunks: AsyncIterator[Batch], start: int | None,
                      lease: Lease | None = None) -> int:
        w = await self._open_fenced(s, lease)
        hasher: digests.ResumableHash | None = None
        done = False
        closed = False
        try:
            self._check_start(start, w.size)
            hasher = await self._saved_hash(s, s.algorithm, w.size)
            await pump(chunks, _Fenced(w, lease) if lease is not None else w, hasher)
            done = True
        finally:
            s.size = w.size
            try:
                await w.close()
                closed = True
            except Conflict:  # a later holder fenced us out: nothing of this request counts
                closed = False
            except PathNotFound:  # committed or cancelled meanwhile by the request that fenced us
                raise _upload_unknown(s.id) from None
        if not closed:
            raise self._moved_on(await self._status(s))
        # the state only after a complete request: a failed one's size may count lost bytes
        if done and hasher is not None and 0 < hasher.size == s.size and not w.failed:
            await self._save_hash(s, hasher)
        if lease is not None:
            lease.check()
        return s.size

    async def _open_fenced(self, s: UploadSession, lease: Lease | None) -> FileWriter:
        """The upload's writer; after an unclean lease also the claim that fences out earlier
        holders (see the class docstring)."""
        for _ in range(CLAIM_ROUNDS):
            w = await self._open(s)
            claim = getattr(w, "claim", None)
            if lease is None or lease.clean or claim is None:
                return w
            try:
                await claim()
                log.info("upload %s: took over from a holder whose lease expired; its writes are fenced", s.id)
                return w
            except Conflict:
                await w.close()  # a paused holder closed just before: read its state again
        raise RegistryError(ErrorCode.UNAVAILABLE, "the upload kept changing under another writer; retry",
                            detail={"uuid": s.id}, headers={"Retry-After": "1"})

    def _moved_on(self, size: int) -> RegistryError:
        return RegistryError(
            ErrorCode.RANGE_INVALID,
            "another request appended to this upload first",
            detail={"size": size},
            headers=self.range_headers(size),
        )

    async def commit(
        self,
        s: UploadSession,
        expected: Digest,
        chunks: AsyncIterator[Batch] | None,
        start: int | None = None,
        length: int | None = None,
    ) -> BlobInfo:
        """Finish the upload: the final chunks, digest check, then data, link, cleanup in that order
        (idempotent across a crash: see the module docstring). A final chunk must continue at the
        current size: ``start`` is its Content-Range, else the offset the state token names (as
        distribution checks); ``length`` its size in bytes, when known."""
        async with self._exclusive(s) as lease:
            info = await self._commit(s, expected, chunks, start, length, lease)
        if self.events.active:
            await self.events.blob_pushed(s.repo, str(info.digest), info.size)
        return info

    async def _commit(
        self,
        s: UploadSession,
        expected: Digest,
        chunks: AsyncIterator[Batch] | None,
        start: int | None,
        length: int | None,
        lease: Lease | None = None,
    ) -> BlobInfo:
        data_path = paths.upload_data(s.repo, s.id)
        if chunks is not None and start is None:
            start = s.token_offset
        try:
            w: FileWriter | None = await self._open_fenced(s, lease)
        except RegistryError as exc:
            if exc.code is not ErrorCode.BLOB_UPLOAD_UNKNOWN:
                raise
            w = None  # an earlier attempt got past its writer's commit (and maybe the move)
        hasher: digests.ResumableHash | None
        if w is None:
            size = await self._size(data_path)
            if size is None:  # moved already: the session must prove the blob is its data
                if chunks is not None:
                    await _drain(chunks)

                async def relink() -> BlobInfo | None:  # using a stored blob: guarded, as any use
                    found = await self._moved_earlier(s, expected)
                    if found is not None:
                        await self.blobs.link(s.repo, expected)
                    return found

                info = await guarded(self.blobs.barrier, [blob_key(expected)], relink)
                if info is None:
                    raise _upload_unknown(s.id)
                return await self._publish(s, expected, info.size, linked=True)
            s.size = size
            if chunks is not None:
                if not _replayed(start, length, size):
                    raise self._range_invalid(size, start)  # committed data cannot grow
                await _drain(chunks)
            hasher = await self._saved_hash(s, expected.algorithm, s.size)
        elif w.size == 0 and chunks is not None and start in (None, 0) \
                and getattr(self.driver, "commits_atomically", False):
            # nothing was PATCHed: the digest came before the bytes, as in a one-request push, so
            # they go straight to the blob's key (no upload object, no copy)
            await w.close()
            try:
                info = await self._put_whole(s.repo, expected, chunks)
            except RegistryError as exc:
                if exc.code is ErrorCode.DIGEST_INVALID:
                    await self._discard(s)
                raise
            await self._discard(s)
            return info
        else:
            try:
                if chunks is not None and _replayed(start, length, w.size):
                    await _drain(chunks)  # an earlier attempt appended this very chunk
                    chunks = None
                elif chunks is not None:
                    self._check_start(start, w.size)
                hasher = await self._saved_hash(s, expected.algorithm, w.size)
                if chunks is not None:
                    await pump(chunks, _Fenced(w, lease) if lease is not None else w, hasher)
                s.size = w.size
                if lease is not None:
                    lease.check()
            except BaseException:
                with contextlib.suppress(Conflict, PathNotFound):
                    await w.close()
                raise
            try:
                await w.commit()
            except Conflict:
                raise RegistryError(ErrorCode.BLOB_UPLOAD_INVALID,
                                    "the upload's data was changed by a concurrent writer; start the upload again",
                                    detail={"uuid": s.id}) from None
        saved = hasher is not None and hasher.size == s.size and chunks is None
        if hasher is None or hasher.size != s.size:
            hasher = await self._rehash(s, expected.algorithm)
        if hasher.hexdigest() != expected.hex:
            await self._discard(s)
            self._verify(hasher, expected)
        if not saved:
            await self._save_hash(s, hasher)  # the proof a retry needs once the data is moved

        async def place() -> None:
            """Data (unless the same blob is stored already), then link; redone as a whole when
            a garbage collection decided about the blob meanwhile (our upload file is still here
            unless this very call moved it, and then the data is new and stays)."""
            info = await self.blobs.stat_data(expected)
            if info is None or info.size != s.size:
                crashpoints.reached("upload.commit.before_move", s.id)
                await self.driver.move(data_path, paths.blob_data(expected))
                crashpoints.reached("upload.commit.after_move", s.id)
            await self.blobs.link(s.repo, expected)

        await guarded(self.blobs.barrier, [blob_key(expected)], place)
        return await self._publish(s, expected, s.size, linked=True)

    async def _publish(self, s: UploadSession, expected: Digest, size: int, *, linked: bool = False) -> BlobInfo:
        """The blob's data is in place: link it into the repository, then forget the session."""
        if not linked:
            await self.blobs.link(s.repo, expected)
        crashpoints.reached("upload.commit.after_link", s.id)
        await self._discard(s)
        return BlobInfo(expected, size, paths.blob_data(expected))

    async def _moved_earlier(self, s: UploadSession, expected: Digest) -> BlobInfo | None:
        """The blob ``expected`` if this session's data became it: its size matches a hash state the
        session saved, and that state's digest is ``expected`` (a session never claims a blob it
        did not upload, so no one links a blob of another repository this way)."""
        info = await self.blobs.stat_data(expected)
        if info is None:
            return None
        hasher = await self._saved_hash(s, expected.algorithm, info.size)
        if hasher is None or hasher.size != info.size or hasher.hexdigest() != expected.hex:
            return None
        return info

    async def put_whole(self, repo: str, expected: Digest, chunks: AsyncIterator[Batch],
                        verified: Callable[[], None] | None = None) -> BlobInfo:
        """A blob in one request (``POST ?digest=`` with a body): no session files, the data
        streams into a fresh upload file while it is hashed. When the blob is already stored,
        the body is only hashed (nothing written) and the repository link added.
        ``verified`` is called once the bytes are known to match ``expected``, before they are
        committed (the pull-through cache then releases the blob's last bytes to its clients)."""
        info = await self._put_whole(repo, expected, chunks, verified)
        if self.events.active:
            await self.events.blob_pushed(repo, str(info.digest), info.size)
        return info

    async def _put_whole(self, repo: str, expected: Digest, chunks: AsyncIterator[Batch],
                         verified: Callable[[], None] | None = None) -> BlobInfo:
        barrier = self.blobs.barrier
        claim = await barrier.claim([blob_key(expected)]) if barrier is not None else None
        existing = await self.blobs.stat_data(expected)
        if existing is not None:
            hasher = digests.ResumableHash(expected.algorithm)
            await pump(chunks, _NullWriter(), hasher)
            self._verify(hasher, expected)
            if verified is not None:
                verified()
            await self.blobs.link(repo, expected)
            if claim is not None and not await claim.confirm() and await self.blobs.stat_data(expected) is None:
                # a collection that started while the body streamed took the stored copy: the
                # bytes were only hashed, so the client must send them again
                raise RegistryError(ErrorCode.UNAVAILABLE, "the stored copy of this blob was garbage-collected "
                                    "while it was pushed again; retry the push", detail={"digest": str(expected)},
                                    headers={"Retry-After": "1"})
            return BlobInfo(expected, hasher.size, existing.path)
        s = UploadSession(repo, str(uuid.uuid4()), _now_rfc3339())
        data_path = paths.upload_data(repo, s.id)
        # a driver whose writers publish only on commit (object stores) takes the bytes straight
        # to the blob's key: no upload file, no copy; a wrong digest cancels, leaving nothing
        direct = getattr(self.driver, "commits_atomically", False)
        try:
            w = await self.driver.writer(paths.blob_data(expected) if direct else data_path)
        except BaseException:
            await self._discard_quietly(s)
            raise
        hasher = digests.ResumableHash(expected.algorithm)
        try:
            await pump(chunks, w, hasher)
            self._verify(hasher, expected)  # before the commit: a wrong blob costs no durable write
            if verified is not None:
                verified()
            await w.commit()
        except BaseException:
            # a failed writer still holds its file or multipart upload: cancel releases it
            with contextlib.suppress(Exception):
                await w.cancel()
            await self._discard_quietly(s)
            raise
        if direct:
            await self.blobs.link(repo, expected)
            return BlobInfo(expected, hasher.size, paths.blob_data(expected))
        try:
            await self.driver.move(data_path, paths.blob_data(expected))
            await self.blobs.link(repo, expected)
        finally:
            await self._discard_quietly(s)
        return BlobInfo(expected, hasher.size, paths.blob_data(expected))

    @staticmethod
    def _verify(hasher: digests.ResumableHash, expected: Digest) -> None:
        if hasher.hexdigest() != expected.hex:
            raise RegistryError(
                ErrorCode.DIGEST_INVALID, detail={"expected": str(expected), "computed": hasher.digest()}
            )

    # --- maintenance ---------------------------------------------------------------------------------
    async def purge(self, max_age: float, *, dryrun: bool = False) -> list[str]:
        """Delete uploads started more than ``max_age`` seconds ago (``startedat``, else the
        file's time); return their directories. Like distribution's upload purging."""
        cutoff = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=max_age)
        purged = []
        async for repo, upload_id in self._all_uploads(paths.REPOSITORIES, ""):
            started = await self._started(repo, upload_id)
            if started is not None and started.tzinfo is None:
                started = started.replace(tzinfo=dt.timezone.utc)
            if started is not None and started > cutoff:
                continue
            purged.append(paths.upload_dir(repo, upload_id))
            if not dryrun:
                await self._discard(UploadSession(repo, upload_id, ""))
        return purged

    async def _all_uploads(self, directory: str, prefix: str) -> AsyncIterator[tuple[str, str]]:
        try:
            children = await self.driver.list(directory)
        except PathNotFound:
            return
        for child in children:
            name = paths.leaf(child)
            if name == "_uploads" and prefix:
                try:
                    for entry in await self.driver.list(child):
                        yield prefix[:-1], paths.leaf(entry)
                except PathNotFound:
                    pass
            elif not name.startswith("_"):
                async for item in self._all_uploads(child, f"{prefix}{name}/"):
                    yield item

    async def _started(self, repo: str, upload_id: str) -> dt.datetime | None:
        path = paths.upload_started_at(repo, upload_id)
        try:
            text = (await self.driver.get_content(path)).decode("ascii", "replace").strip()
            return dt.datetime.fromisoformat(text.replace("Z", "+00:00")[:32])
        except PathNotFound:
            pass
        except ValueError:
            try:
                return (await self.driver.stat(path)).modified
            except PathNotFound:
                pass
        try:  # no startedat: judge by the data file
            return (await self.driver.stat(paths.upload_data(repo, upload_id))).modified
        except PathNotFound:
            return None

    # --- helpers -------------------------------------------------------------------------------------
    def _check_start(self, start: int | None, size: int) -> None:
        if start is not None and start != size:
            raise self._range_invalid(size, start)

    def _range_invalid(self, size: int, start: int | None) -> RegistryError:
        return RegistryError(
            ErrorCode.RANGE_INVALID,
            "upload range does not continue at the current size",
            detail={"size": size, "start": start},
            headers=self.range_headers(size),
        )

    @staticmethod
    def range_headers(size: int) -> dict[str, str]:
        return {"Range": f"0-{max(size - 1, 0)}"}

    async def _open(self, s: UploadSession) -> FileWriter:
        try:
            return await self.driver.writer(paths.upload_data(s.repo, s.id), append=True)
        except PathNotFound:
            raise _upload_unknown(s.id) from None

    async def _size(self, path: str) -> int | None:
        try:
            return (await self.driver.stat(path)).size
        except PathNotFound:
            return None

    async def _saved_hash(self, s: UploadSession, algorithm: str, offset: int) -> digests.ResumableHash | None:
        """The hash after ``offset`` bytes: fresh at 0, else the saved state, else None."""
        if offset == 0:
            return digests.ResumableHash(algorithm)
        try:
            state = await self.driver.get_content(paths.upload_hashstate(s.repo, s.id, algorithm, offset))
            return digests.ResumableHash.restore(algorithm, state)
        except (PathNotFound, ValueError):
            return None

    async def _save_hash(self, s: UploadSession, hasher: digests.ResumableHash) -> None:
        state = hasher.state()
        if state is not None:
            # not made durable on its own: a state lost (or cut short) in a power cut only makes
            # commit re-read the data (see _rehash), and a damaged one cannot pass for another
            # digest (commit compares the result with the client's digest)
            path = paths.upload_hashstate(s.repo, s.id, hasher.algorithm, hasher.size)
            await self.driver.put_contents([[ContentWrite(path, state, durable=False)]])

    async def _rehash(self, s: UploadSession, algorithm: str) -> digests.ResumableHash:
        """Hash the committed upload data, from the newest usable saved state."""
        hasher = digests.ResumableHash(algorithm)
        try:
            offsets = sorted(
                (int(paths.leaf(p)) for p in await self.driver.list(paths.upload_hashstates_dir(s.repo, s.id, algorithm))
                 if paths.leaf(p).isdigit() and int(paths.leaf(p)) <= s.size),
                reverse=True,
            )
        except PathNotFound:
            offsets = []
        for offset in offsets:
            restored = await self._saved_hash(s, algorithm, offset)
            if restored is not None:
                hasher = restored
                break
        log.info("upload %s: re-reading %d bytes to compute its %s digest", s.id, s.size - hasher.size, algorithm)
        loop = asyncio.get_running_loop()
        if hasher.size < s.size:
            async for chunk in self.driver.reader(paths.upload_data(s.repo, s.id), hasher.size, chunk_size=4 << 20):
                await loop.run_in_executor(None, hasher.update, chunk)
        return hasher

    async def _discard(self, s: UploadSession) -> None:
        try:
            await self.driver.delete(paths.upload_dir(s.repo, s.id))
        except PathNotFound:
            pass

    async def _discard_quietly(self, s: UploadSession) -> None:
        """:meth:`_discard` on a failure path: the first error is the one to report (a session
        left behind is purged later)."""
        with contextlib.suppress(Exception):
            await self._discard(s)


def _replayed(start: int | None, length: int | None, size: int) -> bool:
    """Whether a chunk of ``length`` bytes at ``start`` ends exactly at ``size``: the retry of a
    request whose bytes all arrived (its answer was lost, or the process died before sending it)."""
    return start is not None and length is not None and length > 0 and start < size and start + length == size


async def _drain(chunks: AsyncIterator[Batch]) -> None:
    async for _ in chunks:
        pass


async def pump(chunks: AsyncIterator[Batch], writer: FileWriter, hasher: digests.ResumableHash | None) -> None:
    """Write ``chunks`` while hashing them in a worker thread (ctypes releases the GIL), one
    batch in flight, so reading the next batch, hashing and writing overlap. A batch may be a
    list of pieces as they came off the socket: joining them would cost one more copy."""
    pending: asyncio.Task | None = None
    try:
        async for batch in chunks:
            pieces = [batch] if isinstance(batch, (bytes, bytearray, memoryview)) else batch
            if not any(len(p) for p in pieces):
                continue
            if pending is not None:
                await pending
            pending = asyncio.ensure_future(_write_and_hash(pieces, writer, hasher))
        if pending is not None:
            await pending
            pending = None
    finally:
        if pending is not None:
            # let the in-flight step end so the writer and the hash agree on the size, if they can
            await asyncio.wait([pending])


def _hash_all(hasher: digests.ResumableHash, pieces: list[bytes]) -> None:
    for piece in pieces:
        hasher.update(piece)


async def _write_and_hash(pieces: list[bytes], writer: FileWriter, hasher: digests.ResumableHash | None) -> None:
    hashing = None
    if hasher is not None:
        hashing = asyncio.get_running_loop().run_in_executor(None, _hash_all, hasher, pieces)
    try:
        for piece in pieces:
            await writer.write(piece)
    finally:
        if hashing is not None:
            await asyncio.wait([hashing])
    if hashing is not None:
        hashing.result()


class _Fenced(FileWriter):
    """A writer that checks its lease before every write: a holder that was paused past its
    lease stops before sending anything more (the storage's own fencing covers the rest)."""

    def __init__(self, inner: FileWriter, lease: Lease) -> None:
        self._inner, self._lease = inner, lease

    @property
    def size(self) -> int:
        return self._inner.size

    @property
    def failed(self) -> bool:
        return self._inner.failed

    async def write(self, data: bytes | bytearray | memoryview) -> int:
        self._lease.check()
        return await self._inner.write(data)

    async def close(self) -> None:
        await self._inner.close()

    async def commit(self) -> None:
        self._lease.check()
        await self._inner.commit()

    async def cancel(self) -> None:
        await self._inner.cancel()


class _NullWriter(FileWriter):
    """Counts and drops bytes: the body of a blob that is already stored is only hashed."""

    def __init__(self) -> None:
        self._size = 0

    @property
    def size(self) -> int:
        return self._size

    async def write(self, data: bytes | bytearray | memoryview) -> int:
        self._size += len(data)
        return len(data)

    async def close(self) -> None: ...

    async def commit(self) -> None: ...

    async def cancel(self) -> None: ...
