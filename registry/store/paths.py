"""Every storage path the registry uses, in one place: distribution's layout, plus our indexes.

The layout is the reference registry's (``registry/storage/paths.go`` of distribution), so one
directory or bucket can be served by either. Our own indexes live under ``_``-prefixed
directories of a repository other than ``_manifests``, ``_layers`` and ``_uploads``: the
reference's catalog walk and garbage collector skip those, and both indexes can be rebuilt from
the manifests. The catalog index (``repositories/_catalog``) is skipped by that walk for the same
reason, and is rebuilt from it (see :mod:`registry.store.indexes`).
"""

from __future__ import annotations

from typing import NamedTuple

from ..reference import Digest, digest_of_parts

ROOT = "/docker/registry/v2"
REPOSITORIES = f"{ROOT}/repositories"


def blobs_root() -> str:
    return f"{ROOT}/blobs"


def blob_dir(d: Digest) -> str:
    return f"{ROOT}/blobs/{d.algorithm}/{d.hex[:2]}/{d.hex}"


def blob_data(d: Digest) -> str:
    """The bytes of a blob (layer, config or manifest)."""
    return f"{blob_dir(d)}/data"


def blob_linked_from(d: Digest) -> str:
    """Ours, beside the data: the name of the repository that linked blob ``d`` last (a hint for
    mounts without ``from``; may be stale). The reference ignores every file here but ``data``
    and removes the directory with the blob."""
    return f"{blob_dir(d)}/linkedfrom"


def repo(name: str) -> str:
    return f"{REPOSITORIES}/{name}"


def layers_dir(name: str) -> str:
    return f"{repo(name)}/_layers"


def layer_link(name: str, d: Digest) -> str:
    """Present when blob ``d`` is visible in repository ``name``."""
    return f"{repo(name)}/_layers/{d.algorithm}/{d.hex}/link"


def manifests_dir(name: str) -> str:
    """Its presence makes ``name`` a repository for the catalog."""
    return f"{repo(name)}/_manifests"


def revision_link(name: str, d: Digest) -> str:
    """Present when manifest ``d`` belongs to repository ``name``."""
    return f"{repo(name)}/_manifests/revisions/{d.algorithm}/{d.hex}/link"


def signed_manifest(name: str, d: Digest) -> str:
    """The original bytes of a signed schema 1 manifest (the blob holds the canonical payload,
    as the reference stores it); the reference ignores files other than ``link`` here."""
    return f"{repo(name)}/_manifests/revisions/{d.algorithm}/{d.hex}/signed"


def revisions_dir(name: str, algorithm: str) -> str:
    return f"{repo(name)}/_manifests/revisions/{algorithm}"


def tags_dir(name: str) -> str:
    return f"{repo(name)}/_manifests/tags"


def tag_dir(name: str, tag: str) -> str:
    return f"{repo(name)}/_manifests/tags/{tag}"


def tag_current_link(name: str, tag: str) -> str:
    """The digest ``tag`` points at now."""
    return f"{repo(name)}/_manifests/tags/{tag}/current/link"


def tag_index_dir(name: str, tag: str) -> str:
    return f"{repo(name)}/_manifests/tags/{tag}/index"


def tag_index_link(name: str, tag: str, d: Digest) -> str:
    """Every digest ``tag`` has pointed at (the reference writes it; we keep it up to date)."""
    return f"{repo(name)}/_manifests/tags/{tag}/index/{d.algorithm}/{d.hex}/link"


def upload_dir(name: str, upload_id: str) -> str:
    return f"{repo(name)}/_uploads/{upload_id}"


def upload_data(name: str, upload_id: str) -> str:
    return f"{repo(name)}/_uploads/{upload_id}/data"


def upload_started_at(name: str, upload_id: str) -> str:
    return f"{repo(name)}/_uploads/{upload_id}/startedat"


def upload_hashstates_dir(name: str, upload_id: str, algorithm: str) -> str:
    return f"{repo(name)}/_uploads/{upload_id}/hashstates/{algorithm}"


def upload_hashstate(name: str, upload_id: str, algorithm: str, offset: int) -> str:
    """Go's binary hash state after ``offset`` bytes (the reference's format, see drivers.digest)."""
    return f"{repo(name)}/_uploads/{upload_id}/hashstates/{algorithm}/{offset}"


# --- our indexes (ignored by the reference registry) ---------------------------------------------


def digest_tags_root(name: str, algorithm: str) -> str:
    """Every manifest we stored (or adopted) has a directory here."""
    return f"{repo(name)}/_tagsbydigest/{algorithm}"


def digest_tags_dir(name: str, d: Digest) -> str:
    """Reverse tag index: one empty file per tag that pointed at manifest ``d`` (may be stale)."""
    return f"{repo(name)}/_tagsbydigest/{d.algorithm}/{d.hex}"


def digest_tag_entry(name: str, d: Digest, tag: str) -> str:
    return f"{repo(name)}/_tagsbydigest/{d.algorithm}/{d.hex}/{tag}"


def digest_tags_marker(name: str, d: Digest) -> str:
    """Written when we store manifest ``d``: its reverse entries are complete (a tag never
    starts with ``.``). Without it (a manifest the reference wrote) deletes scan all tags."""
    return f"{repo(name)}/_tagsbydigest/{d.algorithm}/{d.hex}/.indexed"


def referrers_dir(name: str, subject: Digest) -> str:
    """Referrers index: one descriptor file per manifest whose ``subject`` is ``subject``."""
    return f"{repo(name)}/_referrers/{subject.algorithm}/{subject.hex}"


def referrer_entry(name: str, subject: Digest, referrer: Digest) -> str:
    return f"{repo(name)}/_referrers/{subject.algorithm}/{subject.hex}/{referrer.algorithm}-{referrer.hex}"


def referrer_from_entry(path: str) -> Digest | None:
    """The referrer digest encoded in a :func:`referrer_entry` path, or None."""
    from ..reference import try_digest

    leaf = path.rsplit("/", 1)[-1]
    return try_digest(leaf.replace("-", ":", 1))


def referrer_subject_of(path: str) -> "Digest | None":
    """The subject digest of a :func:`referrer_entry` path, or None."""
    from ..reference import try_digest

    parts = path.rsplit("/", 3)
    return try_digest(f"{parts[-3]}:{parts[-2]}") if len(parts) == 4 else None


def catalog_index_dir() -> str:
    """Catalog index: one empty file per repository we stored a manifest in, so the UI lists
    every repository with one listing (the walk of ``repositories/`` lists every directory).
    ``_``-prefixed, so the reference's catalog walk skips it; rebuilt from the walk."""
    return f"{REPOSITORIES}/_catalog"


def catalog_entry(entry: str) -> str:
    """An entry of the catalog index (see :mod:`registry.store.catalog` for the encoding)."""
    return f"{REPOSITORIES}/_catalog/{entry}"


# --- notifications outbox and health probes (ours; outside repositories/, ignored by the reference) ---

EVENTS_ROOT = f"{ROOT}/_events"
HEALTH_ROOT = f"{ROOT}/_health"


def events_queue_dir(endpoint_key: str) -> str:
    """An endpoint's durable outbox: one file per batch of events, names sorted by time."""
    return f"{EVENTS_ROOT}/{endpoint_key}/queue"


def events_segment(endpoint_key: str, segment: str) -> str:
    return f"{EVENTS_ROOT}/{endpoint_key}/queue/{segment}"


def events_lease(endpoint_key: str) -> str:
    """Which instance delivers this endpoint's events now (owner and expiry)."""
    return f"{EVENTS_ROOT}/{endpoint_key}/lease"


def health_probe(name: str) -> str:
    """A file the storage health check writes and deletes."""
    return f"{HEALTH_ROOT}/{name}"


def leaf(path: str) -> str:
    """The last component of a driver path."""
    return path.rsplit("/", 1)[-1]


# --- the storage lifecycle (garbage collector): our own area, ignored by the reference -----------
#: the reference walks only ``blobs/`` (collector, blob enumeration) and ``repositories/`` (catalog,
#: upload purging), so nothing under here is ever seen, listed or removed by it
LIFECYCLE = f"{ROOT}/_lifecycle"


def gc_lease() -> str:
    """The collector's lease: at most one collection per storage holds it (see registry.lifecycle)."""
    return f"{LIFECYCLE}/gc/lease"


def gc_last_run() -> str:
    """The summary of the last finished collection (the background schedule reads its time)."""
    return f"{LIFECYCLE}/gc/last"


def gc_runs_dir() -> str:
    return f"{LIFECYCLE}/gc/runs"


def gc_run_dir(run_id: str) -> str:
    return f"{LIFECYCLE}/gc/runs/{run_id}"


def gc_claims_dir(run_id: str) -> str:
    return f"{LIFECYCLE}/gc/runs/{run_id}/claims"


def gc_claim(run_id: str, key_hex: str) -> str:
    """Written by a registry instance that uses a blob, manifest or tag while collection ``run_id``
    runs: the collector never deletes what is claimed (the name is the sha256 of the claim key)."""
    return f"{LIFECYCLE}/gc/runs/{run_id}/claims/{key_hex}"


def gc_doomed_dir(run_id: str) -> str:
    return f"{LIFECYCLE}/gc/runs/{run_id}/doomed"


def gc_doomed_batch(run_id: str, batch: int) -> str:
    """The claim keys the collector is about to delete (written before it reads the claims)."""
    return f"{LIFECYCLE}/gc/runs/{run_id}/doomed/{batch:08d}"


def instances_dir() -> str:
    return f"{LIFECYCLE}/instances"


def instance_heartbeat(instance_id: str) -> str:
    """Refreshed by each serving registry instance: the storage is in use (the collector then runs
    online by default)."""
    return f"{LIFECYCLE}/instances/{instance_id}"


# --- the layout level by level: what a names-only scan lists (see registry.lifecycle.inventory) ---
#: a repository's own directories (a child of a repository directory not named so is a nested one)
LAYERS_AREA = "_layers"
MANIFESTS_AREA = "_manifests"
TAGSBYDIGEST_AREA = "_tagsbydigest"
REFERRERS_AREA = "_referrers"


def repo_area(name: str, area: str) -> str:
    return f"{repo(name)}/{area}"


def blobs_algorithm_dir(algorithm: str) -> str:
    """Its children are the two-character prefix directories of the blobs' encoded digests."""
    return f"{ROOT}/blobs/{algorithm}"


def blob_prefix_dir(algorithm: str, prefix: str) -> str:
    """Its children are the blob directories (:func:`blob_dir`) whose digests start with ``prefix``."""
    return f"{ROOT}/blobs/{algorithm}/{prefix}"


def layers_root(name: str, algorithm: str) -> str:
    """Its children are the encoded digests of the repository's layer links."""
    return f"{repo(name)}/_layers/{algorithm}"


def revisions_root(name: str) -> str:
    """Its children are the digest algorithms of :func:`revisions_dir`."""
    return f"{repo(name)}/_manifests/revisions"


def tag_index_root(name: str, tag: str, algorithm: str) -> str:
    """Its children are the encoded digests of ``tag``'s history entries."""
    return f"{repo(name)}/_manifests/tags/{tag}/index/{algorithm}"


def referrers_root(name: str, algorithm: str) -> str:
    """Its children are the encoded digests of subjects with referrers (:func:`referrers_dir`)."""
    return f"{repo(name)}/_referrers/{algorithm}"


def digest_of(algorithm: str, encoded: str) -> Digest | None:
    """The digest two path components name (``<algorithm>/<encoded>``), or None."""
    return digest_of_parts(algorithm, encoded)


# --- reading paths back: what a bulk scan of repositories/ and blobs/ finds ------------------------


class RepositoryFile(NamedTuple):
    """A file below ``repositories/`` as the layout names it (a tuple: a scan makes one per file).

    ``kind`` is one of: ``layer`` (a ``_layers`` link of ``digest``), ``revision`` (a revision
    link of manifest ``digest``), ``signed`` (the signed schema 1 bytes beside it), ``tag`` (the
    ``current`` link of ``tag``), ``tag_index`` (``tag``'s history entry for ``digest``),
    ``tagsbydigest`` (our reverse entry of ``tag`` for ``digest``, or its marker when ``tag`` is
    None), ``referrer`` (our entry for referrer ``digest`` of ``subject``), ``upload`` (a file of
    upload ``upload``), ``other`` (anything else, e.g. a half-written tag).
    """

    path: str
    repo: str
    kind: str
    digest: Digest | None = None
    tag: str | None = None
    subject: Digest | None = None
    upload: str | None = None


_REPOSITORIES_PREFIX = REPOSITORIES + "/"
_BLOBS_PREFIX = f"{ROOT}/blobs/"


def parse_repository_file(path: str) -> RepositoryFile | None:
    """Classify a file path below :data:`REPOSITORIES`; None when it is not below it or names no
    repository (the repository is the path up to the first ``_``-prefixed component)."""
    if not path.startswith(_REPOSITORIES_PREFIX):
        return None
    rel = path[len(_REPOSITORIES_PREFIX):]
    cut = rel.find("/_")
    if cut <= 0:
        return None
    repo = rel[:cut]
    rest = rel[cut + 2:].split("/")
    area, n = rest[0], len(rest)
    if area == "layers":
        if n == 4 and rest[3] == "link":
            d = digest_of_parts(rest[1], rest[2])
            if d is not None:
                return RepositoryFile(path, repo, "layer", d)
    elif area == "manifests":
        if n == 5 and rest[1] == "revisions" and rest[4] in ("link", "signed"):
            d = digest_of_parts(rest[2], rest[3])
            if d is not None:
                return RepositoryFile(path, repo, "revision" if rest[4] == "link" else "signed", d)
        elif n == 5 and rest[1] == "tags" and rest[3] == "current" and rest[4] == "link":
            return RepositoryFile(path, repo, "tag", None, rest[2])
        elif n == 7 and rest[1] == "tags" and rest[3] == "index" and rest[6] == "link":
            d = digest_of_parts(rest[4], rest[5])
            if d is not None:
                return RepositoryFile(path, repo, "tag_index", d, rest[2])
    elif area == "tagsbydigest":
        if n == 4:
            d = digest_of_parts(rest[1], rest[2])
            if d is not None:
                return RepositoryFile(path, repo, "tagsbydigest", d, None if rest[3] == ".indexed" else rest[3])
    elif area == "referrers":
        if n == 4:
            subject = digest_of_parts(rest[1], rest[2])
            alg, _, enc = rest[3].partition("-")
            referrer = digest_of_parts(alg, enc)
            if subject is not None and referrer is not None:
                return RepositoryFile(path, repo, "referrer", referrer, None, subject)
    elif area == "uploads":
        if n >= 3:
            return RepositoryFile(path, repo, "upload", None, None, None, rest[1])
    return RepositoryFile(path, repo, "other")


def parse_blob_file(path: str) -> tuple[Digest, str] | None:
    """``(digest, file name)`` for a file below ``blobs/<alg>/<xx>/<hex>/`` (the data is ``data``)."""
    if not path.startswith(_BLOBS_PREFIX):
        return None
    parts = path[len(_BLOBS_PREFIX):].split("/")
    if len(parts) != 4 or parts[2][:2] != parts[1]:
        return None
    d = digest_of_parts(parts[0], parts[2])
    return (d, parts[3]) if d is not None else None


def is_repository_area(path: str) -> bool:
    """A child of :func:`repo` that belongs to the repository itself (``_manifests``,
    ``_layers``, ``_uploads``, our indexes), not a nested repository."""
    return leaf(path).startswith("_")
