"""The web UI: browse, search and manage the registry in a browser (``ui: {enabled, path}``).

Server-rendered HTML (aiohttp-jinja2, autoescaped); every page works without JavaScript, which
only adds copy buttons. It reads through the store (:mod:`registry.store`), never through
storage paths or HTTP calls of its own, and authorizes as the API does (:mod:`.access`).

One contract: :func:`setup_ui` adds the routes to the registry's app. Modules: :mod:`.access`
(viewer, sessions, CSRF), :mod:`.model` (what pages show, read through the store),
:mod:`.handlers` (thin handlers), ``templates/`` and ``static/``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web


def setup_ui(app: web.Application, config: Any) -> None:
    """Mount the UI under ``http.prefix`` + ``ui.path`` unless ``ui.enabled`` is false. Call after
    :func:`registry.auth.setup_auth` (the UI reuses the authorizer it registered)."""
    if not config.ui.enabled:
        return
    from .handlers import add_routes

    add_routes(app, config)
