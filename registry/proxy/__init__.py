"""The pull-through cache: repositories that mirror upstream registries (``proxy:``).

- :mod:`.config`    the ``proxy:`` section (distribution's single ``remoteurl``, or ``upstreams``)
- :mod:`.routing`   which upstream a repository mirrors (prefix, ``?ns=``)
- :mod:`.upstream`  the HTTP client of one upstream; :mod:`.auth` its challenges and tokens
- :mod:`.cache`     the semantics: revalidation by ttl, stale answers, single flights, errors
- :mod:`.fetch`     one blob fetch teed into storage and to every waiting client
- :mod:`.store`     the cache under the store's parts (handlers do not change)
- :mod:`.status`    the ``X-Cache-Status`` header

:func:`setup_proxy` wires it into the app: a middleware (``ns`` routing, pushes refused in
mirrored repositories) and a cleanup context (upstream sessions, the store's parts wrapped).
"""

from __future__ import annotations

from typing import Any

#: what ``registry.proxy`` exports, from :mod:`.wiring` (imported on first use)
_WIRING = ("CACHE_KEY", "Handler", "make_middleware", "setup_proxy")


def __getattr__(name: str) -> Any:
    if name in _WIRING:
        from . import wiring

        return getattr(wiring, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
