"""The registry side of online collection: a push never loses what it uses to a running collector.

Every time a push *uses* something that already exists -- finds a blob or manifest with HEAD,
mounts a blob, uploads a blob that is already stored, or PUTs a manifest naming blobs, child
manifests or a tag -- the store calls :meth:`Barrier.claim` with the keys it relies on (a digest,
or ``tag:<repo>:<tag>``) before the use, and :meth:`Claim.confirm` after it.

While a collection runs (its lease is in the storage; read here at most every
:data:`~registry.lifecycle.lease.POLL` seconds), a claim writes one empty *claim file* per key
(once per key, run and process), then looks at the *doomed batches* the collector has written.
The collector, for each batch it is about to delete, writes the batch first, then lists the claim
files, and deletes only what nobody claimed. Both sides write before they read (claim file before
batch check; batch before claim listing), on storage where a read sees every finished write, so at
least one of them sees the other: either the collector skips the key, or the claim sees it doomed
and waits until the batch is resolved (deleted or kept) before the push looks again -- and then it
finds the blob, or finds it missing and uploads it again.

A collection that starts *after* a claim saw no lease waits ``POLL + MARGIN`` before it scans, so
a use that ends within ``MARGIN`` of the claim is visible to its scan (links and revisions are
written by then). A use that took longer confirms: it claims again and, if the key turned out to
be doomed, tells the caller to redo the use. See docs/gc.md for the whole argument.

A HEAD also refreshes a ``_layers`` link older than ``refresh`` seconds (one small write per link
per ``refresh``): the collector deletes only blobs whose links are older than its grace, so a
push that found a blob with HEAD *before* a collection started has the whole grace period to name
it in a manifest.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Iterable

from drivers.base import PathNotFound, StorageDriver, StorageError

from ..store import paths
from . import lease as leases
from .instances import Heartbeat

log = logging.getLogger(__name__)

#: a use must end this long after its lease observation for the observation to count
MARGIN = 2.0
#: how long a collector waits after taking the lease before it scans (every instance has seen it);
#: none when no instance is live (:func:`wait_needed`)
BARRIER_WAIT = leases.POLL + MARGIN
#: seconds a collector may take between its lease becoming visible and its listing of instances
_LISTING_SLACK = 30.0
#: how often a claim that found its key doomed looks again
DOOM_POLL = 0.05
#: claimed keys remembered per run (a bound on memory; forgetting only costs a rewrite)
_CLAIMED_LIMIT = 200_000


async def wait_needed(driver: StorageDriver) -> bool:
    """Whether a collector that holds its lease must wait :data:`BARRIER_WAIT` before scanning:
    yes while any instance's heartbeat is live. An instance writes its heartbeat (when too old)
    before each lease observation, so one that observed "no collection" shortly before this
    listing is in it; with none listed no use relies on such an observation, and the scan may
    start at once. Unknown (the listing failed) means wait."""
    from .instances import live_instances

    try:
        return bool(await live_instances(driver))
    except StorageError as exc:
        log.warning("cannot list the registry instances (%s): waiting %.0fs for them", exc, BARRIER_WAIT)
        return True


def claim_key_file(key: str) -> str:
    """The claim file's name for a key: the sha256 of the key (keys hold ``:`` and ``/``)."""
    return hashlib.sha256(key.encode()).hexdigest()


def tag_key(repo: str, tag: str) -> str:
    return f"tag:{repo}:{tag}"


@dataclasses.dataclass
class Claim:
    """What :meth:`Barrier.claim` saw: the run (None: no collection) and when it looked."""

    barrier: "Barrier"
    keys: tuple[str, ...]
    run: str | None
    observed: float
    #: the claim found a key doomed and waited for the collector's decision
    waited: bool = False

    async def confirm(self) -> bool:
        """After the use: True when it stands; False when the caller must redo it (a collection
        started during a slow use and was about to delete one of the keys; now resolved)."""
        if self.run is not None or time.monotonic() - self.observed < leases.POLL + MARGIN:
            return True
        again = await self.barrier.claim(self.keys, fresh=True)
        return not again.waited


class Barrier:
    """One per registry process (per worker); shared by every request."""

    def __init__(self, driver: StorageDriver, *, refresh: float, enabled: bool = True,
                 heartbeat: Heartbeat | None = None) -> None:
        self.driver = driver
        #: this instance's heartbeat: written (when too old) before every lease observation
        self.heartbeat = heartbeat
        #: a HEAD rewrites a ``_layers`` link older than this (seconds)
        self.refresh = refresh
        self.enabled = enabled
        self._lease: leases.LeaseInfo | None = None
        self._lease_read_at = -1e9
        self._lease_lock = asyncio.Lock()
        self._claimed: dict[str, set[str]] = {}
        self._batches: dict[str, dict[str, frozenset[str]]] = {}

    async def current_run(self, *, fresh: bool = False) -> tuple[leases.LeaseInfo | None, float]:
        """The running online collection (None if none) and the monotonic time of that reading."""
        if not fresh and time.monotonic() - self._lease_read_at < leases.POLL:
            return self._live(self._lease), self._lease_read_at
        async with self._lease_lock:
            if fresh or time.monotonic() - self._lease_read_at >= leases.POLL:
                started = time.monotonic()
                try:
                    self._lease = await leases.read(self.driver)
                except StorageError as exc:  # unknown means "maybe running": be safe, not fast
                    log.warning("cannot read the garbage-collection lease: %s", exc)
                    raise
                self._lease_read_at = started
                self._forget_old_runs()
        return self._live(self._lease), self._lease_read_at

    @staticmethod
    def _live(info: leases.LeaseInfo | None) -> leases.LeaseInfo | None:
        if info is None or not info.online or info.expired():
            return None
        return info

    def _forget_old_runs(self) -> None:
        run = self._lease.run if self._lease else None
        for old in [r for r in self._claimed if r != run]:
            del self._claimed[old]
        for old in [r for r in self._batches if r != run]:
            del self._batches[old]

    async def claim(self, keys: Iterable[str], *, fresh: bool = False) -> Claim:
        """Protect ``keys`` from the running collection (if any) before using them."""
        keys = tuple(dict.fromkeys(keys))
        if not self.enabled or not keys:
            return Claim(self, keys, None, time.monotonic())
        if self.heartbeat is not None:  # seen as live before the observation and for as long as
            await self.heartbeat.ensure_visible(leases.POLL + MARGIN + _LISTING_SLACK)  # it counts
        info, observed = await self.current_run(fresh=fresh)
        claim = Claim(self, keys, info.run if info else None, observed)
        if info is None:
            return claim
        done = self._claimed.setdefault(info.run, set())
        new = [k for k in keys if claim_key_file(k) not in done]
        if new:
            await asyncio.gather(
                *(self.driver.put_content(paths.gc_claim(info.run, claim_key_file(k)), b"") for k in new)
            )
            if len(done) > _CLAIMED_LIMIT:
                done.clear()
            done.update(claim_key_file(k) for k in new)
            claim.waited = await self._wait_until_resolved(info.run, set(keys))
        return claim

    async def _wait_until_resolved(self, run: str, keys: set[str]) -> bool:
        """Wait while a doomed batch of ``run`` holds one of ``keys``; True if it did."""
        waited = False
        while True:
            pending = await self._doomed_batches(run, keys)
            if not pending:
                return waited
            if not waited:
                log.info("garbage collection %s is deciding about %s: waiting", run, sorted(keys)[:3])
            waited = True
            await asyncio.sleep(DOOM_POLL)
            info, _ = await self.current_run(fresh=True)
            if info is None or info.run != run:
                return waited  # the run ended (or died and its lease expired): nothing more goes

    async def _doomed_batches(self, run: str, keys: set[str]) -> list[str]:
        try:
            names = await self.driver.list(paths.gc_doomed_dir(run))
        except PathNotFound:
            return []
        known = self._batches.setdefault(run, {})
        for gone in set(known) - set(names):
            del known[gone]
        hits = []
        for name in names:
            if name not in known:
                try:
                    known[name] = frozenset(json.loads(await self.driver.get_content(name)))
                except PathNotFound:
                    continue  # resolved meanwhile
                except ValueError:  # being written? read it again next time
                    continue
            if known[name] & keys:
                hits.append(name)
        return hits

    async def refresh_link(self, path: str, modified_age: float | None, content: bytes) -> None:
        """Rewrite a link (same content) whose modification time is older than :attr:`refresh`."""
        if not self.enabled or modified_age is None or modified_age < self.refresh:
            return
        with contextlib.suppress(PathNotFound):
            await self.driver.put_content(path, content)
