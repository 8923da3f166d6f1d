"""The authorization hook the API asks: may this request do ``action`` on a resource?

Without auth every request may do everything. The auth middleware stores what the request's
credentials grant under :data:`ACCESS_KEY`; handlers never look at tokens themselves.
"""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web


class Grants(Protocol):
    def allows(self, resource_type: str, name: str, action: str) -> bool: ...

    def names(self, resource_type: str, action: str) -> list[str] | None:
        """The resources of ``resource_type`` granted ``action``; None means every one."""
        ...


class AllowAll:
    def allows(self, resource_type: str, name: str, action: str) -> bool:
        return True

    def names(self, resource_type: str, action: str) -> list[str] | None:
        return None


ALLOW_ALL = AllowAll()
# A typed request key where aiohttp has them (no NotAppKeyWarning), else the plain string.
ACCESS_KEY: Any = web.RequestKey("access", object) if hasattr(web, "RequestKey") else "registry.access"


def allowed(request: web.Request, resource_type: str, name: str, action: str) -> bool:
    """True when the request's credentials grant ``action`` on ``resource_type:name``."""
    grants: Grants = request.get(ACCESS_KEY, ALLOW_ALL)
    return grants.allows(resource_type, name, action)


def granted_names(request: web.Request, resource_type: str, action: str) -> list[str] | None:
    """The resources the request may do ``action`` on (a token's grants), or None when every one."""
    grants: Grants = request.get(ACCESS_KEY, ALLOW_ALL)
    return grants.names(resource_type, action)
