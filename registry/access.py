"""The authorization hook the API asks: may this request do ``action`` on a resource?

Without auth every request may do everything. The auth middleware stores what the request's
credentials grant under :data:`ACCESS_KEY`; handlers never look at tokens themselves.
"""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web


class Grants(Protocol):
    def allows(self, resource_type: str, name: str, action: str) -> bool: ...


class AllowAll:
    def allows(self, resource_type: str, name: str, action: str) -> bool:
        return True


ALLOW_ALL = AllowAll()
# A typed request key where aiohttp has them (no NotAppKeyWarning), else the plain string.
ACCESS_KEY: Any = web.RequestKey("access", object) if hasattr(web, "RequestKey") else "registry.access"


def allowed(request: web.Request, resource_type: str, name: str, action: str) -> bool:
    """True when the request's credentials grant ``action`` on ``resource_type:name``."""
    grants: Grants = request.get(ACCESS_KEY, ALLOW_ALL)
    return grants.allows(resource_type, name, action)
