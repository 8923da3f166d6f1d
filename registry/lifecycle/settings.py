"""The lifecycle's configuration: ``storage.maintenance.gc``, ``retention`` and ``immutability``.

Read once by :mod:`registry.config` through its key reader (unknown keys are warned at any depth);
every key is documented in config.example.yml and docs/gc.md.
"""

from __future__ import annotations

import dataclasses

from ..config import Config, Section
from .rules import ImmutabilityPolicy, RetentionPolicy, parse_age

#: the longest a registry waits before refreshing a blob link it answered a HEAD for
MAX_REFRESH = 15.0


@dataclasses.dataclass(frozen=True)
class GCSettings:
    """``storage.maintenance.gc``: the collector the registry runs itself, online."""

    enabled: bool = False
    interval: float = 24 * 3600.0
    #: only what was last written or used longer ago than this is reclaimed online
    grace: float = 3600.0
    deleteuntagged: bool = False
    #: apply the retention rules in scheduled runs
    retention: bool = True
    dryrun: bool = False
    #: seconds a collector's lease lives without renewal (a crashed collector blocks others this long)
    leasettl: float = 30.0

    @property
    def refresh(self) -> float:
        """Seconds after which a HEAD rewrites the blob link it found (see the barrier); an online
        collection waits this long after it starts before its first delete."""
        return min(MAX_REFRESH, self.grace / 4)

    @classmethod
    def from_section(cls, s: Section) -> "GCSettings":
        interval = parse_age(s.raw("interval", "24h"), s.where("interval"), s.error)
        if interval <= 0:
            raise s.error(f"{s.where('interval')}: must be more than 0")
        return cls(
            enabled=s.bool("enabled", False),
            interval=interval,
            grace=parse_age(s.raw("grace", "1h"), s.where("grace"), s.error),
            deleteuntagged=s.bool("deleteuntagged", False),
            retention=s.bool("retention", True),
            dryrun=s.bool("dryrun", False),
            leasettl=_lease_ttl(s),
        )


def _lease_ttl(s: Section) -> float:
    ttl = s.duration("leasettl", "30s")
    if ttl < 3:
        raise s.error(f"{s.where('leasettl')}: must be at least 3s (the lease is renewed every third of it)")
    return ttl


@dataclasses.dataclass(frozen=True)
class LifecycleSettings:
    gc: GCSettings = dataclasses.field(default_factory=GCSettings)
    retention: RetentionPolicy = dataclasses.field(default_factory=RetentionPolicy)
    immutability: ImmutabilityPolicy = dataclasses.field(default_factory=ImmutabilityPolicy)


def from_config(config: Config) -> LifecycleSettings:
    """The three blocks, as :mod:`registry.config` typed them."""
    return LifecycleSettings(gc=config.storage.gc, retention=config.retention, immutability=config.immutability)
