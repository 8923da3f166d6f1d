"""The storage lifecycle: garbage collection, retention and immutability rules, repository delete.

The contract (everything else in the package is its implementation):

- :func:`collect` (:class:`GCOptions` -> :class:`GCSummary`): one mark-and-sweep run, offline as
  distribution's collector or online beside serving instances; raises :class:`LeaseHeld` when
  another collection holds the storage's lease.
- :class:`Barrier`: what a serving instance calls before it relies on an existing blob,
  manifest or tag (``claim``), so that a running collection never deletes it.
- :class:`LifecycleSettings` (:func:`settings_from_config`): ``storage.maintenance.gc``,
  ``retention`` and ``immutability`` typed from the configuration.
- :func:`delete_repository`, :func:`list_usage`: the ``registry repo`` tools.

It reads and deletes only through the driver contract and the layout of
:mod:`registry.store.paths`, so it works on every driver. docs/gc.md describes the design.
"""

from .barrier import Barrier, tag_key
from .collector import GCOptions, GCSummary, collect
from .lease import LeaseHeld
from .repos import delete_repository, list_usage
from .rules import ImmutabilityPolicy, RetentionPolicy
from .settings import LifecycleSettings
from .settings import from_config as settings_from_config

__all__ = [
    "Barrier",
    "GCOptions",
    "GCSummary",
    "ImmutabilityPolicy",
    "LeaseHeld",
    "LifecycleSettings",
    "RetentionPolicy",
    "collect",
    "delete_repository",
    "list_usage",
    "settings_from_config",
    "tag_key",
]
