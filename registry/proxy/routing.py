"""Which upstream a repository mirrors: by name prefix, or by containerd's ``ns`` parameter."""

from __future__ import annotations

import dataclasses

from .config import ProxyConfig
from .upstream import Upstream


@dataclasses.dataclass(frozen=True)
class Route:
    upstream: Upstream
    #: the repository's name on the upstream
    remote: str


class Router:
    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.upstreams = [Upstream(u) for u in config.upstreams]
        self._by_ns = {ns: up for up in self.upstreams for ns in up.config.ns}

    @property
    def single(self) -> bool:
        """distribution's form: every repository mirrors the one upstream."""
        return self.config.single

    def route(self, repo: str) -> Route | None:
        """The upstream local repository ``repo`` mirrors, or None for a local repository."""
        for up in self.upstreams:
            remote = up.config.remote_name(repo)
            if remote is not None:
                return Route(up, remote)
        return None

    def by_ns(self, ns: str) -> Upstream | None:
        """The upstream containerd means by ``?ns=<registry host>``, or None."""
        return self._by_ns.get(ns.strip().lower())
