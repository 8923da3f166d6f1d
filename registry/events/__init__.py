"""Notifications: distribution's events, through a durable outbox in the storage, per endpoint.

- :mod:`.model`     the event and its envelopes (distribution v1/v2, CloudEvents 1.0)
- :mod:`.notifier`  the one place events are emitted (the store calls it), group-committed
- :mod:`.outbox`    each endpoint's queue and delivery lease, as files through the driver
- :mod:`.delivery`  ordered, retried, bounded delivery of one endpoint
- :mod:`.config`    the ``notifications:`` section

:func:`build` makes the notifier (and, in the process that delivers, the deliveries) for an app.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from drivers.base import StorageDriver

from .config import EndpointConfig, NotificationsConfig
from .notifier import Notifier, source_record, writer_id
from .outbox import Lease, Outbox

if TYPE_CHECKING:
    from .delivery import Delivery

__all__ = ["Delivery", "EndpointConfig", "Notifier", "NotificationsConfig", "build"]


def __getattr__(name: str) -> Any:
    """``Delivery`` (aiohttp's client) is imported when asked for: the CLI commands that only queue
    events, and the config module, never need it."""
    if name == "Delivery":
        from .delivery import Delivery

        return Delivery
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


log = logging.getLogger(__name__)


def build(config: NotificationsConfig, driver: StorageDriver, *, http_addr: str, url_for: Callable[[Any, str], str],
          metrics: bool, deliver: bool) -> tuple[Notifier, list[Delivery]]:
    """The notifier the store emits to, and the deliveries to start (none when ``deliver`` is false:
    forked workers queue events; the primary process delivers them)."""
    source = source_record(http_addr)
    wid = writer_id()
    outboxes = {e.key: Outbox(driver, e.key, wid) for e in config.active}
    notifier = Notifier(config, outboxes, source=source, url_for=url_for, metrics=metrics)
    deliveries: list[Delivery] = []
    if deliver:
        from .delivery import Delivery

        for endpoint in config.active:
            deliveries.append(Delivery(endpoint, outboxes[endpoint.key],
                                       Lease(driver, endpoint.key, source["instanceID"])))
        by_key = {d.endpoint.key: d for d in deliveries}

        def wake(keys: set[str]) -> None:
            for key in keys:
                if key in by_key:
                    by_key[key].wake.set()

        notifier.on_queued = wake
    for endpoint in config.endpoints:
        if endpoint.disabled:
            log.info("notifications: endpoint %s disabled, skipping", endpoint.name)
        else:
            log.info("notifications: endpoint %s (%s), format %s, timeout %gs, threshold %d, backoff %gs",
                     endpoint.name, _safe_url(endpoint.url), endpoint.format, endpoint.timeout, endpoint.threshold,
                     endpoint.backoff)
    return notifier, deliveries


def _safe_url(url: str) -> str:
    """The URL without user:password (never logged)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        parts = parts._replace(netloc=host)
    return urlunsplit(parts._replace(query="", fragment=""))
